package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// BoundedSchema is the warehouse schema the bounded initial load fills.
const BoundedSchema = "bounded"

// Bounded is what the initial load in bounded batches measured: the same
// source, through buckets and a warehouse schema of its own, with ingest
// run as a child again and again until it lands nothing, as a scheduler
// would run it, then transform and load once each.
type Bounded struct {
	// Batches is the number of batches ingest landed.
	Batches int
	// Seconds and PeakRSSMB are per stage: the sum of its runs, and the
	// largest.
	Seconds   map[string]float64
	PeakRSSMB map[string]float64
	// Longest is per stage its longest batch, which bounds a Lambda
	// invocation of it: for ingest and transform the longest time between
	// two of their manifests, for load its ledger's seconds.
	Longest map[string]float64
	// Equal is set when the warehouse is the one the unbounded initial
	// load made, table by table, but for the facts' serial ids.
	Equal bool
	// Differs names the tables that are not.
	Differs []string
}

// boundedRun is the bounded load's plan.
type boundedRun struct {
	c         children
	dir       string
	bound     int64
	warehouse string // the warehouse's URL
	source    int64  // the source's rows, which bound the runs of ingest
}

// run runs the bounded initial load and compares its warehouse with the
// unbounded one's (schema public).
func (b boundedRun) run(ctx context.Context, say func(string, ...any)) (Bounded, error) {
	res := Bounded{Seconds: map[string]float64{}, PeakRSSMB: map[string]float64{}, Longest: map[string]float64{}}
	in := "file://" + filepath.Join(b.dir, "bounded-ingested")
	out := "file://" + filepath.Join(b.dir, "bounded-processed")
	c := b.c.with(config.EnvIngestBucket+"="+in, config.EnvProcessedBucket+"="+out,
		config.EnvWarehouseSchema+"="+BoundedSchema, config.EnvMaxBatchRows+"="+strconv.FormatInt(b.bound, 10))
	record := func(r StageRun) {
		res.Seconds[r.Stage] += r.Duration.Seconds()
		res.PeakRSSMB[r.Stage] = max(res.PeakRSSMB[r.Stage], float64(r.PeakRSS)/(1<<20))
	}
	// Ingest until a run lands nothing.
	var landed int64
	started := time.Now()
	for i := 1; ; i++ {
		if int64(i) > b.source/b.bound+3 {
			return res, fmt.Errorf("bench: bounded ingest: still landing after %d runs", i-1)
		}
		r, err := c.stage(ctx, fmt.Sprintf("bounded%d", i), "ingest")
		if err != nil {
			return res, err
		}
		record(r)
		seq, err := latestSeq(ctx, in)
		if err != nil {
			return res, err
		}
		if seq == landed {
			break
		}
		landed = seq
	}
	res.Batches = int(landed)
	var err error
	if res.Longest["ingest"], err = b.longestBatch(ctx, "ingest", in, started); err != nil {
		return res, err
	}
	say("  ingest    %7.2fs  peak RSS %6.1f MB: %d batches, the longest %.2fs",
		res.Seconds["ingest"], res.PeakRSSMB["ingest"], res.Batches, res.Longest["ingest"])
	for _, s := range Stages[1:] {
		started := time.Now()
		r, err := c.stage(ctx, "bounded", s)
		if err != nil {
			return res, err
		}
		record(r)
		if res.Longest[s], err = b.longestBatch(ctx, s, out, started); err != nil {
			return res, err
		}
		say("  %-9s %7.2fs  peak RSS %6.1f MB: the longest batch %.2fs", s, r.Duration.Seconds(), float64(r.PeakRSS)/(1<<20), res.Longest[s])
	}
	differs, err := compareSchemas(ctx, b.warehouse, "public", BoundedSchema)
	if err != nil {
		return res, err
	}
	res.Differs, res.Equal = differs, len(differs) == 0
	return res, b.clear(ctx)
}

// clear drops the bounded schema and checkpoints, so that the phases after
// it find the warehouse server as they would without it (no autovacuum of
// its tables, no dirty buffers of its own).
func (b boundedRun) clear(ctx context.Context) error {
	err := withConn(ctx, b.warehouse, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{BoundedSchema}.Sanitize()+" CASCADE"); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "CHECKPOINT")
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: drop the bounded load's schema: %w", err)
	}
	return nil
}

// longestBatch is the longest batch of ingest or transform (the longest
// time between two manifests of bucket, the first counted from started) or
// of load (from its ledger).
func (b boundedRun) longestBatch(ctx context.Context, stage, bucketURL string, started time.Time) (float64, error) {
	if stage == "load" {
		var s float64
		err := withWarehouse(ctx, b.warehouse, BoundedSchema, func(wh *warehouse.Warehouse) (err error) {
			s, err = wh.LongestLoad(ctx)
			return err
		})
		return s, err
	}
	bucket, err := lake.Open(ctx, bucketURL)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer func() { _ = bucket.Close() }()
	seqs, err := bucket.SeqsAfter(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	var longest float64
	prev := started
	for _, seq := range seqs {
		var m lake.Manifest
		if err := bucket.ReadManifest(ctx, seq, &m); err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
		longest = max(longest, m.CreatedAt.Sub(prev).Seconds())
		prev = m.CreatedAt
	}
	return longest, nil
}

// latestSeq is the newest batch of the bucket at url.
func latestSeq(ctx context.Context, url string) (int64, error) {
	b, err := lake.Open(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer func() { _ = b.Close() }()
	seq, err := b.LatestSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return seq, nil
}

// compareSchemas compares every dim_ and fact_ table of schema a with its
// namesake in b, by row count and an order-free sum of row hashes over
// every column but the facts' serial ids, and names those that differ.
func compareSchemas(ctx context.Context, url, a, b string) ([]string, error) {
	var differs []string
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT c.table_name::text, string_agg(quote_ident(c.column_name), ', ' ORDER BY c.ordinal_position)
			FROM information_schema.columns c WHERE c.table_schema = $1 AND c.table_name LIKE ANY ('{dim\_%,fact\_%}')
			AND coalesce(c.column_default, '') NOT LIKE 'nextval%' GROUP BY 1 ORDER BY 1`, a)
		if err != nil {
			return err
		}
		var table, cols string
		tables := map[string]string{}
		if _, err := pgx.ForEachRow(rows, []any{&table, &cols}, func() error {
			tables[table] = cols
			return nil
		}); err != nil {
			return err
		}
		for table, cols := range tables {
			sum := func(schema string) (string, error) {
				var s string
				err := conn.QueryRow(ctx, "SELECT count(*) || ':' || coalesce(sum(hashtext(row("+cols+")::text)::int8), 0) FROM "+
					pgx.Identifier{schema, table}.Sanitize()).Scan(&s)
				return s, err
			}
			x, err := sum(a)
			if err != nil {
				return err
			}
			y, err := sum(b)
			if err != nil {
				return err
			}
			if x != y {
				differs = append(differs, table)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: compare the warehouses: %w", err)
	}
	return differs, nil
}

// withConn runs fn on a connection to url.
func withConn(ctx context.Context, url string, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return fn(conn)
}

// withWarehouse runs fn on the warehouse at url in schema, opened for it.
func withWarehouse(ctx context.Context, url, schema string, fn func(*warehouse.Warehouse) error) error {
	wh, err := warehouse.Open(ctx, url, schema)
	if err != nil {
		return err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	return fn(wh)
}

// with returns c with the environment variables kvs ("NAME=value") set,
// replacing any of the same name.
func (c children) with(kvs ...string) children {
	env := make([]string, 0, len(c.env)+len(kvs))
	for _, kv := range c.env {
		name, _, _ := strings.Cut(kv, "=")
		replaced := false
		for _, n := range kvs {
			if strings.HasPrefix(n, name+"=") {
				replaced = true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	c.env = append(env, kvs...)
	return c
}
