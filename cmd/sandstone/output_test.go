package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

// TestMain keeps the alert state of the tests' runs out of the source
// tree (run's default is ./sandstone-data/alerts.json).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandstone-cmd-test")
	if err != nil {
		panic(err)
	}
	_ = os.Setenv(envAlertState, filepath.Join(dir, "alerts.json"))
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// webhook is an alert receiver: it keeps every JSON post.
type webhook struct {
	mu    sync.Mutex
	posts []map[string]any
	URL   string
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		var v map[string]any
		_ = json.NewDecoder(r.Body).Decode(&v)
		h.mu.Lock()
		h.posts = append(h.posts, v)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// states lists the posts as stage/state/error_kind.
func (h *webhook) states() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for _, p := range h.posts {
		s = append(s, fmt.Sprintf("%v/%v/%v", p["stage"], p["state"], p["error_kind"]))
	}
	return s
}

// TestEachResultOnce: a load of two batches on a terminal (text logs)
// says its result once, in one summary and one line per batch, with maps
// written key=value; in JSON every line names its stage and run.
func TestEachResultOnce(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	src := sb.Config.SourceURL
	if _, err := runCLI(ctx, "seed", "--source", src, "--sales-orders", "30"); err != nil {
		t.Fatal(err)
	}
	in, out := []string{"--ingest-bucket", sb.Config.IngestBucket}, []string{"--processed-bucket", sb.Config.ProcessedBucket}
	for i := 0; i < 2; i++ {
		if i == 1 {
			pgtest.Exec(t, src, "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = LOCALTIMESTAMP WHERE sales_order_id <= 3")
		}
		// Said once: the printed summary, not also an INFO line.
		if got, code := runCode(ctx, append([]string{"ingest", "--log-format", "text", "--source", src}, in...)...); code != 0 ||
			strings.Count(got, "ingest         ") != 1 || strings.Contains(got, "landed batch") || strings.Contains(got, "found nothing new") {
			t.Fatalf("ingest exited %d, or said its result other than once:\n%s", code, got)
		}
		if got, err := runCLI(ctx, append(append([]string{"transform"}, in...), out...)...); err != nil {
			t.Fatalf("transform: %v\n%s", err, got)
		}
	}
	got, code := runCode(ctx, append([]string{"load", "--log-format", "text", "--warehouse", sb.Config.WarehouseURL}, out...)...)
	if code != 0 {
		t.Fatalf("load exited %d:\n%s", code, got)
	}
	checks := []struct {
		what string
		text string
		want int
	}{
		{"the summary", "load           ", 1},
		{"the batches in the summary", "batches 000000000001..000000000002 (2)", 1},
		{"a line per batch", "batch loaded", 2},
		{"the start and end lines, said by the summary", "stage finished", 0},
		{"Go's map syntax", "map[", 0},
	}
	for _, c := range checks {
		if n := strings.Count(got, c.text); n != c.want {
			t.Errorf("%s: %q %d times, want %d:\n%s", c.what, c.text, n, c.want, got)
		}
	}

	// The same, logged as JSON for machines: the end line is there, and
	// every line carries the stage and its run id.
	wh, err := sb.Warehouse.CreateDatabase(ctx, "json_logs")
	if err != nil {
		t.Fatal(err)
	}
	got, code = runCode(ctx, append([]string{"load", "--log-format", "json", "--warehouse", wh}, out...)...)
	if code != 0 || strings.Count(got, `"msg":"stage finished"`) != 1 {
		t.Fatalf("load --log-format json exited %d:\n%s", code, got)
	}
	for line := range strings.Lines(got) {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l struct{ Stage, RunID string }
		if err := json.Unmarshal([]byte(strings.ReplaceAll(line, `"run_id"`, `"runid"`)), &l); err != nil || l.Stage != "load" || l.RunID == "" {
			t.Errorf("a line without its stage or run id: %s", line)
		}
	}
}

// TestRunAlertsOnRejectsAndLag: rows rejected send one warning; the
// warehouse further behind the source than --behind-limit sends a
// freshness alert; run says when it stops.
func TestRunAlertsOnRejectsAndLag(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	src := sb.Config.SourceURL
	if _, err := runCLI(ctx, "seed", "--source", src, "--sales-orders", "20"); err != nil {
		t.Fatal(err)
	}
	hook := newWebhook(t)
	args := []string{"run", "--source", src, "--warehouse", sb.Config.WarehouseURL, "--alert-webhook", hook.URL,
		"--ingest-bucket", sb.Config.IngestBucket, "--processed-bucket", sb.Config.ProcessedBucket,
		"--alert-state", filepath.Join(t.TempDir(), "alerts.json"), "--audit-every", "0"}
	if got, code := runCode(ctx, append(args, "--once")...); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, got)
	}
	if got := hook.states(); len(got) != 0 {
		t.Fatalf("a clean first cycle alerted: %v", got)
	}
	pgtest.Exec(t, src, `INSERT INTO sales_order VALUES (90001, LOCALTIMESTAMP, LOCALTIMESTAMP, 1, 1, 1, 5, 2.50, 1, 'soon', '2026-01-03', 1)`)
	got, code := runCode(ctx, append(args, "--once", "--behind-limit", "1ns")...)
	if code != 0 {
		t.Fatalf("run exited %d:\n%s", code, got)
	}
	want := "transform/warning/bad_rows_rejected freshness/failing/behind_source"
	if got := strings.Join(hook.states(), " "); got != want {
		t.Errorf("alerts %q, want %q", got, want)
	}

	// A run until stopped says it stops, and why.
	stopCtx, stop := context.WithCancel(ctx)
	out := &cancelOn{text: "load ", cancel: stop}
	root := newRoot()
	root.SetOut(out)
	if code := executeRoot(stopCtx, root, append(args, "--interval", "1h", "--log-format", "text"), out); code != 0 ||
		!strings.Contains(out.String(), "sandstone run stopped") || !strings.Contains(out.String(), "interrupted") {
		t.Errorf("run, stopped, exited %d:\n%s", code, out.String())
	}
	if strings.Contains(strings.Join(hook.states(), " "), "freshness/recovered") == false {
		t.Errorf("the lag within the default limit did not recover: %v", hook.states())
	}
}

// TestCaughtUp: a cycle that drains everything catches the warehouse up
// to ingest's snapshot even when nothing was new (a quiet source is not
// behind); with batches left waiting, only to the newest batch loaded.
func TestCaughtUp(t *testing.T) {
	start := time.Now()
	ingested, loaded := start.Add(-time.Minute), start.Add(-time.Hour)
	tests := []struct {
		name    string
		drained bool
		load    time.Time
		want    time.Duration // behind, at least
		most    time.Duration
	}{
		{"quiet source, drained", true, time.Time{}, time.Minute, 2 * time.Minute},
		{"batches left", false, loaded, time.Hour, time.Hour + time.Minute},
		{"nothing loaded, batches left", false, time.Time{}, 0, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(metrics.Options{})
			caughtUp(m, []pipeline.Report{
				{Stage: pipeline.Ingest, SnapshotAt: ingested},
				{Stage: pipeline.Load, SnapshotAt: tt.load},
			}, tt.drained)
			if got := m.BehindSource(); got < tt.want || got > tt.most {
				t.Errorf("behind %s, want %s to %s", got, tt.want, tt.most)
			}
		})
	}
}

// TestBoundedIngest: --max-batch-rows lands a source in several bounded
// batches in one run, which transform and load take one at a time to the
// same warehouse; a negative bound is refused before anything runs.
func TestBoundedIngest(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	src := sb.Config.SourceURL
	if _, err := runCLI(ctx, "seed", "--source", src, "--sales-orders", "60"); err != nil {
		t.Fatal(err)
	}
	in := []string{"--ingest-bucket", sb.Config.IngestBucket}
	got, code := runCode(ctx, append([]string{"ingest", "--source", src, "--max-batch-rows", "100"}, in...)...)
	if code != 0 || !strings.Contains(got, "batches 000000000001..") {
		t.Fatalf("a bounded ingest exited %d:\n%s", code, got)
	}
	if got, code := runCode(ctx, append([]string{"run", "--once", "--source", src, "--warehouse", sb.Config.WarehouseURL,
		"--processed-bucket", sb.Config.ProcessedBucket, "--max-batch-rows", "100"}, in...)...); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, got)
	}
	for table, sql := range map[string]string{"sales_order": "fact_sales_order", "payment": "fact_payment", "address": "dim_location"} {
		want := pgtest.QueryInt(t, src, "SELECT count(*) FROM "+table)
		if n := pgtest.QueryInt(t, sb.Config.WarehouseURL, "SELECT count(*) FROM "+sql); n != want {
			t.Errorf("%s: %d rows in the warehouse, %d in the source", sql, n, want)
		}
	}
	if got, code := runCode(ctx, append([]string{"ingest", "--source", src, "--max-batch-rows", "-1"}, in...)...); code != 1 ||
		!strings.Contains(got, "--max-batch-rows -1") || !strings.Contains(got, "config_invalid") {
		t.Errorf("a negative bound exited %d:\n%s", code, got)
	}
}
