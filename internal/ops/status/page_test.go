package status

import (
	"bytes"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// TestPageOfReport: the page says what the report says, draws its charts
// from it, shows no password and the slot's lag only once it is set.
func TestPageOfReport(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	loaded := int64(7)
	r := Report{At: now, LoadedBatch: &loaded, IngestedBatch: &loaded, ProcessedBatch: &loaded,
		Problems: []string{"warehouse: password=xxxxx refused"},
		Stages: []StageState{{Stage: "ingest", State: "ok", LastRun: now.Add(-time.Minute), Batch: "000000000007"},
			{Stage: "load", State: "failing", Error: "warehouse_unreachable: refused"}},
		Behind: []BehindPoint{{now.Add(-2 * time.Hour), 60}, {now.Add(-time.Hour), 3660}, {now.Add(-time.Hour), 30}, {now, 3630}},
		Loads: []warehouse.LedgerEntry{{Sequence: 6, Batch: "000000000006", LoadedAt: now.Add(-time.Hour), Rows: map[string]int64{"fact_sales_order": 40, "dim_date": 2}},
			{Sequence: 7, Batch: "000000000007", LoadedAt: now, Rows: map[string]int64{"fact_sales_order": 3}}},
		Rejected: map[string]map[string]int64{"sales_order": {"bad_value": 2}},
		Counts:   map[string]int64{"fact_sales_order": 1234, "dim_currency": 3},
		Sales: []warehouse.Sales{{Month: "2025-12", Currency: "GBP", Value: 1000.5}, {Month: "2026-01", Currency: "GBP", Value: 250},
			{Month: "2026-01", Currency: "USD", Value: 99.99}},
		Alerts: &alert.State{Stages: map[string]alert.StageState{"ingest": {}}},
	}
	cfg := config.Config{WarehouseURL: "postgres://dw:hunter2@db/w", IngestBucket: "file:///in", ProcessedBucket: "s3://out"}
	var b bytes.Buffer
	if err := r.WriteHTML(&b, cfg, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{`content="30"`, "postgres://dw:xxxxx@db/w", `data-stage="load"`, "warehouse_unreachable: refused",
		`<td class="n">1234</td>`, `data-currency="GBP"`, "1,250.50", "99.99", "problem: warehouse: password=xxxxx refused",
		`data-chart="behind"`, `data-chart="rows"`, `data-chart="rejected"`, `data-chart="sales"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{"hunter2", "slot-lag", "<script", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page has %q", bad)
		}
	}
	if n := len(regexp.MustCompile(`<polyline points="[0-9.]+,[0-9.]+ [0-9.]+,`).FindAllString(page, -1)); n != 3 {
		t.Errorf("%d lines of two points or more, want 3 (behind, GBP, USD)", n)
	}
	if n := strings.Count(page, "<rect "); n != 3 {
		t.Errorf("%d bars, want 3 (two batches, one reject)", n)
	}

	lag := int64(4096)
	r.SlotLagBytes = &lag
	b.Reset()
	if err := r.WriteHTML(&b, cfg, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Replication slot lag: 4096 bytes") {
		t.Error("no slot lag once set")
	}
}

func TestMoney(t *testing.T) {
	for v, want := range map[float64]string{0: "0.00", 12: "12.00", 999.999: "1,000.00", 1234567.8: "1,234,567.80", -1234.5: "-1,234.50"} {
		if got := money(v); got != want {
			t.Errorf("money(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestCacheKeepsUntilLoad: what the cache keeps stays until the newest
// load changes; a ledger that goes back forgets the snapshots too.
func TestCacheKeepsUntilLoad(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Cache{}
	head := &warehouse.LedgerEntry{Sequence: 3, LoadedAt: at}
	c.at(head)
	c.counts, c.snapshots = map[string]int64{"dim_date": 1}, map[int64]time.Time{3: at}
	c.at(&warehouse.LedgerEntry{Sequence: 3, LoadedAt: at})
	if c.counts == nil {
		t.Fatal("the counts were forgotten without a load")
	}
	c.at(&warehouse.LedgerEntry{Sequence: 4, LoadedAt: at.Add(time.Minute)})
	if c.counts != nil || c.snapshots == nil {
		t.Fatalf("after a load: counts %v (want none), snapshots %v (want kept)", c.counts, c.snapshots)
	}
	c.at(&warehouse.LedgerEntry{Sequence: 1, LoadedAt: at.Add(time.Hour)})
	if c.snapshots != nil {
		t.Fatal("a rebuilt warehouse kept the old batches' snapshots")
	}
}

// TestPageServed: the page is served with a policy that lets it load
// nothing, also when nothing can be read, and without the password.
func TestPageServed(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Config{IngestBucket: dir + "/in", ProcessedBucket: dir + "/out",
		WarehouseURL: "postgres://u:hunter2@127.0.0.1:1/w?connect_timeout=1"}
	rec := httptest.NewRecorder()
	NewPage(cfg, dir+"/alerts.json", time.Minute).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") ||
		!strings.Contains(body, "problem: warehouse") || strings.Contains(body, "hunter2") {
		t.Fatalf("%d %v\n%s", rec.Code, rec.Header(), body)
	}
}

// TestTextSaysWhatThePageSays: the text writes the stages, the sales and
// the slot's lag of the same report.
func TestTextSaysWhatThePageSays(t *testing.T) {
	lag := int64(10)
	r := Report{Stages: []StageState{{Stage: "load", State: "failing", LastRun: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Batch: "000000000002"}},
		Sales: []warehouse.Sales{{Month: "2026-01", Currency: "EUR", Value: 12.5}}, SlotLagBytes: &lag}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  load       failing  2026-01-02 03:04:05.000 000000000002", "  2026-01 EUR            12.50", "replication slot lag: 10 bytes"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStageNames(t *testing.T) {
	if stageIngest != pipeline.Ingest || stageTransform != pipeline.Transform || stageLoad != pipeline.Load {
		t.Error("status names the stages otherwise than pipeline")
	}
}
