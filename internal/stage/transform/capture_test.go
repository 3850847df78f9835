package transform

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// capturedRow is the capture columns an ingested object of a capture batch
// carries after the source's own.
type capturedRow struct {
	Op         string    `parquet:"_sandstone_op"`
	LSN        int64     `parquet:"_sandstone_lsn"`
	CommitTime time.Time `parquet:"_sandstone_commit_time,timestamp(microsecond)"`
}

type (
	capturedAddress struct {
		totesys.Address
		capturedRow
	}
	capturedCounterparty struct {
		totesys.Counterparty
		capturedRow
	}
	capturedDesign struct {
		totesys.Design
		capturedRow
	}
	capturedSalesOrder struct {
		totesys.SalesOrder
		capturedRow
	}
)

// putCaptured writes rows as the object of a capture batch, its columns
// (the capture columns among them) declared as ingest declares them.
func putCaptured[T any](t *testing.T, b *lake.Bucket, table string, seq int64, rows []T) lake.Object {
	t.Helper()
	obj, _, _ := putTable(t, b, table, seq, rows, func(T) time.Time { return time.Time{} })
	for _, f := range ingestSchema[T](table).Fields() {
		obj.Columns = append(obj.Columns, lake.Column{Name: f.Name(), Type: typeName(f)})
	}
	return obj
}

// TestCaptureBatch transforms a capture batch: rows in commit order, the
// versions of an id stamped with decreasing last_updated, some older than
// what the state holds. Commit order decides: each dimension's last row is
// its current value; every fact row is kept, in order; the capture columns
// are accepted silently; the tombstones, revived ids and the capture's
// description reach the processed manifest.
func TestCaptureBatch(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())

	at := func(d time.Duration) time.Time { return t0.Add(d) }
	seen := func(lsn int64) capturedRow {
		return capturedRow{Op: lake.OpUpdate, LSN: lsn, CommitTime: at(time.Duration(lsn) * time.Minute)}
	}
	addr := func(id int32, line string, lu time.Time, lsn int64) capturedAddress {
		return capturedAddress{totesys.Address{AddressID: id, AddressLine1: line, City: "Bath", PostalCode: "BA1", Country: "UK",
			Phone: "0", CreatedAt: at(-2 * time.Hour), LastUpdated: lu}, seen(lsn)}
	}
	design := func(id int32, name string, lu time.Time, lsn int64) capturedDesign {
		return capturedDesign{totesys.Design{DesignID: id, DesignName: name, FileLocation: "/usr", FileName: "d.json",
			CreatedAt: at(-2 * time.Hour), LastUpdated: lu}, seen(lsn)}
	}
	order := func(units int32, lu time.Time, lsn int64) capturedSalesOrder {
		o := world().SalesOrder[0]
		o.UnitsSold, o.LastUpdated = units, lu
		return capturedSalesOrder{o, seen(lsn)}
	}
	objs := []lake.Object{
		putCaptured(t, ingest, "address", 2, []capturedAddress{
			addr(1, "first", at(3*time.Hour), 1),
			addr(1, "second", at(2*time.Hour), 2),
			addr(1, "last", at(time.Hour), 3),
			addr(2, "older than held", at(-time.Hour), 4), // the state holds t0
		}),
		putCaptured(t, ingest, "counterparty", 2, []capturedCounterparty{{totesys.Counterparty{CounterpartyID: 1,
			CounterpartyLegalName: "Acme, stamped earlier", LegalAddressID: 1, CreatedAt: at(-2 * time.Hour), LastUpdated: at(-time.Hour)}, seen(5)}}),
		putCaptured(t, ingest, "design", 2, []capturedDesign{
			design(1, "first", at(3*time.Hour), 6),
			design(2, "only", at(time.Hour), 7),
			design(1, "second", at(2*time.Hour), 8),
			design(1, "last", at(time.Hour), 9),
		}),
		putCaptured(t, ingest, "sales_order", 2, []capturedSalesOrder{
			order(1, at(3*time.Hour), 10),
			order(2, at(2*time.Hour), 11),
			order(3, at(2*time.Hour), 12), // a correction of the version before
		}),
	}
	capture := &lake.Capture{Slot: "sandstone", Publication: "sandstone", SystemID: "7", Timeline: 1, Start: 100, End: 200}
	m := lake.Manifest{Version: 1, Stage: "ingest", Batch: lake.BatchID(2), Sequence: 2, RunID: "test", CreatedAt: time.Now().UTC(),
		SourceNewest: at(3 * time.Hour), Tables: objs, Capture: capture,
		Deleted: map[string][]int32{"payment": {1}}, Revived: map[string][]int32{"sales_order": {7}}}
	if err := ingest.PutManifest(context.Background(), 2, &m); err != nil {
		t.Fatal(err)
	}

	var logs logBuffer
	if _, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Logger: logs.logger()}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(logs.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["level"] != "INFO" && r["level"] != "DEBUG" {
			t.Errorf("logged %s", line)
		}
	}
	if rej := rejectsOf(t, proc, 2); len(rej) != 0 {
		t.Errorf("rejects %+v", rej)
	}

	locs := sortBy(rowsOf[star.DimLocation](t, proc, 2, "dim_location"), func(l star.DimLocation) int32 { return l.LocationID })
	if len(locs) != 2 || locs[0].AddressLine1 != "last" || locs[1].AddressLine1 != "older than held" {
		t.Errorf("dim_location %+v, want address 1's last row and address 2's older one", locs)
	}
	cps := sortBy(rowsOf[star.DimCounterparty](t, proc, 2, "dim_counterparty"), func(c star.DimCounterparty) int32 { return c.CounterpartyID })
	if len(cps) != 3 || cps[0].CounterpartyLegalName != "Acme, stamped earlier" || cps[0].CounterpartyLegalAddressLine1 != "last" ||
		cps[1].CounterpartyLegalAddressLine1 != "older than held" || cps[2].CounterpartyLegalAddressLine1 != "last" {
		t.Errorf("dim_counterparty %+v, want Acme's older-stamped row, Bolt and Cog at their addresses' last rows", cps)
	}
	designs := sortBy(rowsOf[star.DimDesign](t, proc, 2, "dim_design"), func(d star.DimDesign) int32 { return d.DesignID })
	if len(designs) != 2 || designs[0].DesignName != "last" || designs[1].DesignName != "only" {
		t.Errorf("dim_design %+v, want design 1's last row and design 2", designs)
	}
	facts := rowsOf[star.FactSalesOrder](t, proc, 2, "fact_sales_order")
	var units []int32
	for _, f := range facts {
		units = append(units, f.UnitsSold)
	}
	if !reflect.DeepEqual(units, []int32{1, 2, 3}) || facts[2].LastUpdatedTime != star.TimeOf(at(2*time.Hour)) {
		t.Errorf("fact_sales_order %+v, want every version in commit order", facts)
	}

	pm := processed(t, proc, 2)
	if !reflect.DeepEqual(pm.Capture, capture) || !reflect.DeepEqual(pm.Revived, m.Revived) || !reflect.DeepEqual(pm.Deleted, m.Deleted) {
		t.Errorf("processed manifest: capture %+v, revived %v, deleted %v", pm.Capture, pm.Revived, pm.Deleted)
	}
}

// TestPollBatchKeepsNewest: the same rows in a poll batch keep the rule of
// the poll (the newest last_updated wins, an older version is ignored).
func TestPollBatchKeepsNewest(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Design = []totesys.Design{
		{DesignID: 1, DesignName: "newest", FileLocation: "/usr", FileName: "d.json", CreatedAt: t0, LastUpdated: t0.Add(3 * time.Hour)},
		{DesignID: 1, DesignName: "older", FileLocation: "/usr", FileName: "d.json", CreatedAt: t0, LastUpdated: t0.Add(time.Hour)},
	}
	putBatch(t, ingest, 1, w)
	run(t, ingest, proc)
	if got := rowsOf[star.DimDesign](t, proc, 1, "dim_design"); len(got) != 1 || got[0].DesignName != "newest" {
		t.Errorf("dim_design %+v, want the newest", got)
	}
}
