package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// chromium is the headless browser's path: under CI=true a missing one
// fails the test (scripts/ensure-chromium.sh installs it), elsewhere it
// skips it saying so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium on PATH: the status page's browser test needs one (scripts/ensure-chromium.sh installs Debian's chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freeAddr is a loopback address with a port free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// getPage fetches the page at addr over HTTP.
func getPage(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/") // #nosec G107 -- the test's own server
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), err
}

// browserView is what a person sees on the page, read by the browser.
type browserView struct {
	Text         string            `json:"text"`
	Loaded       string            `json:"loaded"`
	SalesRows    string            `json:"salesRows"`
	Totals       map[string]string `json:"totals"`
	BehindPoints string            `json:"behindPoints"`
	BehindSize   float64           `json:"behindSize"` // the line's width and height on the screen
	SalesLines   int               `json:"salesLines"`
	RowBars      int               `json:"rowBars"`
	Charts       []float64         `json:"charts"` // each chart's height on the screen

	consoleErrors, foreignURLs []string
}

// readPage reads, in the page, what the test checks.
const readPage = `(() => {
	const q = s => document.querySelector(s);
	const text = s => (q(s) || {}).textContent || "";
	const totals = {};
	document.querySelectorAll("tr[data-currency]").forEach(r => totals[r.dataset.currency] = r.querySelector("td.n").textContent);
	const behind = q('svg[data-chart="behind"] polyline');
	return {
		text: document.body.innerText, loaded: text("#loaded"), salesRows: text('tr[data-table="fact_sales_order"] td.n'), totals,
		behindPoints: behind ? behind.getAttribute("points") : "", behindSize: behind ? behind.getBBox().width + behind.getBBox().height : 0,
		salesLines: document.querySelectorAll('svg[data-chart="sales"] polyline').length,
		rowBars: document.querySelectorAll('svg[data-chart="rows"] rect').length,
		charts: [...document.querySelectorAll("svg[data-chart]")].map(s => s.getBoundingClientRect().height),
	};
})()`

// viewInBrowser loads the page at addr in headless Chromium and reads it,
// with every console message of level warning or above and every request
// to another host.
func viewInBrowser(t *testing.T, exe, addr string) browserView {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var wg sync.WaitGroup
	var consoleErrors, foreignURLs []string
	messages := chromedp.Console(ctx)
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				consoleErrors = append(consoleErrors, m.String())
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range requests {
			if err != nil {
				return
			}
			if u, perr := url.Parse(ev.Request.URL); perr != nil || (u.Scheme != "data" && u.Host != addr) {
				mu.Lock()
				foreignURLs = append(foreignURLs, ev.Request.URL)
				mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+addr+"/"), chromedp.Sleep(time.Second)); err != nil {
		t.Fatalf("browser: %v", err)
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[browserView](readPage))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if path := os.Getenv("SANDSTONE_PAGE_SCREENSHOT"); path != "" { // a picture of the page, for people
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(path, png, 0o600)
		}
		if err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}
	cancel()
	wg.Wait()
	v.consoleErrors, v.foreignURLs = consoleErrors, foreignURLs
	return v
}

// salesTotals is the sales value per currency of the warehouse at url,
// summed here row by row: each order's newest version, deleted ones left
// out.
func salesTotals(t *testing.T, url string) map[string]float64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, `SELECT f.sales_order_id, f.last_updated_date, f.last_updated_time, f.units_sold, f.unit_price::text, c.currency_code
		FROM fact_sales_order f JOIN dim_currency c USING (currency_id)
		WHERE f.sales_order_id NOT IN (SELECT id FROM sandstone_deletions WHERE source_table = 'sales_order')`)
	if err != nil {
		t.Fatal(err)
	}
	type version struct {
		at    string
		value float64
		cur   string
	}
	newest := map[int32]version{}
	for rows.Next() {
		var id, units int32
		var d time.Time
		var tm, price, cur string
		if err := rows.Scan(&id, &d, &tm, &units, &price, &cur); err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.ParseFloat(price, 64)
		at := d.Format(time.DateOnly) + " " + tm
		if v, ok := newest[id]; !ok || at > v.at {
			newest[id] = version{at, float64(units) * p, cur}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, v := range newest {
		out[v.cur] += v.value
	}
	return out
}

// TestStatusPageInBrowser runs `sandstone run --metrics-addr` against real
// servers (the real totesys snapshot when SANDSTONE_TOTESYS_DIR is set,
// else a seeded one) and looks at its page in headless Chromium as a
// person would: the figures, the charts drawn and not empty, no console
// error and no request to another host.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	exe := sandstoneBinary(t)
	sb := startSandbox(t)
	if os.Getenv(pgtest.SnapshotEnv) != "" {
		pgtest.LoadSnapshot(t, sb.Config.SourceURL)
	} else if _, err := synth.Seed(context.Background(), sb.Config.SourceURL, synth.SeedOptions{SalesOrders: 2000, RandomSeed: 1}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startProc(t, exe, sb.Config, "run", "--metrics-addr", addr, "--interval", "1h", "--audit-every", "1h")
	var page string
	end := time.Now().Add(4 * time.Minute)
	for !strings.Contains(page, "against ingested batch") { // the first audit, after the first cycle
		if time.Now().After(end) {
			t.Fatalf("no audit on the page within 4m:\n%s\n%s", page, p.out.String())
		}
		time.Sleep(time.Second)
		page, _ = getPage(addr)
	}
	time.Sleep(16 * time.Second) // the page gathers again after half its refresh

	v := viewInBrowser(t, browser, addr)
	if len(v.consoleErrors) > 0 || len(v.foreignURLs) > 0 {
		t.Errorf("console errors %q, requests to other hosts %q", v.consoleErrors, v.foreignURLs)
	}
	wantRows := pgtest.QueryInt(t, sb.Config.WarehouseURL, "SELECT count(*) FROM fact_sales_order")
	wantLoaded := pgtest.QueryInt(t, sb.Config.WarehouseURL, "SELECT max(sequence) FROM sandstone_loads")
	if v.SalesRows != strconv.FormatInt(wantRows, 10) || v.Loaded != strconv.FormatInt(wantLoaded, 10) {
		t.Errorf("the page shows %s fact_sales_order rows and batch %s loaded, the warehouse holds %d and %d", v.SalesRows, v.Loaded, wantRows, wantLoaded)
	}
	want := salesTotals(t, sb.Config.WarehouseURL)
	if len(want) == 0 || len(v.Totals) != len(want) || v.SalesLines != len(want) {
		t.Errorf("sales totals %v in %d lines, want %v", v.Totals, v.SalesLines, want)
	}
	for cur, w := range want {
		got, err := strconv.ParseFloat(strings.ReplaceAll(v.Totals[cur], ",", ""), 64)
		if err != nil || math.Abs(got-w) > 0.005 {
			t.Errorf("sales in %s: the page says %q, the warehouse holds %.2f", cur, v.Totals[cur], w)
		}
	}
	if len(strings.Fields(v.BehindPoints)) < 2 || v.BehindSize < 10 || v.RowBars < 1 {
		t.Errorf("behind-source line of points %q, %.0f px wide and high; %d bars of rows per batch", v.BehindPoints, v.BehindSize, v.RowBars)
	}
	if len(v.Charts) < 3 || slices.Min(v.Charts) < 50 {
		t.Errorf("charts drawn %v px high, want at least 3 of 50 px or more", v.Charts)
	}
	for _, want := range []string{"ingest", "transform", "load", "audit", "Last load: batch", "Behind the source", "the source, the lake and the warehouse agree"} {
		if !strings.Contains(v.Text, want) {
			t.Errorf("the page lacks %q:\n%s", want, v.Text)
		}
	}
	if strings.Contains(v.Text, "problem:") {
		t.Errorf("the page shows a problem:\n%s", v.Text)
	}
	if pw := sandboxPassword(sb.Config.WarehouseURL); pw != "" && strings.Contains(page+v.Text, pw) {
		t.Error("the page shows the warehouse's password")
	}
}

// sandboxPassword is the password in url, if any.
func sandboxPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	pw, _ := u.User.Password()
	return pw
}
