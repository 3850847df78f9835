package ingest

import (
	"strings"
	"testing"
)

// A table read whole on every run is named once, with the index that
// would make a run read only its changes, and recorded in the state for
// status; an index that leads with last_updated (B-tree or BRIN) ends it,
// one that does not lead with it, or covers part of the table, does not.
func TestAdvisesAnIndexOnLastUpdated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.scanAdvice = 1
	smallSource(f)
	f.exec(`ANALYZE`)
	f.exec(`CREATE INDEX ON payment (last_updated)`)
	f.exec(`CREATE INDEX ON transaction USING brin (last_updated)`)
	f.exec(`CREATE INDEX ON sales_order (sales_order_id, last_updated)`)
	f.exec(`CREATE INDEX ON sales_order (last_updated) WHERE sales_order_id > 100`)
	f.run()
	_, st, err := LoadState(t.Context(), f.bucket)
	if err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]bool{"sales_order": true, "currency": true, "payment": false, "transaction": false} {
		if got := st.Tables[table].Unindexed > 0; got != want {
			t.Errorf("%s: unindexed %d, want read whole %v", table, st.Tables[table].Unindexed, want)
		}
	}
	advice := `"advice":"CREATE INDEX CONCURRENTLY ON \"sales_order\" (\"last_updated\")"`
	if n := strings.Count(f.logs.String(), advice); n != 1 {
		t.Errorf("advice for sales_order logged %d times, want once:\n%s", n, f.logs.String())
	}

	// Said once: the next batch keeps the record and says nothing again.
	// What changes while the source is quiet is said with the batch that
	// records it, not by every run that finds nothing new (and saves no
	// state).
	f.exec(`DROP INDEX payment_last_updated_idx`)
	for range 2 {
		if res := f.run(); res.Sequence != 0 {
			t.Fatalf("a quiet source landed batch %d", res.Sequence)
		}
	}
	paymentAdvice := `"advice":"CREATE INDEX CONCURRENTLY ON \"payment\" (\"last_updated\")"`
	if n := strings.Count(f.logs.String(), paymentAdvice); n != 0 {
		t.Errorf("advice for payment logged %d times by runs that landed nothing", n)
	}
	f.exec(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now()`)
	f.run()
	if n, m := strings.Count(f.logs.String(), advice), strings.Count(f.logs.String(), paymentAdvice); n != 1 || m != 1 {
		t.Errorf("advice logged %d times for sales_order and %d for payment over four runs, want once each", n, m)
	}
	f.exec(`CREATE INDEX ON sales_order (last_updated)`)
	f.exec(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now()`)
	f.run()
	_, st, _ = LoadState(t.Context(), f.bucket)
	if st.Tables["sales_order"].Unindexed != 0 || st.Tables["currency"].Unindexed == 0 {
		t.Errorf("after the index: sales_order %d, currency %d", st.Tables["sales_order"].Unindexed, st.Tables["currency"].Unindexed)
	}
}
