package warehouse

import (
	"context"
	"slices"
	"testing"
	"time"
)

// estimate is PostgreSQL's estimate of table's rows (pg_class.reltuples, -1
// before any vacuum or analyze), as text.
func (e *env) estimate(t *testing.T, table string) string {
	t.Helper()
	return joined(query(t, e.url, "SELECT reltuples::bigint::text FROM pg_catalog.pg_class WHERE oid = $1::regclass", table))
}

// Not parallel: the test server commits asynchronously (as the sandbox's
// do), and another test's commits could keep the vacuum from marking rows
// visible to all (see flushCommits).
func TestLoadVacuumsTheTablesItFilled(t *testing.T) {
	e := newEnv(t)
	sales := func(seq int64, from, to int32) batch {
		b := batch{seq: seq}
		for id := from; id <= to; id++ {
			b.sales = append(b.sales, sale(id, "2024-01-03", "08:00:00.000", id, 100))
		}
		return b
	}
	steps := []struct {
		name    string
		batches []batch
		opts    func(*Options)
		want    []string // the tables vacuumed
		after   map[string]string
	}{
		{name: "the first load fills every table", batches: []batch{world(1)},
			want: []string{"dim_counterparty", "dim_currency", "dim_date", "dim_design", "dim_location", "dim_payment_type",
				"dim_staff", "dim_transaction", "fact_payment", "fact_purchase_order", "fact_sales_order"},
			after: map[string]string{"dim_staff": "2", "dim_date": "38", "fact_sales_order": "1"}},
		{name: "under a deadline it is left to autovacuum", batches: []batch{sales(2, 2, 3)},
			opts:  func(o *Options) { o.Deadline = time.Now().Add(time.Hour) },
			after: map[string]string{"fact_sales_order": "1"}},
		{name: "a load that doubles a table vacuums it", batches: []batch{sales(3, 4, 12)},
			want: []string{"fact_sales_order"}, after: map[string]string{"fact_sales_order": "12", "dim_staff": "2"}},
		{name: "a small part of a table is left to autovacuum", batches: []batch{sales(4, 13, 14), sales(5, 15, 15)},
			after: map[string]string{"fact_sales_order": "12"}},
		{name: "versions loaded already write nothing", batches: []batch{sales(6, 13, 15)},
			after: map[string]string{"fact_sales_order": "12"}},
	}
	for _, s := range steps {
		for _, b := range s.batches {
			put(t, e.bucket, b)
		}
		opts := e.opts()
		if s.opts != nil {
			s.opts(&opts)
		}
		res, err := e.loadWith(context.Background(), opts)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(res.Batches) != len(s.batches) {
			t.Fatalf("%s: loaded %d batches, want %d", s.name, len(res.Batches), len(s.batches))
		}
		if !slices.Equal(res.Vacuumed, s.want) {
			t.Errorf("%s: vacuumed %v, want %v", s.name, res.Vacuumed, s.want)
		}
		for table, want := range s.after {
			if got := e.estimate(t, table); got != want {
				t.Errorf("%s: %s estimated at %s rows, want %s", s.name, table, got, want)
			}
		}
		for _, table := range s.want {
			// Index-only scans read no heap page of a table vacuumed once
			// its rows' commits were on disk.
			if got := joined(query(t, e.url, "SELECT (relallvisible = relpages AND relpages > 0)::text FROM pg_catalog.pg_class WHERE oid = $1::regclass",
				table)); got != "true" {
				t.Errorf("%s: %s is not all visible after its vacuum", s.name, table)
			}
		}
	}
}

func TestLoadVacuumStopsWithItsContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	e.load(t)
	w, err := Open(context.Background(), e.url, e.schema, with(e.set))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	l := &loader{conn: w.conn, s: w.s, set: w.set, bucket: e.bucket, log: quiet}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.vacuumGrown(ctx, []BatchResult{{Rows: map[string]int64{"dim_staff": 2}}}); err == nil {
		t.Fatal("a vacuum with its context cancelled went on")
	}
}
