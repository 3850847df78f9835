package warehouse

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// captured is the capture of a test's capture batches.
var captured = &lake.Capture{Slot: "sandstone", Publication: "sandstone", SystemID: "7", Timeline: 1, Start: 1, End: 2}

// loadModes are the ways load writes fact rows: PostgreSQL's foreign-key
// triggers row by row, the set-based check, and a big batch in bulk.
var loadModes = []string{"row by row", "set-based", "bulk"}

// envIn is a test warehouse whose loads write facts as mode says.
func envIn(t *testing.T, mode string) *env {
	e := newEnv(t)
	e.set.setBasedChecks = mode != "row by row"
	if mode == "bulk" {
		e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1
	}
	return e
}

// corrections lists the correction ledger: table, record id, source id,
// batch, units sold before and after.
func corrections(t *testing.T, e *env) string {
	t.Helper()
	return joined(query(t, e.url, `SELECT fact_table, record_id::text, source_id::text, batch,
		old_values->>'units_sold', new_values->>'units_sold' FROM sandstone_corrections ORDER BY corrected_at, batch, record_id`))
}

func salesRows(t *testing.T, e *env) string {
	t.Helper()
	return joined(query(t, e.url, `SELECT sales_record_id::text, sales_order_id::text, last_updated_date::text,
		last_updated_time::text, units_sold::text, unit_price::text FROM fact_sales_order ORDER BY 1`))
}

// TestCaptureCorrections loads capture batches whose fact versions the
// warehouse holds already: a changed one corrects its row, recorded with
// its old and new values; an identical one changes nothing and records
// nothing; of one version twice in a batch the last counts; a new version
// is appended. A poll batch still skips a version held, with its warning.
func TestCaptureCorrections(t *testing.T) {
	t.Parallel()
	for _, mode := range loadModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := envIn(t, mode)
			put(t, e.bucket, world(1))
			e.load(t)

			// A correction of sales order 1's version, and a new version.
			put(t, e.bucket, batch{seq: 2, capture: captured, sales: []star.FactSalesOrder{
				sale(1, "2024-01-02", "10:11:12.345", 60, 1234), sale(1, "2024-01-03", "08:00:00.000", 61, 1234)}})
			res := e.load(t)
			if b := res.Batches[0]; b.Rows["fact_sales_order"] != 1 || b.Corrected["fact_sales_order"] != 1 {
				t.Errorf("batch 2: rows %v, corrected %v; want 1 appended, 1 corrected", b.Rows, b.Corrected)
			}
			rows := salesRows(t, e)
			if !strings.HasPrefix(rows, "1|1|2024-01-02|10:11:12.345|60|12.34\n") || !strings.Contains(rows, "|1|2024-01-03|08:00:00|61|12.34") {
				t.Errorf("fact_sales_order after the correction:\n%s", rows)
			}
			if got := corrections(t, e); got != "fact_sales_order|1|1|000000000002|50|60" {
				t.Errorf("corrections:\n%s", got)
			}
			if got := joined(query(t, e.url, `SELECT ((old_values - 'units_sold') = (new_values - 'units_sold'))::text,
				old_values->>'unit_price', (new_values ? 'sales_record_id')::text, (corrected_at <= now())::text FROM sandstone_corrections`)); got != "true|12.34|false|true" {
				t.Errorf("the correction's values: %s", got)
			}

			// The same version again, as it stands: nothing to record.
			put(t, e.bucket, batch{seq: 3, capture: captured, sales: []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 60, 1234)}})
			res = e.load(t)
			if b := res.Batches[0]; b.Rows["fact_sales_order"] != 0 || len(b.Corrected) != 0 {
				t.Errorf("batch 3: rows %v, corrected %v; want nothing", b.Rows, b.Corrected)
			}
			if got := corrections(t, e); got != "fact_sales_order|1|1|000000000002|50|60" {
				t.Errorf("corrections after an identical version:\n%s", got)
			}

			// Twice in one batch: a held version and a new one; the last wins.
			put(t, e.bucket, batch{seq: 4, capture: captured, sales: []star.FactSalesOrder{
				sale(1, "2024-01-02", "10:11:12.345", 70, 1234), sale(2, "2024-01-04", "09:00:00.000", 1, 100),
				sale(1, "2024-01-02", "10:11:12.345", 80, 1234), sale(2, "2024-01-04", "09:00:00.000", 2, 200)}})
			res = e.load(t)
			if b := res.Batches[0]; b.Rows["fact_sales_order"] != 1 || b.Corrected["fact_sales_order"] != 1 {
				t.Errorf("batch 4: rows %v, corrected %v; want 1 appended, 1 corrected", b.Rows, b.Corrected)
			}
			rows = salesRows(t, e)
			if !strings.HasPrefix(rows, "1|1|2024-01-02|10:11:12.345|80|12.34\n") || !strings.Contains(rows, "|2|2024-01-04|09:00:00|2|2.00") ||
				strings.Count(rows, "\n") != 2 {
				t.Errorf("fact_sales_order after batch 4:\n%s", rows)
			}
			if got := corrections(t, e); got != "fact_sales_order|1|1|000000000002|50|60\nfact_sales_order|1|1|000000000004|60|80" {
				t.Errorf("corrections after batch 4:\n%s", got)
			}

			// A poll batch keeps the poll's rule.
			put(t, e.bucket, batch{seq: 5, sales: []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 99, 1234)}})
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			if res, err := e.loadWith(context.Background(), opts); err != nil || res.Batches[0].Rows["fact_sales_order"] != 0 {
				t.Fatalf("poll batch: %+v, %v", res, err)
			}
			if !rec.has("fact versions already in the warehouse were skipped") {
				t.Errorf("no warning of the version skipped:\n%s", strings.Join(rec.lines, "\n"))
			}
			if rows := salesRows(t, e); !strings.HasPrefix(rows, "1|1|2024-01-02|10:11:12.345|80|") {
				t.Errorf("a poll batch changed a fact row:\n%s", rows)
			}
			if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM sandstone_corrections"); n != 2 {
				t.Errorf("%d corrections after the poll batch, want 2", n)
			}
		})
	}
}

// TestCaptureFailedBatchLeavesNoCorrection: a capture batch that fails
// after correcting a fact row (a later fact's foreign key) leaves neither
// the correction nor its ledger row: both are the batch's transaction.
func TestCaptureFailedBatchLeavesNoCorrection(t *testing.T) {
	t.Parallel()
	for _, mode := range loadModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := envIn(t, mode)
			put(t, e.bucket, world(1))
			e.load(t)
			before := salesRows(t, e)
			bad := payment(2, "2024-01-03", "08:00:00.000", 5, true)
			bad.TransactionID = 99
			put(t, e.bucket, batch{seq: 2, capture: captured,
				sales:    []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 60, 1234)},
				payments: []star.FactPayment{bad}})
			_, err := e.loadWith(context.Background(), e.opts())
			if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), "transaction") {
				t.Fatalf("load: %v (kind %s), want load_failed naming the transaction key", err, errkind.Of(err))
			}
			if got := salesRows(t, e); got != before {
				t.Errorf("fact_sales_order after the failed batch:\n%s\nwant\n%s", got, before)
			}
			if got := corrections(t, e); got != "" {
				t.Errorf("corrections after the failed batch:\n%s", got)
			}
			if seq, err := opened(context.Background(), e.url, "", (*Warehouse).LoadedSeq); err != nil || seq != 1 {
				t.Errorf("loaded seq %d, %v; want 1", seq, err)
			}
		})
	}
}

// TestRevivedLeaveTheDeletions: the tombstones of a capture batch reach
// sandstone_deletions, and a later batch's revived ids (deleted, then
// inserted again) leave it; an id both revived and deleted again in one
// batch stays deleted.
func TestRevivedLeaveTheDeletions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	put(t, e.bucket, batch{seq: 2, capture: captured, deleted: map[string][]int32{"sales_order": {1, 2, 3}, "payment": {1}}})
	put(t, e.bucket, batch{seq: 3, capture: captured, revived: map[string][]int32{"sales_order": {1, 3}, "payment": {1}},
		deleted: map[string][]int32{"sales_order": {3}}})
	e.load(t)
	if got := joined(query(t, e.url, "SELECT source_table, id::text, batch FROM sandstone_deletions ORDER BY 1, 2")); got !=
		"sales_order|2|000000000002\nsales_order|3|000000000003" {
		t.Errorf("sandstone_deletions:\n%s", got)
	}
}

// TestCaptureFirstBatchTakesTheLastOfAVersion: into empty fact tables, a
// capture batch holding a version twice keeps the last of it, and records
// no correction (the warehouse held nothing to correct).
func TestCaptureFirstBatchTakesTheLastOfAVersion(t *testing.T) {
	t.Parallel()
	for _, mode := range loadModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := envIn(t, mode)
			b := world(1)
			b.capture = captured
			b.sales = []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 50, 1234),
				sale(2, "2024-01-02", "11:00:00.000", 3, 300), sale(1, "2024-01-02", "10:11:12.345", 51, 1234)}
			put(t, e.bucket, b)
			res := e.load(t)
			if b := res.Batches[0]; b.Rows["fact_sales_order"] != 2 || len(b.Corrected) != 0 {
				t.Errorf("rows %v, corrected %v; want 2 appended, none corrected", b.Rows, b.Corrected)
			}
			if got := joined(query(t, e.url, "SELECT sales_order_id::text, units_sold::text FROM fact_sales_order ORDER BY 1")); got != "1|51\n2|3" {
				t.Errorf("fact_sales_order:\n%s", got)
			}
			if got := corrections(t, e); got != "" {
				t.Errorf("corrections:\n%s", got)
			}
		})
	}
}
