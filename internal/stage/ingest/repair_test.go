package ingest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// auditSnapshot is a snapshot of the source as an audit reads it.
type auditSnapshot struct {
	tx pgx.Tx
	f  *fixture
}

func (f *fixture) auditSnapshot() auditSnapshot {
	f.t.Helper()
	tx, _, closeTx, err := OpenSnapshot(context.Background(), f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(closeTx)
	return auditSnapshot{tx: tx, f: f}
}

func (s auditSnapshot) repair(rep Repair) Result {
	s.f.t.Helper()
	at := s.f.manifest(1).SnapshotAt // any time: the repair's manifest records it
	res, err := LandRepair(context.Background(), s.tx, at, s.f.bucket, rep, nil)
	if err != nil {
		s.f.t.Fatalf("repair: %v", err)
	}
	return res
}

// repairedIDs is, per table, the ids of the versions batch seq landed.
func repairedIDs(t *testing.T, b *lake.Bucket, seq int64) map[string][]int32 {
	out := map[string][]int32{}
	for table, vs := range batchVersions(t, b, seq) {
		for _, v := range vs {
			out[table] = append(out[table], v.id)
		}
		slices.Sort(out[table])
	}
	return out
}

// TestRepairLandsBesideTheCycles: an audit compares with batch 1; one
// batch, or several, land before its repair. The repair lands on top of
// them only what they did not land: no version they landed (or a newer
// one), no tombstone they recorded, none for an id they landed again, and
// no version of an id they recorded as deleted. Two repairs of the same
// audit that race land it once.
func TestRepairLandsBesideTheCycles(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		capture string
		several bool
	}{{"poll one", config.CapturePoll, false}, {"poll several", config.CapturePoll, true},
		{"wal one", config.CaptureWAL, false}, {"wal several", config.CaptureWAL, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testRepairBesideCycles(t, c.capture, c.several)
		})
	}
}

func testRepairBesideCycles(t *testing.T, capture string, several bool) {
	f := newFixture(t)
	if capture == config.CaptureWAL {
		f = walFixture(t)
	}
	wal := capture == config.CaptureWAL
	smallSource(f)
	f.exec(`INSERT INTO sales_order SELECT i, now() - interval '1 hour', now() - interval '1 hour',1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1 FROM generate_series(2, 3) i;
		INSERT INTO transaction SELECT i, 'SALE', i, NULL, now() - interval '1 hour', now() - interval '1 hour' FROM generate_series(2, 3) i;
		INSERT INTO payment SELECT i, now() - interval '1 hour', now() - interval '1 hour',i,1,394.00,1,1,false,'2024-01-03',1,2 FROM generate_series(2, 3) i`)
	if res := f.run(); res.Sequence != 1 {
		t.Fatalf("first run: %+v", res)
	}
	// Before the audit: what no poll sees (a delete, a version stamped in
	// the past); capture lands it in the next batch.
	f.exec(`DELETE FROM payment WHERE payment_id IN (2, 3);
		UPDATE sales_order SET units_sold = 7, last_updated = now() - interval '1 day' WHERE sales_order_id = 2`)
	audits := []auditSnapshot{f.auditSnapshot(), f.auditSnapshot()}
	// What the audit of batch 1 found (currency 1 and payment 1 are what
	// an audit of batch 1 could not know had landed: it lands them).
	rep := Repair{Seq: 1, Missing: map[string][]int32{"sales_order": {2, 3}, "currency": {1}, "payment": {1}},
		Deleted: map[string][]int32{"payment": {2, 3}}}
	// After the audit: a newer version of sales order 3, payment 2 back,
	// payment 1 deleted (capture records it: its version must not come
	// back), and, with several, a batch of something else.
	changes := []string{
		"UPDATE sales_order SET units_sold = 8, last_updated = now() WHERE sales_order_id = 3",
		`INSERT INTO payment VALUES (2, now(), now(),2,1,394.00,1,1,false,'2024-01-03',1,2)`,
		"DELETE FROM payment WHERE payment_id = 1",
		"UPDATE sales_order SET last_updated = now() WHERE sales_order_id = 1",
	}
	var seq int64 = 1
	for i, sql := range changes {
		f.exec(sql)
		if several || i == len(changes)-1 {
			if res := f.run(); res.Sequence != 0 {
				seq = res.Sequence
			}
		}
	}
	if want := int64(2); !several && seq != want || several && seq < 4 {
		t.Fatalf("the cycles landed up to batch %d", seq)
	}
	// Two repairs of the audit race: one lands, the other finds nothing
	// left to land.
	results := make([]Result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = audits[i].repair(rep) })
	}
	wg.Wait()
	landed := results[0]
	if landed.Sequence == 0 {
		landed = results[1]
	}
	if landed.Sequence != seq+1 || results[0].Sequence != 0 && results[1].Sequence != 0 {
		t.Fatalf("racing repairs: %+v, %+v; want one batch %d", results[0], results[1], seq+1)
	}
	if latest, _ := f.bucket.LatestSeq(context.Background()); latest != seq+1 {
		t.Fatalf("latest batch %d, want %d", latest, seq+1)
	}
	m := f.manifest(seq + 1)
	want, wantDeleted := map[string][]int32{"sales_order": {2}, "currency": {1}, "payment": {1}}, map[string][]int32{"payment": {3}}
	if wal {
		// Capture landed sales order 2's version and payment 3's
		// tombstone, and payment 1's.
		want, wantDeleted = map[string][]int32{"currency": {1}}, nil
	}
	if got := repairedIDs(t, f.bucket, seq+1); !m.Repair || !equalIDs(got, want) || !equalIDs(m.Deleted, wantDeleted) {
		t.Fatalf("the repair landed %v and tombstones %v (repair %v), want %v and %v", got, m.Deleted, m.Repair, want, wantDeleted)
	}
	if n := landed.Tombstones["payment"]; n != len(wantDeleted["payment"]) {
		t.Errorf("the result counts %d tombstones, the batch holds %v", n, m.Deleted)
	}
	if !wal {
		type unitsRow struct {
			ID    int32 `parquet:"sales_order_id"`
			Units int32 `parquet:"units_sold"`
		}
		if so := rows[unitsRow](t, f.bucket, seq+1, "sales_order"); len(so) != 1 || so[0].Units != 7 {
			t.Errorf("sales order 2 landed as %+v, want the audit's version", so)
		}
	}
	// The same repair again lands nothing; the cycles go on from the
	// repair, in either mode.
	if res := audits[0].repair(rep); res.Sequence != 0 {
		t.Fatalf("the repair again landed %+v", res)
	}
	// (Capture may land an empty batch that moves the slot past WAL other
	// databases of the server wrote.)
	if res := f.run(); res.Total() != 0 {
		t.Fatalf("a cycle after the repair landed %+v", res)
	}
	f.exec("UPDATE sales_order SET units_sold = 9, last_updated = now() WHERE sales_order_id = 1")
	res := f.run()
	if res.Sequence <= seq+1 || res.Rows["sales_order"] != 1 || res.Total() != 1 {
		t.Fatalf("a cycle after the repair: %+v", res)
	}
	if wal {
		if got, end := f.confirmed(), f.manifest(res.Sequence).Capture.End; got != end {
			t.Errorf("slot confirmed to %s, the batch after the repair ends at %s", got, end)
		}
	}
}

// equalIDs compares ids per table, a table with none as no table.
func equalIDs(a, b map[string][]int32) bool {
	a, b = cloneIDs(a), cloneIDs(b)
	if len(a) != len(b) {
		return false
	}
	for t, ids := range a {
		if !slices.Equal(slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values(b[t]))) {
			return false
		}
	}
	return true
}
