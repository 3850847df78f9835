package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is a source database and an ingestion bucket.
type fixture struct {
	t      *testing.T
	url    string
	dir    string
	bucket *lake.Bucket
	logs   *lambdatest.SyncBuffer
	// scanAdvice is Options.ScanAdviceRows.
	scanAdvice int64
	// capture is Options.Capture.
	capture string
	// quiet is Options.quietBytes.
	quiet int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, url: pgtest.NewDatabase(t), dir: t.TempDir(), logs: &lambdatest.SyncBuffer{}}
	f.bucket = f.open()
	return f
}

// open opens the bucket afresh, as a new process would.
func (f *fixture) open() *lake.Bucket {
	b, err := lake.Open(context.Background(), "file://"+f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = b.Close() })
	return b
}

func (f *fixture) opts() Options {
	return Options{SourceURL: f.url, Bucket: f.bucket, Lookback: 5 * time.Minute,
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), ScanAdviceRows: f.scanAdvice, Capture: f.capture, quietBytes: f.quiet}
}

// run runs ingest; as sandstone run does, it tries again while the slot
// is busy: the WAL sender of the run before may not have let it go yet.
func (f *fixture) run() Result {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := Run(context.Background(), f.opts())
		if errkind.Of(err) == errkind.CaptureSlotBusy && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			f.t.Fatalf("ingest: %v", err)
		}
		return res
	}
}

func (f *fixture) exec(sql string, args ...any) { f.t.Helper(); pgtest.Exec(f.t, f.url, sql, args...) }

// rows reads back the versions batch seq landed for a table.
func rows[T any](t *testing.T, b *lake.Bucket, seq int64, table string) []T {
	t.Helper()
	var m lake.Manifest
	if err := b.ReadManifest(context.Background(), seq, &m); err != nil {
		t.Fatal(err)
	}
	obj, ok := m.Table(table)
	if !ok {
		return nil
	}
	var out []T
	if err := lake.ReadParquet(context.Background(), b, obj.Key, 1000, func(rs []T) error {
		out = append(out, rs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if int64(len(out)) != obj.Rows {
		t.Fatalf("%s: manifest says %d rows, object holds %d", table, obj.Rows, len(out))
	}
	return out
}

// smallSource creates the totesys schema with a little reference data and
// one sales order, transaction and payment.
func smallSource(f *fixture) {
	f.exec(totesys.Schema)
	f.exec(pgtest.ReferenceRows)
	f.exec(`
	INSERT INTO sales_order VALUES (1, now() - interval '1 hour', now() - interval '1 hour',1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1);
	INSERT INTO transaction VALUES (1,'SALE',1,NULL, now() - interval '1 hour', now() - interval '1 hour');
	INSERT INTO payment VALUES (1, now() - interval '1 hour', now() - interval '1 hour',1,1,394.00,1,1,false,'2024-01-03',1,2);`)
}

func TestSnapshotLandsWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pgtest.LoadSnapshot(t, f.url)
	res := f.run()
	if res.Sequence != 1 {
		t.Fatalf("first batch is %d, want 1", res.Sequence)
	}
	for _, tbl := range totesys.Tables {
		want := pgtest.QueryInt(t, f.url, "SELECT count(*) FROM "+pgx.Identifier{tbl.Name}.Sanitize())
		if res.Rows[tbl.Name] != want {
			t.Errorf("%s: landed %d rows, source has %d", tbl.Name, res.Rows[tbl.Name], want)
		}
	}
	// Values are lossless: sales order 2 as in the snapshot.
	var so totesys.SalesOrder
	for _, r := range rows[totesys.SalesOrder](t, f.bucket, 1, "sales_order") {
		if r.SalesOrderID == 2 {
			so = r
		}
	}
	want := totesys.SalesOrder{SalesOrderID: 2, CreatedAt: time.Date(2022, 11, 3, 14, 20, 52, 186e6, time.UTC),
		LastUpdated: time.Date(2022, 11, 3, 14, 20, 52, 186e6, time.UTC), DesignID: 3, StaffID: 19, CounterpartyID: 8,
		UnitsSold: 42972, UnitPrice: 394, CurrencyID: 2, AgreedDeliveryDate: "2022-11-07", AgreedPaymentDate: "2022-11-08",
		AgreedDeliveryLocationID: 8}
	if so != want {
		t.Errorf("sales order 2:\n got %+v\nwant %+v", so, want)
	}
	var m lake.Manifest
	if err := f.bucket.ReadManifest(context.Background(), 1, &m); err != nil {
		t.Fatal(err)
	}
	obj, _ := m.Table("payment")
	if obj.Watermark == nil || obj.Watermark.From.After(obj.Watermark.To) || len(obj.Columns) != 12 || len(obj.SHA256) != 64 {
		t.Errorf("payment manifest entry incomplete: %+v", obj)
	}
	if !strings.HasPrefix(obj.Key, "payment/") {
		t.Errorf("payment key %s not grouped by table", obj.Key)
	}
	if res2 := f.run(); res2.Sequence != 0 || res2.Total() != 0 {
		t.Fatalf("second run over an unchanged source wrote batch %d with %d rows", res2.Sequence, res2.Total())
	}
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 1 {
		t.Fatalf("latest batch %d after a run with no change, want 1", n)
	}
}

func TestInsertsAndUpdatesLandOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	if res := f.run(); res.Total() != 10 {
		t.Fatalf("initial batch: %d rows, want 10", res.Total())
	}
	f.exec(`UPDATE payment SET paid = true, last_updated = LOCALTIMESTAMP WHERE payment_id = 1`)
	f.exec(`INSERT INTO sales_order VALUES (2, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`)
	res := f.run()
	if res.Sequence != 2 || res.Rows["payment"] != 1 || res.Rows["sales_order"] != 1 || res.Total() != 2 {
		t.Fatalf("second batch: %+v", res)
	}
	p := rows[totesys.Payment](t, f.bucket, 2, "payment")
	if !p[0].Paid || p[0].PaymentAmount != 39400 {
		t.Errorf("updated payment landed as %+v", p[0])
	}
	for i := 0; i < 2; i++ {
		if res := f.run(); res.Total() != 0 {
			t.Fatalf("rerun %d landed %v again", i, res.Rows)
		}
	}
}

func TestTieOnLastUpdated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.exec(`INSERT INTO design VALUES (2, '2026-01-01 10:00:00.123', 'A', '/a', 'a', LOCALTIMESTAMP - interval '1 minute')`)
	f.run()
	// A second row stamped with exactly the same last_updated as one
	// already landed.
	f.exec(`INSERT INTO design SELECT 3, created_at, 'B', '/b', 'b', last_updated FROM design WHERE design_id = 2`)
	res := f.run()
	d := rows[totesys.Design](t, f.bucket, res.Sequence, "design")
	if res.Total() != 1 || len(d) != 1 || d[0].DesignID != 3 {
		t.Fatalf("tie: landed %v", res.Rows)
	}
}

func TestLateCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	// A transaction that stamps its row, then commits only after an
	// ingest has run (and read past the row's timestamp).
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO design VALUES (9, LOCALTIMESTAMP - interval '2 minutes', 'Late', '/l', 'l', LOCALTIMESTAMP - interval '2 minutes')`); err != nil {
		t.Fatal(err)
	}
	f.exec(`INSERT INTO design VALUES (10, LOCALTIMESTAMP, 'Early', '/e', 'e', LOCALTIMESTAMP)`)
	first := f.run()
	if first.Rows["design"] != 2 { // design 1 and 10
		t.Fatalf("before the late commit: %v", first.Rows)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := f.run()
	d := rows[totesys.Design](t, f.bucket, res.Sequence, "design")
	if res.Total() != 1 || len(d) != 1 || d[0].DesignID != 9 {
		t.Fatalf("late commit: landed %v", res.Rows)
	}
	if res := f.run(); res.Total() != 0 {
		t.Fatalf("late row landed twice: %v", res.Rows)
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pgtest.LoadSnapshot(t, f.url)
	var wg sync.WaitGroup
	results := make([]Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := f.opts()
			o.Bucket = f.open()
			results[i], errs[i] = Run(context.Background(), o)
		}()
	}
	wg.Wait()
	committed := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if r.Sequence != 0 {
			committed++
		}
	}
	latest, _ := f.bucket.LatestSeq(context.Background())
	if committed != int(latest) {
		t.Fatalf("%d runs committed but latest batch is %d", committed, latest)
	}
	// Every source version is in exactly one batch.
	seen := map[int32]int{}
	for seq := int64(1); seq <= latest; seq++ {
		for _, p := range rows[totesys.Payment](t, f.bucket, seq, "payment") {
			seen[p.PaymentID]++
		}
	}
	if len(seen) != 15836 {
		t.Fatalf("%d payments landed, want 15836", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("payment %d landed %d times", id, n)
		}
	}
}

func TestRestartFromBucketState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.run()
	f.exec(`INSERT INTO currency VALUES (2,'USD', LOCALTIMESTAMP, LOCALTIMESTAMP)`)
	f.bucket = f.open() // a new process: nothing but the bucket
	res := f.run()
	if res.Sequence != 2 || res.Total() != 1 || res.Rows["currency"] != 1 {
		t.Fatalf("after restart: %+v", res)
	}
	seq, st, err := LoadState(context.Background(), f.open())
	if err != nil || seq != 2 || st.SnapshotAt.IsZero() || st.Tables["currency"].Watermark.IsZero() {
		t.Fatalf("state: %d %+v %v", seq, st, err)
	}
}

// TestObjectsAreImmutable fails if any run rewrites or removes an object.
func TestObjectsAreImmutable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	snapshot := func() map[string][32]byte {
		out := map[string][32]byte{}
		_ = filepath.Walk(f.dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				b, _ := os.ReadFile(p)
				out[p] = sha256.Sum256(b)
			}
			return nil
		})
		return out
	}
	before := snapshot()
	for i := 0; i < 4; i++ {
		f.exec(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = LOCALTIMESTAMP`)
		f.run()
		after := snapshot()
		for p, sum := range before {
			if got, ok := after[p]; !ok || got != sum {
				t.Fatalf("run %d rewrote or removed %s", i, p)
			}
		}
		if len(after) <= len(before) {
			t.Fatalf("run %d wrote no new object", i)
		}
		before = after
	}
}

func TestNewColumnIsCarriedAlong(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.exec(`ALTER TABLE currency ADD COLUMN symbol text DEFAULT '£'`)
	f.run()
	var m lake.Manifest
	_ = f.bucket.ReadManifest(context.Background(), 1, &m)
	obj, _ := m.Table("currency")
	if len(obj.Columns) != 5 || obj.Columns[4].Name != "symbol" {
		t.Fatalf("currency columns: %+v", obj.Columns)
	}
	if !strings.Contains(f.logs.String(), `"column":"symbol"`) {
		t.Fatalf("no warning for the new column:\n%s", f.logs)
	}
	if c := rows[totesys.Currency](t, f.bucket, 1, "currency"); c[0].CurrencyCode != "GBP" {
		t.Fatalf("currency read back as %+v", c)
	}
}

func TestFaults(t *testing.T) {
	s3 := s3test.Start(t)
	tests := []struct {
		name    string
		setup   func(f *fixture) Options
		kind    errkind.Kind
		message string
	}{
		{"source unreachable", func(f *fixture) Options {
			o := f.opts()
			o.SourceURL = "postgres://sandstone:s3cret-pw@127.0.0.1:1/x?connect_timeout=2"
			return o
		}, errkind.SourceUnreachable, "connect to source"},
		{"table missing", func(f *fixture) Options {
			smallSource(f)
			f.exec(`DROP TABLE payment`)
			return f.opts()
		}, errkind.SourceSchemaMismatch, "table payment not found"},
		{"column missing", func(f *fixture) Options {
			smallSource(f)
			f.exec(`ALTER TABLE sales_order DROP COLUMN units_sold`)
			return f.opts()
		}, errkind.SourceSchemaMismatch, "column sales_order.units_sold not found"},
		{"column missing, read ahead", func(f *fixture) Options {
			smallSource(f)
			f.run()
			f.exec(`ALTER TABLE payment DROP COLUMN paid`)
			return f.opts()
		}, errkind.SourceSchemaMismatch, "column payment.paid not found"},
		{"bucket not writable", func(f *fixture) Options {
			smallSource(f)
			b, err := lake.Open(context.Background(), s3.URL("no-such-bucket"))
			if err != nil {
				t.Fatal(err)
			}
			o := f.opts()
			o.Bucket = b
			return o
		}, errkind.BucketReadFailed, "no-such-bucket"},
		{"bucket write fails", func(f *fixture) Options {
			smallSource(f)
			// A file where the staff objects' directory must go.
			if err := os.WriteFile(filepath.Join(f.dir, "staff"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return f.opts()
		}, errkind.BucketWriteFailed, "staff"},
		{"no source", func(f *fixture) Options { o := f.opts(); o.SourceURL = ""; return o }, errkind.ConfigInvalid, "no source"},
		{"no bucket", func(f *fixture) Options { o := f.opts(); o.Bucket = nil; return o }, errkind.ConfigInvalid, "no ingestion bucket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			opts := tc.setup(f)
			before, _ := f.bucket.LatestSeq(context.Background())
			_, err := Run(context.Background(), opts)
			if err == nil {
				t.Fatal("no error")
			}
			if errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("error %q (kind %s), want kind %s naming %q", err, errkind.Of(err), tc.kind, tc.message)
			}
			if strings.Contains(err.Error(), "s3cret-pw") || strings.Contains(f.logs.String(), "s3cret-pw") {
				t.Fatal("the password leaked")
			}
			if n, _ := f.bucket.LatestSeq(context.Background()); n != before {
				t.Fatalf("a failed run left batch %d", n)
			}
		})
	}
}

func TestS3Bucket(t *testing.T) {
	s3 := s3test.Start(t)
	f := newFixture(t)
	smallSource(f)
	b, err := lake.Open(context.Background(), s3.CreateBucket(t, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	f.bucket = b
	if res := f.run(); res.Sequence != 1 || res.Total() != 10 {
		t.Fatalf("S3 batch: %+v", res)
	}
	if got := rows[totesys.Staff](t, b, 1, "staff"); len(got) != 1 || got[0].FirstName != "Ann" {
		t.Fatalf("staff from S3: %+v", got)
	}
	if res := f.run(); res.Total() != 0 {
		t.Fatalf("S3 rerun: %+v", res)
	}
}

// TestBrokenState: a state that cannot be read stops ingest before it reads
// the source, rather than landing everything again.
func TestBrokenState(t *testing.T) {
	t.Parallel()
	for name, state := range map[string][]byte{"not gzip": []byte("plain"), "not JSON": gzipped(t, "{")} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			smallSource(f)
			ctx := context.Background()
			if err := f.bucket.Put(ctx, "state/broken.json.gz", state); err != nil {
				t.Fatal(err)
			}
			if err := f.bucket.PutManifest(ctx, 1, &lake.Manifest{Stage: "ingest", Sequence: 1, StateKey: "state/broken.json.gz"}); err != nil {
				t.Fatal(err)
			}
			_, err := Run(ctx, f.opts())
			if errkind.Of(err) != errkind.BucketReadFailed || !strings.Contains(err.Error(), "state/broken.json.gz") {
				t.Fatalf("error %v (kind %s)", err, errkind.Of(err))
			}
			if n, _ := f.bucket.LatestSeq(ctx); n != 1 {
				t.Fatalf("a batch was written over a broken state: latest %d", n)
			}
		})
	}
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
