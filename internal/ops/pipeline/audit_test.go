package pipeline

import (
	"context"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
)

// TestAuditRepairsThroughThePipeline: what no watermark sees (a design
// committed later than the lookback, with an order that refers to it; an
// order backfilled into 2023; a deleted payment) is found by the audit,
// mended by --repair through the ordinary stages, and a second repair
// changes nothing.
func TestAuditRepairsThroughThePipeline(t *testing.T) {
	cfg := install(t)
	pgtest.LoadSnapshot(t, cfg.SourceURL)
	cycle(t, cfg)
	p := open(t, cfg)
	run := func(repair bool) audit.Report {
		t.Helper()
		r, err := audit.Run(context.Background(), audit.Options{SourceURL: cfg.SourceURL, Bucket: p.Ingest, Lookback: cfg.Lookback, Repair: repair})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(false); r.Drift {
		t.Fatalf("a clean pipeline audits with drift: %+v", r.Tables)
	}

	// The design table's stamps end 2024-11-15: one stamped now lands; one
	// stamped a day before it commits too late for any window.
	pgtest.Exec(t, cfg.SourceURL, `INSERT INTO design VALUES (9001, LOCALTIMESTAMP, 'Now', '/n', 'n', LOCALTIMESTAMP)`)
	cycle(t, cfg)
	pgtest.Exec(t, cfg.SourceURL, `
		INSERT INTO design VALUES (9002, LOCALTIMESTAMP - interval '1 day', 'Late', '/l', 'l', LOCALTIMESTAMP - interval '1 day');
		INSERT INTO sales_order VALUES (90001, LOCALTIMESTAMP, LOCALTIMESTAMP, 9002, 1, 1, 5, 2.50, 1, '2026-01-02', '2026-01-03', 1);
		INSERT INTO sales_order VALUES (90002, '2023-01-01 10:00', '2023-01-01 10:00', 3, 1, 1, 7, 1.25, 1, '2023-01-05', '2023-01-06', 1);
		DELETE FROM payment WHERE payment_id = 3`)
	cycle(t, cfg)
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, "SELECT count(*) FROM fact_sales_order WHERE sales_order_id = 90001"); n != 0 {
		t.Fatal("the order whose design never landed reached the warehouse")
	}

	r := run(false)
	if d, so, pay := r.Tables["design"], r.Tables["sales_order"], r.Tables["payment"]; !r.Drift || d.Missing != 1 || d.MissingExamples[0] != 9002 ||
		so.Missing != 1 || so.MissingExamples[0] != 90002 || pay.Deleted != 1 || pay.DeletedExamples[0] != 3 {
		t.Fatalf("audit: design %+v sales_order %+v payment %+v", *d, *so, *pay)
	}
	r = run(true)
	if r.Repaired == nil || r.Repaired.Rows["design"] != 1 || r.Repaired.Rows["sales_order"] != 1 || r.Repaired.Tombstones["payment"] != 1 {
		t.Fatalf("repair: %+v", r.Repaired)
	}
	if again := run(false); again.Drift || again.Tables["payment"].DeletedRecorded != 1 {
		t.Fatalf("after the repair: %+v", again.Tables["payment"])
	}
	cycle(t, cfg)
	checks := []struct {
		what string
		sql  string
	}{
		{"the repaired design", "SELECT count(*) FROM dim_design WHERE design_id = 9002"},
		{"the parked order, released", "SELECT count(*) FROM fact_sales_order WHERE sales_order_id = 90001"},
		{"the backfilled order", "SELECT count(*) FROM fact_sales_order WHERE sales_order_id = 90002"},
		{"the deletion", "SELECT count(*) FROM sandstone_deletions WHERE source_table = 'payment' AND id = 3"},
		{"the deleted payment's history, kept", "SELECT least(count(*), 1) FROM fact_payment WHERE payment_id = 3"},
	}
	for _, c := range checks {
		if n := pgtest.QueryInt(t, cfg.WarehouseURL, c.sql); n != 1 {
			t.Errorf("%s: %d rows", c.what, n)
		}
	}
	before, _ := p.Ingest.LatestSeq(context.Background())
	if r := run(true); r.Drift || r.Repaired != nil {
		t.Fatalf("a second repair: %+v", r.Repaired)
	}
	if after, _ := p.Ingest.LatestSeq(context.Background()); after != before {
		t.Fatalf("a second repair landed batch %d", after)
	}
}
