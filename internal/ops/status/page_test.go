package status

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
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
		`<td class="n">1234</td>`, `data-currency="GBP"`, "1250.50", "99.99", "problem: warehouse: password=xxxxx refused",
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
