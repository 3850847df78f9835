package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
)

// BenchmarkAuditYear audits a year of 10-minute batches of the real
// totesys business in the in-process S3 server: SANDSTONE_AUDIT_YEAR_BATCHES
// batches (50,000 unless set; 0 skips), each a new sales order, the update
// of the one before, its transaction and its payment, written straight as
// objects and manifests (after one real ingest of the reference rows), and
// a source database holding the same rows. It runs `sandstone audit` as a
// child, so that its peak RSS (VmHWM, read while it runs) is the audit's
// alone: once reading every
// batch (and writing a checkpoint), once more after a day of batches (144)
// from that checkpoint. docs/benchmarks.md has the figures. Run with
// -benchtime 1x.
func BenchmarkAuditYear(b *testing.B) {
	n := 50000
	if v, err := strconv.Atoi(os.Getenv("SANDSTONE_AUDIT_YEAR_BATCHES")); err == nil {
		n = v
	}
	if n <= 0 {
		b.Skip("SANDSTONE_AUDIT_YEAR_BATCHES=0")
	}
	ctx := context.Background()
	bin := filepath.Join(b.TempDir(), "sandstone")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sandstone-data/sandstone/cmd/sandstone").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	srv := s3test.Start(b)
	bucketURL := srv.CreateBucket(b, "ingest")
	bucket, err := lake.Open(ctx, bucketURL)
	if err != nil {
		b.Fatal(err)
	}
	src := pgtest.NewDatabase(b)
	pgtest.Exec(b, src, totesys.Schema)
	pgtest.Exec(b, src, pgtest.ReferenceRows)
	ingestOnce(b, src, bucket)
	var first lake.Manifest
	if err := bucket.ReadManifest(ctx, 1, &first); err != nil {
		b.Fatal(err)
	}
	day := 144
	start := time.Now()
	landYear(b, bucket, first.StateKey, 2, n)
	b.Logf("%d batches written in %s", n, time.Since(start).Round(time.Second))
	sourceYear(b, src, n)
	b.ResetTimer()
	for b.Loop() {
		full := auditChild(b, bin, src, bucketURL)
		landYear(b, bucket, first.StateKey, 2+n, day)
		sourceYear(b, src, n+day)
		b.StopTimer()
		b.StartTimer()
		since := auditChild(b, bin, src, bucketURL)
		if full.checkpoint != "" || since.checkpoint != lake.BatchID(int64(n+1)) {
			b.Errorf("checkpoints: full audit from %q, the next from %q", full.checkpoint, since.checkpoint)
		}
		b.ReportMetric(full.seconds, "full-s")
		b.ReportMetric(full.cpu, "full-cpu-s")
		b.ReportMetric(since.cpu, "checkpoint-cpu-s")
		b.ReportMetric(full.peakMB, "full-peak-MB")
		b.ReportMetric(since.seconds, "checkpoint-s")
		b.ReportMetric(since.peakMB, "checkpoint-peak-MB")
	}
}

// childAudit is what one `sandstone audit` child did.
type childAudit struct {
	seconds, cpu, peakMB float64
	checkpoint           string
}

// auditChild runs `sandstone audit --json` and fails on drift.
func auditChild(b *testing.B, bin, src, bucketURL string) childAudit {
	cmd := exec.Command(bin, "audit", "--json")
	cmd.Env = append(os.Environ(), "SANDSTONE_SOURCE_URL="+src, "SANDSTONE_INGEST_BUCKET="+bucketURL)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// The rusage of a child started from this large process (the S3
	// server's objects) counts this process's memory as the child's
	// (its address space before exec), so the child's own high-water mark
	// is read from /proc while it runs instead.
	done, peakKB := make(chan struct{}), make(chan int64)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var kb int64
		for {
			kb = max(kb, vmHWM(cmd.Process.Pid))
			select {
			case <-done:
				peakKB <- kb
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	took := time.Since(start)
	close(done)
	peak := float64(<-peakKB) / 1024
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	var r Report
	if err != nil || json.Unmarshal(out.Bytes(), &r) != nil || r.Drift {
		b.Fatalf("audit: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	b.Logf("audit of batch %s from checkpoint %q: %.1f s (%.1f s of CPU), peak RSS %.1f MB, sales_order %+v",
		r.Batch, r.Checkpoint, took.Seconds(), cpu, peak, *r.Tables["sales_order"])
	return childAudit{seconds: took.Seconds(), cpu: cpu, peakMB: peak, checkpoint: r.Checkpoint}
}

// yearStart is the stamp of the first batch's rows; batch i's rows are
// stamped i 10-minute cycles later.
var yearStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func cycle(i int) time.Time { return yearStart.Add(time.Duration(i) * 10 * time.Minute) }

// landYear writes batches from to from+count-1, eight at a time: batch s
// holds order i = s-1 (new), the update of order i-1, transaction i and
// payment i, all stamped cycle(i).
func landYear(b *testing.B, bucket *lake.Bucket, stateKey string, from, count int) {
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for s := from; s < from+count; s++ {
		g.Go(func() error { return landBatch(gctx, bucket, stateKey, s) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

func landBatch(ctx context.Context, bucket *lake.Bucket, stateKey string, s int) error {
	i := int32(s - 1) // #nosec G115 -- a test's batch count
	at := cycle(int(i))
	run := lake.NewRunID()
	orders := []totesys.SalesOrder{{SalesOrderID: i, CreatedAt: at, LastUpdated: at, DesignID: 1, StaffID: 1, CounterpartyID: 1,
		UnitsSold: 100, UnitPrice: 394, CurrencyID: 1, AgreedDeliveryDate: "2025-01-02", AgreedPaymentDate: "2025-01-03", AgreedDeliveryLocationID: 1}}
	if i > 1 {
		prev := orders[0]
		prev.SalesOrderID, prev.CreatedAt = i-1, cycle(int(i-1))
		orders = append(orders, prev)
	}
	m := lake.Manifest{Version: 1, Stage: "ingest", Batch: lake.BatchID(int64(s)), Sequence: int64(s), RunID: run,
		SnapshotAt: at, SourceNewest: at, StateKey: stateKey}
	for _, put := range []func() (lake.Object, error){
		func() (lake.Object, error) { return putRows(ctx, bucket, "sales_order", at, s, run, orders) },
		func() (lake.Object, error) {
			return putRows(ctx, bucket, "transaction", at, s, run, []totesys.Transaction{{TransactionID: i, TransactionType: "SALE",
				SalesOrderID: &i, CreatedAt: at, LastUpdated: at}})
		},
		func() (lake.Object, error) {
			return putRows(ctx, bucket, "payment", at, s, run, []totesys.Payment{{PaymentID: i, CreatedAt: at, LastUpdated: at,
				TransactionID: i, CounterpartyID: 1, PaymentAmount: 39400, CurrencyID: 1, PaymentTypeID: 1, PaymentDate: "2025-01-03",
				CompanyAcNumber: 1, CounterpartyAcNumber: 2}})
		},
	} {
		obj, err := put()
		if err != nil {
			return err
		}
		m.Tables = append(m.Tables, obj)
	}
	return bucket.PutManifest(ctx, int64(s), &m)
}

// putRows writes one table's object of batch s.
func putRows[T any](ctx context.Context, bucket *lake.Bucket, table string, at time.Time, s int, run string, rows []T) (lake.Object, error) {
	w, err := lake.NewParquetWriter[T](ctx, bucket, lake.DataKey(table, at, int64(s), run, "parquet"), nil)
	if err != nil {
		return lake.Object{}, err
	}
	if err := w.Write(rows); err != nil {
		w.Abort()
		return lake.Object{}, err
	}
	size, sum, err := w.Close()
	return lake.Object{Table: table, Key: w.Key(), Rows: int64(len(rows)), Bytes: size, SHA256: sum}, err
}

// sourceYear makes the source hold what batches 2 to n+1 landed: orders,
// transactions and payments 1 to n, each order's stamp its update's.
func sourceYear(b *testing.B, src string, n int) {
	at := yearStart.Format("2006-01-02 15:04:05")
	pgtest.Exec(b, src, `TRUNCATE sales_order, transaction, payment`)
	pgtest.Exec(b, src, `INSERT INTO sales_order SELECT g, $2::timestamp + g * interval '10 minutes',
		$2::timestamp + least(g + 1, $1) * interval '10 minutes', 1,1,1,100,3.94,1,'2025-01-02','2025-01-03',1
		FROM generate_series(1, $1::int) g`, n, at)
	pgtest.Exec(b, src, `INSERT INTO transaction SELECT g, 'SALE', g, NULL, $2::timestamp + g * interval '10 minutes',
		$2::timestamp + g * interval '10 minutes' FROM generate_series(1, $1::int) g`, n, at)
	pgtest.Exec(b, src, `INSERT INTO payment SELECT g, $2::timestamp + g * interval '10 minutes', $2::timestamp + g * interval '10 minutes',
		g,1,394.00,1,1,false,'2025-01-03',1,2 FROM generate_series(1, $1::int) g`, n, at)
}

// vmHWM is a running process's peak RSS in KiB (0 once it has exited).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
