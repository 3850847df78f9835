package audit

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const lookback = 5 * time.Minute

// source is a totesys database with a little of everything, landed once.
func source(t *testing.T) (string, *lake.Bucket) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, totesys.Schema)
	pgtest.Exec(t, url, pgtest.ReferenceRows)
	pgtest.Exec(t, url, `
	INSERT INTO sales_order SELECT g, now() - interval '1 hour', now() - interval '1 hour',1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1 FROM generate_series(1, 50) g;
	INSERT INTO transaction VALUES (1,'SALE',1,NULL, now() - interval '1 hour', now() - interval '1 hour');
	INSERT INTO payment VALUES (1, now() - interval '1 hour', now() - interval '1 hour',1,1,394.00,1,1,false,'2024-01-03',1,2);`)
	b, err := lake.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ingestOnce(t, url, b)
	return url, b
}

func ingestOnce(t testing.TB, url string, b *lake.Bucket) {
	t.Helper()
	if _, err := ingest.Run(context.Background(), ingest.Options{SourceURL: url, Bucket: b, Lookback: lookback}); err != nil {
		t.Fatal(err)
	}
}

func audit(t *testing.T, url string, b *lake.Bucket) Report {
	t.Helper()
	return auditPasses(t, url, b, passSizes{})
}

// auditPasses audits in passes of sizes.
func auditPasses(t *testing.T, url string, b *lake.Bucket, sizes passSizes) Report {
	t.Helper()
	r, err := Run(context.Background(), Options{SourceURL: url, Bucket: b, Lookback: lookback, sizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tables) != len(totesys.Tables) {
		t.Fatalf("audit reports %d tables, want %d", len(r.Tables), len(totesys.Tables))
	}
	return r
}

// findingCase is one kind of drift, or none, and what an audit finds of it.
type findingCase struct {
	name string
	// landed runs, and is ingested, before sql.
	landed, sql string
	table       string
	want        TableReport
}

// findingCases are the drift a timestamp cannot see, one case each.
func findingCases() []findingCase {
	return []findingCase{
		{"a clean pipeline", "", "", "sales_order", TableReport{SourceRows: 50, Landed: 50}},
		{"a row backfilled a day back", "", `INSERT INTO sales_order VALUES (51, LOCALTIMESTAMP - interval '1 day', LOCALTIMESTAMP - interval '1 day',1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`,
			"sales_order", TableReport{SourceRows: 51, Landed: 50, Missing: 1, MissingExamples: []int32{51}}},
		{"a design committed later than the lookback",
			`INSERT INTO design VALUES (3, LOCALTIMESTAMP, 'Now', '/n', 'n', LOCALTIMESTAMP)`,
			`INSERT INTO design VALUES (2, LOCALTIMESTAMP - interval '20 minutes', 'Late', '/l', 'l', LOCALTIMESTAMP - interval '20 minutes')`,
			"design", TableReport{SourceRows: 3, Landed: 2, Missing: 1, MissingExamples: []int32{2}}},
		{"an update stamped back", "", `UPDATE sales_order SET units_sold = 7, last_updated = last_updated - interval '1 hour' WHERE sales_order_id = 9`,
			"sales_order", TableReport{SourceRows: 50, Landed: 50, Missing: 1, MissingExamples: []int32{9}}},
		{"a deleted row", "", `DELETE FROM sales_order WHERE sales_order_id IN (3, 4)`,
			"sales_order", TableReport{SourceRows: 48, Landed: 50, Deleted: 2, DeletedExamples: []int32{3, 4}}},
		{"a new row the next ingest lands", "", `INSERT INTO sales_order VALUES (51, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`,
			"sales_order", TableReport{SourceRows: 51, Landed: 50, Pending: 1}},
		{"an update that keeps last_updated (out of reach)", "", `UPDATE sales_order SET units_sold = 8 WHERE sales_order_id = 10`,
			"sales_order", TableReport{SourceRows: 50, Landed: 50}},
	}
}

// TestFindings: each kind of drift a timestamp cannot see is found, named
// by id, in its table only; what the next ingest will land is pending.
func TestFindings(t *testing.T) {
	t.Parallel()
	for _, tc := range findingCases() {
		t.Run(tc.name, func(t *testing.T) {
			url, b := source(t)
			if tc.landed != "" {
				pgtest.Exec(t, url, tc.landed)
				ingestOnce(t, url, b)
			}
			if tc.sql != "" {
				pgtest.Exec(t, url, tc.sql)
			}
			tc.check(t, audit(t, url, b))
		})
	}
}

// check compares what an audit found with what tc wants.
func (tc findingCase) check(t *testing.T, r Report) {
	t.Helper()
	got := *r.Tables[tc.table]
	if got.SourceRows != tc.want.SourceRows || got.Landed != tc.want.Landed || got.Missing != tc.want.Missing ||
		got.Pending != tc.want.Pending || got.Deleted != tc.want.Deleted ||
		!slices.Equal(got.MissingExamples, tc.want.MissingExamples) || !slices.Equal(got.DeletedExamples, tc.want.DeletedExamples) {
		t.Errorf("%s:\n got %+v\nwant %+v", tc.table, got, tc.want)
	}
	drift := tc.want.Missing > 0 || tc.want.Deleted > 0
	if r.Drift != drift {
		t.Errorf("drift %v, want %v", r.Drift, drift)
	}
	for name, tr := range r.Tables {
		if name != tc.table && (tr.Missing != 0 || tr.Deleted != 0 || tr.Pending != 0) {
			t.Errorf("%s, untouched, reports %+v", name, *tr)
		}
	}
}

// TestPassesAgree: an audit in passes of a few ids finds what one pass
// finds, and every id of each finding.
func TestPassesAgree(t *testing.T) {
	t.Parallel()
	url, b := source(t)
	pgtest.Exec(t, url, `DELETE FROM sales_order WHERE sales_order_id IN (3, 17, 50);
		INSERT INTO sales_order VALUES (-4, '2023-01-01', '2023-01-01',1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1);
		INSERT INTO sales_order VALUES (333, '2023-01-01', '2023-01-01',1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1);
		UPDATE sales_order SET last_updated = last_updated - interval '2 hours' WHERE sales_order_id IN (8, 9, 40)`)
	whole := audit(t, url, b).Tables["sales_order"]
	parts := auditPasses(t, url, b, passSizes{ids: 7}).Tables["sales_order"]
	if whole.Missing != parts.Missing || whole.Deleted != parts.Deleted || whole.SourceRows != parts.SourceRows ||
		whole.Landed != parts.Landed || !slices.Equal(slices.Sorted(slices.Values(whole.MissingExamples)), slices.Sorted(slices.Values(parts.MissingExamples))) {
		t.Errorf("one pass %+v, passes of 7 ids %+v", *whole, *parts)
	}
	if parts.Missing != 5 || parts.Deleted != 3 || parts.SourceRows != 49 || parts.Landed != 50 ||
		!slices.Equal(parts.DeletedExamples, []int32{3, 17, 50}) {
		t.Errorf("passes of 7 ids: %+v", *parts)
	}
}

// TestNoFalseDriftWhileThePipelineRuns: audits taken while a writer adds
// orders and ingest lands them find nothing missing.
func TestNoFalseDriftWhileThePipelineRuns(t *testing.T) {
	t.Parallel()
	url, b := source(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := 100; ctx.Err() == nil && id < 400; id++ {
			pgtest.Exec(t, url, `INSERT INTO sales_order VALUES ($1, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`, id)
			if id%5 == 0 {
				if _, err := ingest.Run(ctx, ingest.Options{SourceURL: url, Bucket: b, Lookback: lookback}); err != nil && ctx.Err() == nil {
					t.Error(err)
				}
			}
		}
	}()
	for i := 0; i < 5; i++ {
		r := audit(t, url, b)
		if so := r.Tables["sales_order"]; r.Drift || so.Missing != 0 {
			t.Errorf("audit %d during the pipeline: %+v", i, *so)
		}
	}
	cancel()
	wg.Wait()
}

func TestCannotAudit(t *testing.T) {
	t.Parallel()
	url, b := source(t)
	for name, o := range map[string]Options{
		"no source":   {Bucket: b},
		"no bucket":   {SourceURL: url},
		"unreachable": {SourceURL: "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1", Bucket: b},
	} {
		_, err := Run(context.Background(), o)
		if err == nil {
			t.Errorf("%s: audited", name)
			continue
		}
		if k := errkind.Of(err); k != errkind.ConfigInvalid && k != errkind.SourceUnreachable {
			t.Errorf("%s: kind %s (%v)", name, k, err)
		}
	}
}
