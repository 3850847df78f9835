package warehouse

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
	"github.com/sandstone-data/sandstone/internal/stage/transform"
)

// pipelineInto runs ingest (in batches of at most bound rows, 0 for one
// batch), transform and load (loadOnce) from source into warehouse schema,
// on buckets of its own, and returns the batches landed. load may stop
// early, at a deadline: loadOnce is then called again until nothing is
// pending.
func pipelineInto(t *testing.T, source, schema string, bound int64, loadOnce func(schema string, opts Options) Result) int {
	t.Helper()
	ctx := context.Background()
	open := func() *lake.Bucket {
		b, err := lake.Open(ctx, "file://"+t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	in, out := open(), open()
	batches := 0
	for more := true; more; {
		res, err := ingest.Run(ctx, ingest.Options{SourceURL: source, Bucket: in, Lookback: 5 * time.Minute,
			Logger: quiet, MaxBatchRows: bound})
		if err != nil {
			t.Fatalf("ingest: %v", err)
		}
		if bound > 0 && res.Total() > bound {
			t.Fatalf("ingest batch %d holds %d rows, more than %d", res.Sequence, res.Total(), bound)
		}
		if res.Sequence != 0 {
			batches++
		}
		more = res.More
	}
	if _, err := transform.Run(ctx, transform.Options{Ingest: in, Processed: out, Logger: quiet}); err != nil {
		t.Fatalf("transform: %v", err)
	}
	opts := Options{Processed: out, Logger: quiet}
	for res := loadOnce(schema, opts); res.Pending > 0; res = loadOnce(schema, opts) {
	}
	return batches
}

// schemaRows is every row of every table of schema, as text and sorted,
// without the facts' serial ids (which the order of the batches decides).
func schemaRows(t *testing.T, url, schema string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range query(t, url, `SELECT c.table_name::text, string_agg(quote_ident(c.column_name), ', ' ORDER BY c.ordinal_position)
		FROM information_schema.columns c WHERE c.table_schema = $1 AND c.table_name LIKE ANY ('{dim\_%,fact\_%}')
		AND coalesce(c.column_default, '') NOT LIKE 'nextval%' GROUP BY 1`, schema) {
		out[r[0]] = joined(query(t, url, "SELECT row("+r[1]+")::text AS r FROM "+schemaOf(schema).ident(r[0])+" ORDER BY r"))
	}
	return out
}

func TestBoundedInitialLoadMakesTheSameWarehouse(t *testing.T) {
	t.Parallel()
	source := pgtest.NewDatabase(t)
	pgtest.LoadSnapshot(t, source)
	url := pgtest.NewDatabase(t)
	loadAll := func(set settings, schema string, opts Options) Result {
		res, err := loadInto(context.Background(), url, schema, set, opts)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		return res
	}
	unbounded := func(schema string, opts Options) Result { return loadAll(defaultSettings(), schema, opts) }
	if n := pipelineInto(t, source, "whole", 0, unbounded); n != 1 {
		t.Fatalf("the unbounded ingest landed %d batches", n)
	}
	// Bounded: batches of 6,000 rows, and a load that stops at its
	// deadline after every batch (each batch "takes" an hour).
	loads := 0
	oneAtATime := func(schema string, opts Options) Result {
		loads++
		start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		calls := 0
		set := defaultSettings()
		set.now = func() time.Time {
			calls++
			return start.Add(time.Duration(calls-1) * time.Hour)
		}
		opts.Deadline = start.Add(time.Minute)
		res := loadAll(set, schema, opts)
		if len(res.Batches) > 1 {
			t.Fatalf("a load past its deadline took %d batches", len(res.Batches))
		}
		return res
	}
	batches := pipelineInto(t, source, "bounded", 6000, oneAtATime)
	if batches < 8 || loads < batches {
		t.Fatalf("%d bounded batches in %d loads: want 8 or more (48k rows), one a load", batches, loads)
	}
	whole, bounded := schemaRows(t, url, "whole"), schemaRows(t, url, "bounded")
	if len(whole) != 11 {
		t.Fatalf("%d tables in the unbounded warehouse", len(whole))
	}
	for table, want := range whole {
		if got := bounded[table]; got != want {
			t.Errorf("%s differs: %d rows bounded, %d unbounded", table, strings.Count(got, "\n"), strings.Count(want, "\n"))
		}
	}
	if got := joined(query(t, url, "SELECT count(*)::text FROM bounded.fact_payment")); got == "0" {
		t.Error("no payments loaded")
	}
}
