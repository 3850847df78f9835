package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// batchVersions reads every (id, last_updated) batch seq landed, per table.
func batchVersions(t *testing.T, b *lake.Bucket, seq int64) map[string][]version {
	t.Helper()
	var m lake.Manifest
	if err := b.ReadManifest(context.Background(), seq, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string][]version{}
	for _, table := range totesys.Tables {
		if err := landedVersions(context.Background(), b, m, table, func(id int32, us int64) {
			out[table.Name] = append(out[table.Name], version{id, us})
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// sourceVersions reads every (id, last_updated in µs) of the source, per table.
func sourceVersions(t *testing.T, url string) map[string]map[version]bool {
	t.Helper()
	ctx := context.Background()
	tx, _, closeSource, err := OpenSnapshot(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSource()
	out := map[string]map[version]bool{}
	for _, table := range totesys.Tables {
		out[table.Name] = map[version]bool{}
		if err := ReadVersions(ctx, tx, table, 0, 1<<31, func(id int32, us int64) {
			out[table.Name][version{id, us}] = true
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestBoundedBatchesLandEveryVersionOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	// 40 sales orders and 25 designs share one last_updated, more than a
	// batch holds; so do 30 transactions and their payments.
	f.exec(`INSERT INTO design SELECT 100 + g, '2024-02-01 09:00:00', 'D' || g, '/d', 'd', '2024-02-01 09:00:00.250'
		FROM generate_series(1, 25) g;
	INSERT INTO sales_order SELECT 100 + g, '2024-02-01 09:00:00', '2024-02-01 09:00:00.250', 1, 1, 1, g, 1.00, 1,
		'2024-02-02', '2024-02-03', 1 FROM generate_series(1, 40) g;
	INSERT INTO transaction SELECT 100 + g, 'SALE', 100 + g, NULL, '2024-02-01 09:00:00', '2024-02-01 09:00:00.250'
		FROM generate_series(1, 30) g;
	INSERT INTO payment SELECT 100 + g, '2024-02-01 09:00:00', '2024-02-01 09:00:00.250', 100 + g, 1, 5.00, 1, 1, false,
		'2024-02-03', 1, 2 FROM generate_series(1, 30) g`)
	const bound = 7
	opts := f.opts()
	opts.MaxBatchRows = bound
	landed := map[string]map[version]int{}
	var runs, alsoLanded int
	changed := false
	for {
		runs++
		if !changed && len(landed["sales_order"]) >= 5 { // sales order 1 and at least four of the 40
			// Changes arrive while the backlog drains, to rows landed
			// and to rows not landed yet: new versions, again sharing a
			// stamp. Those not landed yet lose their old version.
			changed = true
			var ids []int32
			for id := int32(101); id <= 140; id++ {
				if early := landedID(landed["sales_order"], id); early && alsoLanded < 4 || !early && len(ids)-alsoLanded < 4 {
					ids = append(ids, id)
					if early {
						alsoLanded++
					}
				}
			}
			if alsoLanded == 0 || len(ids) != 8 {
				t.Fatalf("sales orders to change: %v, %d landed", ids, alsoLanded)
			}
			f.exec(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = '2024-02-01 10:00:00'
				WHERE sales_order_id = ANY($1)`, ids)
		}
		if runs > 100 {
			t.Fatal("the backlog never drained")
		}
		res, err := Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Total() > bound {
			t.Errorf("batch %d landed %d rows, more than the bound %d", res.Sequence, res.Total(), bound)
		}
		if res.Sequence != 0 {
			for table, vs := range batchVersions(t, f.bucket, res.Sequence) {
				if landed[table] == nil {
					landed[table] = map[version]int{}
				}
				for _, v := range vs {
					landed[table][v]++
				}
			}
		}
		if !res.More && res.Sequence == 0 {
			break
		}
		if res.More && res.Total() == 0 {
			t.Fatalf("run %d landed nothing, yet says there is more", runs)
		}
	}
	if runs < (10+40+25+30+30)/bound {
		t.Errorf("drained in %d runs: the bound did not hold", runs)
	}
	for table, want := range sourceVersions(t, f.url) {
		for v := range want {
			if landed[table][v] != 1 {
				t.Errorf("%s version %v landed %d times, want once", table, v, landed[table][v])
			}
		}
		for v, n := range landed[table] {
			if n != 1 {
				t.Errorf("%s version %v landed %d times", table, v, n)
			}
		}
	}
	if n := len(landed["sales_order"]); n != 1+40+alsoLanded {
		t.Errorf("%d sales order versions landed, want %d (41 rows, %d changed after they landed)", n, 41+alsoLanded, alsoLanded)
	}
}

// landedID reports whether a version of id is among vs.
func landedID(vs map[version]int, id int32) bool {
	for v := range vs {
		if v.id == id {
			return true
		}
	}
	return false
}

func TestUnreadTableKeepsItsSnapshot(t *testing.T) {
	t.Parallel()
	read := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	ahead := read.Add(time.Hour) // the table's clock runs ahead
	prev := &TableState{Watermark: ahead, Since: read.Add(-time.Hour)}
	r := tableRun{prev: prev, prevSnapshot: read, lookback: 5 * time.Minute}
	ts := r.unread()
	st := State{SnapshotAt: read.Add(30 * time.Minute), Tables: map[string]*TableState{"payment": ts}}
	start, ok := st.NextWindow("payment", 5*time.Minute)
	if want := read.Add(-5 * time.Minute); !ok || !start.Equal(want) {
		t.Errorf("window of a table the batch did not read starts at %v (%v), want %v: its own snapshot less the lookback", start, ok, want)
	}
	if ts.Watermark != prev.Watermark || ts.Since != prev.Since {
		t.Errorf("state of an unread table changed: %+v, was %+v", ts, prev)
	}
}
