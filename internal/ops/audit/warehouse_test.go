package audit

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// installPipeline is an empty source, warehouse and two file buckets.
func installPipeline(t *testing.T) (config.Config, *pipeline.Pipeline) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Config{
		SourceURL:       pgtest.NewDatabase(t),
		WarehouseURL:    pgtest.NewDatabase(t),
		IngestBucket:    filepath.Join(dir, "ingested"),
		ProcessedBucket: filepath.Join(dir, "processed"),
		WarehouseSchema: "public",
		Lookback:        lookback,
	}
	p, err := pipeline.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return cfg, p
}

// runStages runs the named stages, or the whole cycle when none is named.
func runStages(t *testing.T, p *pipeline.Pipeline, names ...string) {
	t.Helper()
	if len(names) == 0 {
		if _, err := (&pipeline.Runner{Stages: p.Stages(), Logger: p.Logger}).Cycle(context.Background()); err != nil {
			t.Fatalf("cycle: %v", err)
		}
		return
	}
	for _, name := range names {
		st, err := p.Stage(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Run(context.Background(), pipeline.Run{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// smallPipeline is a small totesys moved into the warehouse by two cycles:
// the second changes an order (a second version) and renames a design (a
// later value). Address 1 has no second line or district, address 2 both.
func smallPipeline(t *testing.T) (config.Config, *pipeline.Pipeline) {
	t.Helper()
	cfg, p := installPipeline(t)
	pgtest.Exec(t, cfg.SourceURL, totesys.Schema)
	pgtest.Exec(t, cfg.SourceURL, pgtest.ReferenceRows)
	pgtest.Exec(t, cfg.SourceURL, `
	INSERT INTO address VALUES (2,'2 B St','Flat 2','West','York','YO1','UK','01904', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO sales_order SELECT g, now() - interval '1 hour', now() - interval '1 hour',1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1 FROM generate_series(1, 50) g;
	INSERT INTO purchase_order VALUES (1, now() - interval '1 hour', now() - interval '1 hour',1,1,'ABC',5,12.50,1,'2024-01-04','2024-01-05',2);
	INSERT INTO transaction VALUES (1,'SALE',1,NULL, now() - interval '1 hour', now() - interval '1 hour');
	INSERT INTO transaction VALUES (2,'PURCHASE',NULL,1, now() - interval '1 hour', now() - interval '1 hour');
	INSERT INTO payment VALUES (1, now() - interval '1 hour', now() - interval '1 hour',1,1,394.00,1,1,false,'2024-01-03',1,2);`)
	runStages(t, p)
	pgtest.Exec(t, cfg.SourceURL, `
	UPDATE sales_order SET units_sold = 7, last_updated = LOCALTIMESTAMP WHERE sales_order_id = 9;
	UPDATE design SET design_name = 'Oak', last_updated = LOCALTIMESTAMP WHERE design_id = 1`)
	runStages(t, p)
	return cfg, p
}

// smallCounts are the versions and ids smallPipeline's warehouse holds.
var smallCounts = map[string]int64{
	"dim_staff": 1, "dim_location": 2, "dim_currency": 1, "dim_design": 1, "dim_counterparty": 1,
	"dim_payment_type": 1, "dim_transaction": 2,
	"fact_sales_order": 51, "fact_purchase_order": 1, "fact_payment": 1,
}

func checkWarehouse(t *testing.T, cfg config.Config, p *pipeline.Pipeline) map[string]*WarehouseTable {
	t.Helper()
	return checkInPasses(t, cfg, p, passSizes{})
}

// checkInPasses checks the warehouse in passes of sizes.
func checkInPasses(t *testing.T, cfg config.Config, p *pipeline.Pipeline, sizes passSizes) map[string]*WarehouseTable {
	t.Helper()
	got, err := checkWarehousePasses(context.Background(), p.Processed, cfg.WarehouseURL, cfg.WarehouseSchema, sizes)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Collect(func(yield func(string) bool) {
		for _, st := range star.Tables {
			if st.Name != "dim_date" && !yield(st.Name) {
				return
			}
		}
	})
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, slices.Sorted(slices.Values(want))) {
		t.Fatalf("checked tables %v, want %v", names, want)
	}
	return got
}

// TestCheckWarehouse: each kind of warehouse drift is found, named by id,
// in its table only; a batch processed and not yet loaded is no drift.
func TestCheckWarehouse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// sql runs in the warehouse; stages, if any, run after it.
		sql    string
		source string
		stages []string
		want   map[string]WarehouseTable // the tables that differ from clean
	}{
		{name: "a clean pipeline"},
		{name: "a fact version deleted", sql: `DELETE FROM fact_sales_order WHERE sales_order_id = 7`,
			want: map[string]WarehouseTable{"fact_sales_order": {Rows: 50, Processed: 51, Missing: 1, Examples: []int32{7}}}},
		{name: "an older version deleted", sql: `DELETE FROM fact_sales_order WHERE sales_record_id =
			(SELECT min(sales_record_id) FROM fact_sales_order WHERE sales_order_id = 9)`,
			want: map[string]WarehouseTable{"fact_sales_order": {Rows: 50, Processed: 51, Missing: 1, Examples: []int32{9}}}},
		{name: "a fact version twice", sql: `
			ALTER TABLE fact_sales_order DROP CONSTRAINT fact_sales_order_version_key;
			CREATE TEMP TABLE copy AS SELECT * FROM fact_sales_order WHERE sales_order_id = 5;
			UPDATE copy SET sales_record_id = nextval(pg_get_serial_sequence('fact_sales_order', 'sales_record_id'));
			INSERT INTO fact_sales_order SELECT * FROM copy;
			UPDATE copy SET sales_record_id = nextval(pg_get_serial_sequence('fact_sales_order', 'sales_record_id'));
			INSERT INTO fact_sales_order SELECT * FROM copy;`,
			want: map[string]WarehouseTable{"fact_sales_order": {Rows: 53, Processed: 51, Duplicated: 1, Examples: []int32{5}}}},
		{name: "a dimension value changed by hand", sql: `UPDATE dim_design SET design_name = 'x'`,
			want: map[string]WarehouseTable{"dim_design": {Rows: 1, Processed: 1, Stale: 1, Examples: []int32{1}}}},
		{name: "a NULL made empty", sql: `UPDATE dim_location SET address_line_2 = '' WHERE location_id = 1`,
			want: map[string]WarehouseTable{"dim_location": {Rows: 2, Processed: 2, Stale: 1, Examples: []int32{1}}}},
		{name: "a text made NULL", sql: `UPDATE dim_location SET district = NULL WHERE location_id = 2`,
			want: map[string]WarehouseTable{"dim_location": {Rows: 2, Processed: 2, Stale: 1, Examples: []int32{2}}}},
		{name: "an int made NULL", sql: `UPDATE dim_transaction SET sales_order_id = NULL WHERE transaction_id = 1`,
			want: map[string]WarehouseTable{"dim_transaction": {Rows: 2, Processed: 2, Stale: 1, Examples: []int32{1}}}},
		{name: "text moved between columns", sql: `UPDATE dim_location SET address_line_1 = '2 B StFlat 2', address_line_2 = '' WHERE location_id = 2`,
			want: map[string]WarehouseTable{"dim_location": {Rows: 2, Processed: 2, Stale: 1, Examples: []int32{2}}}},
		{name: "a dimension row deleted", sql: `DELETE FROM dim_transaction WHERE transaction_id = 2`,
			want: map[string]WarehouseTable{"dim_transaction": {Rows: 1, Processed: 2, Missing: 1, Examples: []int32{2}}}},
		{name: "a batch processed, not yet loaded", source: `
			INSERT INTO sales_order VALUES (60, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1);
			UPDATE design SET design_name = 'Elm', last_updated = LOCALTIMESTAMP WHERE design_id = 1;
			UPDATE address SET address_line_2 = 'Flat 1', last_updated = LOCALTIMESTAMP WHERE address_id = 1`,
			stages: []string{pipeline.Ingest, pipeline.Transform}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, p := smallPipeline(t)
			if tc.sql != "" {
				pgtest.Exec(t, cfg.WarehouseURL, tc.sql)
			}
			if tc.source != "" {
				pgtest.Exec(t, cfg.SourceURL, tc.source)
				runStages(t, p, tc.stages...)
			}
			// In one pass, in passes of two ids (one for facts), and in
			// passes of at most four fact versions.
			for _, size := range []passSizes{{passIDs, factVersions}, {2, factVersions}, {passIDs, 4}} {
				got := checkInPasses(t, cfg, p, size)
				for name, g := range got {
					want, ok := tc.want[name]
					if !ok {
						want = WarehouseTable{Rows: smallCounts[name], Processed: smallCounts[name]}
					}
					if !reflect.DeepEqual(*g, want) {
						t.Errorf("passes of %d ids, %d fact versions: %s:\n got %+v\nwant %+v", size.ids, size.versions, name, *g, want)
					}
				}
			}
		})
	}
}

// TestAuditChecksTheWarehouse: audit.Run reports the warehouse and counts
// its drift, and a repair, with nothing missing from the ingestion bucket,
// lands nothing.
func TestAuditChecksTheWarehouse(t *testing.T) {
	t.Parallel()
	cfg, p := smallPipeline(t)
	run := func(repair bool) Report {
		t.Helper()
		r, err := Run(context.Background(), Options{SourceURL: cfg.SourceURL, Bucket: p.Ingest, Lookback: lookback, Repair: repair,
			Processed: p.Processed, WarehouseURL: cfg.WarehouseURL, WarehouseSchema: cfg.WarehouseSchema})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(false); r.Drift || len(r.Warehouse) != len(smallCounts) || r.Warehouse["fact_sales_order"].Processed != 51 {
		t.Fatalf("a clean pipeline: drift %v, warehouse %v", r.Drift, r.Warehouse)
	}
	pgtest.Exec(t, cfg.WarehouseURL, `UPDATE dim_design SET file_name = 'y' WHERE design_id = 1`)
	r := run(true)
	if d := r.Warehouse["dim_design"]; !r.Drift || d.Stale != 1 || !slices.Equal(d.Examples, []int32{1}) {
		t.Fatalf("a stale design: drift %v, dim_design %+v", r.Drift, *d)
	}
	if r.Repaired != nil {
		t.Errorf("a repair of warehouse drift landed %+v", r.Repaired)
	}
	if so := r.Tables["sales_order"]; so.Missing != 0 || so.Deleted != 0 {
		t.Errorf("sales_order: %+v", *so)
	}
	// Without a warehouse to check, no warehouse report.
	r2, err := Run(context.Background(), Options{SourceURL: cfg.SourceURL, Bucket: p.Ingest, Lookback: lookback})
	if err != nil || r2.Warehouse != nil || r2.Drift {
		t.Errorf("no warehouse: %v, %v, drift %v", err, r2.Warehouse, r2.Drift)
	}
}

// TestNoFalseWarehouseDriftWhileThePipelineRuns: checks taken while a
// writer adds orders and renames a design, and the pipeline moves them
// into the warehouse, find no drift.
func TestNoFalseWarehouseDriftWhileThePipelineRuns(t *testing.T) {
	t.Parallel()
	cfg, p := smallPipeline(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := &pipeline.Runner{Stages: p.Stages(), Logger: p.Logger}
		for id := 100; ctx.Err() == nil && id < 300; id++ {
			pgtest.Exec(t, cfg.SourceURL, `INSERT INTO sales_order VALUES ($1, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`, id)
			pgtest.Exec(t, cfg.SourceURL, `UPDATE design SET design_name = $1, last_updated = LOCALTIMESTAMP WHERE design_id = 1`, fmt.Sprint("D", id))
			if id%3 == 0 {
				if _, err := r.Cycle(ctx); err != nil && ctx.Err() == nil {
					t.Error(err)
				}
			}
		}
	}()
	loaded := func() int64 {
		w, err := warehouse.Open(context.Background(), cfg.WarehouseURL, cfg.WarehouseSchema)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = w.Close(context.Background()) }()
		n, err := w.LoadedSeq(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Check until three batches have loaded meanwhile.
	before := loaded()
	for i := 0; loaded() < before+3; i++ {
		if i == 1000 {
			t.Fatal("the pipeline loaded no batch during 1000 checks")
		}
		for name, g := range checkWarehouse(t, cfg, p) {
			if g.Missing+g.Duplicated+g.Stale != 0 || g.Rows != g.Processed {
				t.Errorf("check %d during the pipeline: %s %+v", i, name, *g)
			}
		}
	}
	cancel()
	wg.Wait()
}

func TestCannotCheckWarehouse(t *testing.T) {
	t.Parallel()
	cfg, p := smallPipeline(t)
	other, err := lake.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	for name, tc := range map[string]struct {
		bucket *lake.Bucket
		url    string
		kind   errkind.Kind
	}{
		"unreachable":         {p.Processed, "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1", errkind.WarehouseUnreachable},
		"another bucket":      {other, cfg.WarehouseURL, errkind.LedgerMismatch},
		"a bad warehouse url": {p.Processed, "::", errkind.ConfigInvalid},
		"no warehouse url":    {p.Processed, "", errkind.ConfigInvalid},
		"no bucket":           {nil, cfg.WarehouseURL, errkind.ConfigInvalid},
	} {
		_, err := CheckWarehouse(context.Background(), tc.bucket, tc.url, "")
		if k := errkind.Of(err); err == nil || k != tc.kind {
			t.Errorf("%s: kind %s (%v), want %s", name, k, err, tc.kind)
		}
	}
	// An object of the processed bucket damaged: the check refuses it.
	var m lake.Manifest
	if err := p.Processed.ReadManifest(context.Background(), 1, &m); err != nil {
		t.Fatal(err)
	}
	obj, _ := m.Table("fact_sales_order")
	if err := os.WriteFile(filepath.Join(cfg.ProcessedBucket, filepath.FromSlash(obj.Key)), []byte("not parquet"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = CheckWarehouse(context.Background(), p.Processed, cfg.WarehouseURL, cfg.WarehouseSchema)
	if k := errkind.Of(err); k != errkind.ObjectMismatch {
		t.Errorf("a damaged object: kind %s (%v)", k, err)
	}
}

// TestNothingLoadedYet: a warehouse without a ledger has nothing to
// compare, and a processed bucket whose batches wait is no drift.
func TestNothingLoadedYet(t *testing.T) {
	t.Parallel()
	cfg, p := installPipeline(t)
	pgtest.Exec(t, cfg.SourceURL, totesys.Schema)
	pgtest.Exec(t, cfg.SourceURL, `INSERT INTO currency VALUES (1,'GBP', now() - interval '1 day', now() - interval '1 day')`)
	runStages(t, p, pipeline.Ingest, pipeline.Transform)
	for name, g := range checkWarehouse(t, cfg, p) {
		if !reflect.DeepEqual(*g, WarehouseTable{}) {
			t.Errorf("%s: %+v", name, *g)
		}
	}
}

// allForms has a field of every star column type, and of a decimal type
// of another scale, which the test registers.
type allForms struct {
	ID  int32   `parquet:"id" star:"key"`
	N   *int32  `parquet:"n,optional"`
	S   string  `parquet:"s"`
	NS  *string `parquet:"ns,optional"`
	B   bool    `parquet:"b"`
	M   int64   `parquet:"m,decimal(2:10)"`
	D   int32   `parquet:"d,date"`
	T   int32   `parquet:"t,time(millisecond)"`
	M4  int64   `parquet:"m4,decimal(4:12)"`
	NSE *string `parquet:"nse,optional"`
}

// TestTextFormsAgree: every value of every star type (and of a decimal
// of another scale, registered here) hashes the same from the
// Parquet's value as from the warehouse column it is loaded into (as load
// converts it), with a table created as migration 1 would create it; a
// NULL differs from an empty text.
func TestTextFormsAgree(t *testing.T) {
	t.Parallel()
	types := append(star.Registry{star.Decimal(4, 12)}, star.Types...)
	st, err := types.Derive(star.Table{Name: "forms", Dimension: true, Row: reflect.TypeFor[allForms]()})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := describe(st)
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	num := func(n int32) *int32 { return &n }
	rows := []allForms{
		{ID: 1, S: "", NS: nil, M: 394, D: 0, T: 0, NSE: str("")},
		{ID: 2, N: num(0), S: "plain", NS: str(""), B: true, M: 39400, D: -1, T: 1, M4: 1},
		{ID: 3, N: num(-2147483648), S: "ü€ 😀 it's \"q\" \\ \t\n", NS: str("NULL"), M: -50, D: 19724, T: 86_399_999, M4: -120000},
		{ID: 4, N: num(2147483647), S: " trailing ", M: 0, D: 2_932_896, T: 43_200_123, M4: 123450},
		{ID: 5, S: "x", M: -1, D: -719_162, T: 999, M4: -5},
		{ID: 6, S: "y", M: 9_999_999_999, T: 60_000, M4: 10},
		{ID: 7, S: "z", M: -9_999_999_999, M4: 999_999_999_999},
		{ID: 8, S: "w", M: 10, M4: 100},
		{ID: 9, S: "v", M: 100, M4: 1000},
	}
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, `CREATE TABLE forms (id int PRIMARY KEY, n int, s varchar NOT NULL, ns varchar, b bool NOT NULL,
		m numeric(10,2) NOT NULL, d date NOT NULL, t time NOT NULL, m4 numeric(12,4) NOT NULL, nse text)`)
	for _, r := range rows {
		pgtest.Exec(t, url, `INSERT INTO forms VALUES ($1, $2, $3, $4, $5, $6::int8 * 0.01, DATE '1970-01-01' + $7::int,
			TIME '00:00' + $8::int * INTERVAL '1 millisecond', $9::int8 * 0.0001, $10)`,
			r.ID, r.N, r.S, r.NS, r.B, r.M, r.D, r.T, r.M4, r.NSE)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	got, err := conn.Query(ctx, tbl.selectText("public"), int64(math.MinInt64), int64(math.MaxInt64))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	var h hasher
	i := 0
	for ; got.Next(); i++ {
		vals := got.RawValues()
		r := reflect.ValueOf(rows[i])
		for j, c := range tbl.cols {
			v := r.Field(c.field)
			var want []byte
			if !c.null || !v.IsNil() {
				if c.null {
					v = v.Elem()
				}
				want = c.appendText([]byte{}, v)
			}
			if (want == nil) != (vals[j] == nil) || string(want) != string(vals[j]) {
				t.Errorf("row %d %s: Parquet gives %q (nil %v), the warehouse %q (nil %v)", rows[i].ID, c.name, want, want == nil, vals[j], vals[j] == nil)
			}
		}
		if a, b := tbl.rowHash(&h, r), rawHash(&h, vals); a != b {
			t.Errorf("row %d: hashes %x and %x", rows[i].ID, a, b)
		}
	}
	if err := got.Err(); err != nil || i != len(rows) {
		t.Fatalf("%d rows, %v", i, err)
	}
	if rawHash(&h, [][]byte{nil}) == rawHash(&h, [][]byte{{}}) {
		t.Error("a NULL hashes as an empty text")
	}
	if rawHash(&h, [][]byte{[]byte("ab"), []byte("c")}) == rawHash(&h, [][]byte{[]byte("a"), []byte("bc")}) {
		t.Error("values hash by their concatenation")
	}
}

// TestCheckedTables: CheckWarehouse covers star.Tables but dim_date, with
// their keys.
func TestCheckedTables(t *testing.T) {
	t.Parallel()
	var names []string
	for _, st := range star.Tables {
		if st.Name == "dim_date" {
			continue
		}
		names = append(names, st.Name)
		i := slices.IndexFunc(checked, func(c checkedTable) bool { return c.name == st.Name })
		if i < 0 {
			t.Errorf("%s is not checked", st.Name)
			continue
		}
		c := checked[i]
		var key []string
		for _, k := range c.key {
			key = append(key, c.cols[k].name)
		}
		if c.dimension != st.Dimension || !slices.Equal(key, st.Key) {
			t.Errorf("%s: dimension %v key %v, star has %v %v", st.Name, c.dimension, key, st.Dimension, st.Key)
		}
	}
	if len(checked) != len(names) {
		t.Errorf("%d tables checked, want %d", len(checked), len(names))
	}
}

// TestCheckWarehouseSnapshot: the real snapshot, moved through the
// pipeline, checks clean, and the check's time is logged.
func TestCheckWarehouseSnapshot(t *testing.T) {
	t.Parallel()
	cfg, p := installPipeline(t)
	pgtest.LoadSnapshot(t, cfg.SourceURL)
	runStages(t, p)
	pgtest.Exec(t, cfg.SourceURL, `UPDATE address SET city = 'New Leeds', last_updated = LOCALTIMESTAMP WHERE address_id = 15;
		UPDATE sales_order SET units_sold = units_sold + 1, last_updated = LOCALTIMESTAMP WHERE sales_order_id <= 10`)
	runStages(t, p)
	start := time.Now()
	got := checkWarehouse(t, cfg, p)
	t.Logf("CheckWarehouse of the snapshot: %.2f s", time.Since(start).Seconds())
	var rows int64
	for name, g := range got {
		rows += g.Rows
		if g.Rows != g.Processed || g.Rows == 0 || g.Missing+g.Duplicated+g.Stale != 0 {
			t.Errorf("%s: %+v", name, *g)
		}
	}
	t.Logf("%d warehouse rows", rows)
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, "SELECT count(*) FROM dim_location WHERE address_line_2 IS NULL"); n == 0 {
		t.Error("the snapshot has no NULL address_line_2")
	}
	pgtest.Exec(t, cfg.WarehouseURL, `UPDATE dim_counterparty SET counterparty_legal_city = 'Old Leeds' WHERE counterparty_legal_city = 'New Leeds'`)
	if c := checkWarehouse(t, cfg, p)["dim_counterparty"]; c.Stale == 0 || len(c.Examples) == 0 {
		t.Errorf("a counterparty moved back by hand: %+v", *c)
	}
}

// TestCorrectedFactIsNoDrift: a fact row that a capture batch corrected
// (a version the warehouse held, with new values) is no drift: the check
// compares versions, and the version is there once.
func TestCorrectedFactIsNoDrift(t *testing.T) {
	t.Parallel()
	cfg, p := smallPipeline(t)
	ctx := context.Background()
	var m lake.Manifest
	if err := p.Processed.ReadManifest(ctx, 1, &m); err != nil {
		t.Fatal(err)
	}
	obj, _ := m.Table("fact_sales_order")
	var held star.FactSalesOrder
	if err := lake.ReadParquet(ctx, p.Processed, obj.Key, 1024, func(rows []star.FactSalesOrder) error {
		for _, r := range rows {
			if r.SalesOrderID == 5 {
				held = r
			}
		}
		return nil
	}); err != nil || held.SalesOrderID != 5 {
		t.Fatalf("sales order 5 in processed batch 1: %+v, %v", held, err)
	}
	corrected := held
	corrected.UnitsSold = 99
	seq, err := p.Processed.LatestSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq++
	key := lake.DataKey("fact_sales_order", time.Now(), seq, "test", "parquet")
	w, err := lake.NewParquetWriter[star.FactSalesOrder](ctx, p.Processed, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]star.FactSalesOrder{corrected}); err != nil {
		t.Fatal(err)
	}
	size, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	cm := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(seq), Sequence: seq, RunID: "test",
		CreatedAt: time.Now().UTC(), Capture: &lake.Capture{Slot: "sandstone", End: 1},
		Tables: []lake.Object{{Table: "fact_sales_order", Key: key, Rows: 1, Bytes: size, SHA256: sum, MaxLen: w.MaxLen()}}}
	if err := p.Processed.PutManifest(ctx, seq, &cm); err != nil {
		t.Fatal(err)
	}
	runStages(t, p, pipeline.Load)
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM sandstone_corrections c
		JOIN fact_sales_order f ON f.sales_record_id = c.record_id WHERE f.sales_order_id = 5 AND f.units_sold = 99`); n != 1 {
		t.Fatalf("%d corrections of sales order 5 loaded, want 1", n)
	}
	for name, g := range checkWarehouse(t, cfg, p) {
		if want := (WarehouseTable{Rows: smallCounts[name], Processed: smallCounts[name]}); !reflect.DeepEqual(*g, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, *g, want)
		}
	}
}
