package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// clock is a settable time source for readiness tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// serve starts m's HTTP server on a free loopback port and returns its base
// URL; the server stops at the end of the test.
func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) // #nosec G107 -- test server URL
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape reads /metrics and returns every sample by its series name with
// labels, as printed (labels sorted by name).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestScrapeAfterStageRuns(t *testing.T) {
	m := New(Options{})
	base := serve(t, m)

	m.StageDone("ingest", 1500*time.Millisecond,
		map[string]int64{"sales_order": 10, "payment": 4}, map[string]int64{"sales_order": 2048, "payment": 512})
	m.StageDone("ingest", 3*time.Second, map[string]int64{"sales_order": 5}, map[string]int64{"sales_order": 1024})
	m.StageFailed("load", errkind.WarehouseUnreachable)
	m.StageFailed("load", errkind.WarehouseUnreachable)
	m.StageFailed("load", errkind.LoadFailed)
	m.SetPending("transform", 3)
	m.SetPending("load", 7)
	m.SetPending("load", 2)
	m.ObserveFreshness(90 * time.Second)
	m.ObserveFreshness(40 * time.Second)

	got := scrape(t, base)
	want := map[string]float64{
		`sandstone_rows_total{stage="ingest",table="sales_order"}`:                  15,
		`sandstone_rows_total{stage="ingest",table="payment"}`:                      4,
		`sandstone_bytes_total{stage="ingest",table="sales_order"}`:                 3072,
		`sandstone_bytes_total{stage="ingest",table="payment"}`:                     512,
		`sandstone_stage_duration_seconds_count{stage="ingest"}`:                    2,
		`sandstone_stage_duration_seconds_sum{stage="ingest"}`:                      4.5,
		`sandstone_stage_duration_seconds_bucket{stage="ingest",le="1"}`:            0,
		`sandstone_stage_duration_seconds_bucket{stage="ingest",le="2.5"}`:          1,
		`sandstone_stage_duration_seconds_bucket{stage="ingest",le="5"}`:            2,
		`sandstone_stage_failures_total{kind="warehouse_unreachable",stage="load"}`: 2,
		`sandstone_stage_failures_total{kind="load_failed",stage="load"}`:           1,
		`sandstone_stage_failures_total{kind="source_unreachable",stage="load"}`:    0,
		`sandstone_stage_failures_total{kind="source_unreachable",stage="ingest"}`:  0,
		`sandstone_batches_pending{stage="transform"}`:                              3,
		`sandstone_batches_pending{stage="load"}`:                                   2,
		`sandstone_freshness_seconds`:                                               40,
		`sandstone_freshness_lag_seconds_count`:                                     2,
		`sandstone_freshness_lag_seconds_sum`:                                       130,
		`sandstone_freshness_lag_seconds_bucket{le="60"}`:                           1,
		`sandstone_freshness_lag_seconds_bucket{le="120"}`:                          2,
	}
	for series, v := range want {
		g, ok := got[series]
		if !ok {
			t.Errorf("%s missing", series)
		} else if g != v {
			t.Errorf("%s = %v, want %v", series, g, v)
		}
	}
	if ts := got[`sandstone_last_success_timestamp_seconds{stage="ingest"}`]; time.Since(time.Unix(int64(ts), 0)) > time.Hour {
		t.Errorf("last success timestamp %v", ts)
	}
	if _, ok := got[`sandstone_last_success_timestamp_seconds{stage="load"}`]; ok {
		t.Error("a stage that only failed has a last success")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
}

func TestRecord(t *testing.T) {
	m := New(Options{})
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m.now = c.now
	m.Record(StageRun{Stage: "load", Duration: 2 * time.Second,
		Rows: map[string]int64{"fact_sales_order": 7}, Bytes: map[string]int64{"fact_sales_order": 70},
		Freshness: 5 * time.Minute})
	m.Record(StageRun{Stage: "load", Err: errkind.Wrap(errkind.BadRowsRejected, errors.New("x"))})
	m.Record(StageRun{Stage: "ingest", Err: errors.New("unclassified")})
	m.Record(StageRun{Stage: "ingest", Skew: map[string]time.Duration{"sales_order": -5 * time.Hour, "design": 0}})
	m.AuditDone(map[string]map[string]int64{"payment": {"missing": 0, "deleted": 2}}, nil)
	parked := int64(3)
	m.Record(StageRun{Stage: "transform", Rejected: map[string]map[string]int64{"sales_order": {"bad_value": 2}}, Parked: &parked})
	m.AuditDone(nil, errors.New("source unreachable"))

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"rows", testutil.ToFloat64(m.rows.WithLabelValues("load", "fact_sales_order")), 7},
		{"bytes", testutil.ToFloat64(m.bytes.WithLabelValues("load", "fact_sales_order")), 70},
		{"bad rows", testutil.ToFloat64(m.failures.WithLabelValues("load", "bad_rows_rejected")), 1},
		{"internal", testutil.ToFloat64(m.failures.WithLabelValues("ingest", "internal")), 1},
		{"freshness", testutil.ToFloat64(m.freshness), 300},
		{"last success", testutil.ToFloat64(m.lastSuccess.WithLabelValues("load")), 1_700_000_000},
		{"skew behind", testutil.ToFloat64(m.skew.WithLabelValues("sales_order")), -18000},
		{"skew within", testutil.ToFloat64(m.skew.WithLabelValues("design")), 0},
		{"drift rows", testutil.ToFloat64(m.drift.WithLabelValues("payment", "deleted")), 2},
		{"audits with drift", testutil.ToFloat64(m.audits.WithLabelValues("drift")), 1},
		{"audits failed", testutil.ToFloat64(m.audits.WithLabelValues("failed")), 1},
		{"last audit", testutil.ToFloat64(m.lastAudit), 1_700_000_000},
		{"rejected", testutil.ToFloat64(m.rejected.WithLabelValues("sales_order", "bad_value")), 2},
		{"parked", testutil.ToFloat64(m.parked), 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestMetricNamesLint(t *testing.T) {
	m := New(Options{})
	m.StageDone("ingest", time.Second, map[string]int64{"t": 1}, map[string]int64{"t": 1})
	m.SetPending("load", 1)
	m.ObserveFreshness(time.Minute)
	problems, err := testutil.GatherAndLint(m.Registry(),
		"sandstone_rows_total", "sandstone_bytes_total", "sandstone_stage_duration_seconds",
		"sandstone_stage_failures_total", "sandstone_batches_pending",
		"sandstone_last_success_timestamp_seconds", "sandstone_freshness_seconds", "sandstone_freshness_lag_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	m := New(Options{FailureGrace: 10 * time.Minute})
	c := &clock{t: time.Date(2024, 11, 15, 9, 0, 0, 0, time.UTC)}
	m.now = c.now
	base := serve(t, m)

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz = %d %s", code, body)
	}

	fail := errkind.Wrap(errkind.SourceUnreachable, errors.New("dial tcp: refused"))
	steps := []struct {
		name   string
		do     func()
		code   int
		inBody string
	}{
		{"before any cycle", func() {}, 503, "no cycle has succeeded yet"},
		{"first cycle failed", func() { m.CycleDone(fail) }, 503, "source_unreachable"},
		{"first success", func() { c.add(time.Minute); m.CycleDone(nil) }, 200, `"ready":true`},
		{"fresh failure", func() { c.add(time.Minute); m.CycleDone(fail) }, 200, `"ready":true`},
		{"failing within grace", func() { c.add(9 * time.Minute); m.CycleDone(fail) }, 200, `"ready":true`},
		{"failing past grace", func() { c.add(time.Minute); m.CycleDone(fail) }, 503, "failing (source_unreachable) for 600s, since 2024-11-15T09:02:00Z"},
		{"recovered", func() { c.add(time.Minute); m.CycleDone(nil) }, 200, `"ready":true`},
		{"new streak starts afresh", func() { c.add(time.Hour); m.CycleDone(fail) }, 200, `"ready":true`},
	}
	for _, s := range steps {
		s.do()
		code, body := get(t, base+"/readyz")
		if code != s.code || !strings.Contains(body, s.inBody) {
			t.Errorf("%s: /readyz = %d %s, want %d with %q", s.name, code, body, s.code, s.inBody)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Errorf("%s: /readyz body not JSON: %v", s.name, err)
		}
	}
}

func TestServeStopsWithContext(t *testing.T) {
	m := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, "127.0.0.1:0") }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	err = New(Options{}).Serve(context.Background(), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Serve on a used port: %v", err)
	}
}

func TestServeListenerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	if err := New(Options{}).ServeListener(context.Background(), ln); err == nil {
		t.Fatal("ServeListener on a closed listener succeeded")
	}
}

func TestServerGoneAfterCancel(t *testing.T) {
	m := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()
	if code, _ := get(t, fmt.Sprintf("http://%s/healthz", ln.Addr())); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fmt.Sprintf("http://%s/healthz", ln.Addr())); err == nil {
		t.Error("server still answers after its context ended")
	}
}

// TestBehindSource: the warehouse's lag behind the source counts from
// start-up until a cycle catches up, then from the newest snapshot caught
// up to, which never goes back; the build is labelled.
func TestBehindSource(t *testing.T) {
	m := New(Options{})
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m.now, m.started = c.now, c.now()
	c.add(10 * time.Minute)
	if got := m.BehindSource(); got != 10*time.Minute {
		t.Errorf("never caught up: %s behind, want the 10m since start", got)
	}
	m.CaughtUp(c.now().Add(-time.Minute))
	m.CaughtUp(c.now().Add(-time.Hour)) // older: ignored
	c.add(2 * time.Minute)
	if got := m.BehindSource(); got != 3*time.Minute {
		t.Errorf("caught up 3m ago: %s", got)
	}
	m.SourceChanged(time.Unix(1_600_000_000, 0))
	m.SourceChanged(time.Time{})
	m.SetBuildInfo("v1.2.3", "abc", "go1.26")
	for name, want := range map[string]float64{
		"sandstone_warehouse_behind_source_seconds":       180,
		"sandstone_warehouse_caught_up_timestamp_seconds": 1_700_000_000 + 9*60,
		"sandstone_source_last_change_timestamp_seconds":  1_600_000_000,
		"sandstone_build_info":                            1,
	} {
		if got := gathered(t, m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gathered is the value of the one series of the named metric.
func gathered(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0
}

// TestPage: the page given in Options is served at / (and nowhere else),
// beside the metrics; without one, / is not found.
func TestPage(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("the page")) })
	base := serve(t, New(Options{Page: page}))
	if code, body := get(t, base+"/"); code != http.StatusOK || body != "the page" {
		t.Errorf("/ = %d %q", code, body)
	}
	if code, _ := get(t, base+"/other"); code != http.StatusNotFound {
		t.Errorf("/other = %d, want 404", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "sandstone_") {
		t.Errorf("/metrics beside the page = %d", code)
	}
	if code, _ := get(t, serve(t, New(Options{}))+"/"); code != http.StatusNotFound {
		t.Errorf("/ without a page = %d, want 404", code)
	}
}
