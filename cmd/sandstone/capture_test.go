package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// logicalSource starts a server with logical decoding on and returns the
// settings of a pipeline reading its database "totesys", which holds the
// totesys schema and its reference rows, into its database "warehouse".
// The server and its slots go with the test.
func logicalSource(t *testing.T) config.Config {
	t.Helper()
	srv, err := pgserver.Start(context.Background(), pgserver.Options{Settings: pgtest.Logical})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Stop()
		_ = os.RemoveAll(srv.Dir)
	})
	src, err := srv.CreateDatabase(context.Background(), "totesys")
	if err != nil {
		t.Fatal(err)
	}
	wh, err := srv.CreateDatabase(context.Background(), "warehouse")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, src, totesys.Schema)
	pgtest.Exec(t, src, pgtest.ReferenceRows)
	dir := t.TempDir()
	return config.Config{SourceURL: src, WarehouseURL: wh, IngestBucket: filepath.Join(dir, "ingested"), ProcessedBucket: filepath.Join(dir, "processed")}
}

// salesOrderVersions reads every sales_order row of every batch in the
// bucket at url and returns their number and the (id, last_updated) found
// more than once.
func salesOrderVersions(t *testing.T, url string) (int64, []string) {
	t.Helper()
	type version struct {
		ID          int32     `parquet:"sales_order_id"`
		LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
	}
	seen := map[version]int{}
	var n int64
	var twice []string
	eachBatch(t, url, func(ctx context.Context, b *lake.Bucket, _ int64, m lake.Manifest) {
		obj, ok := m.Table("sales_order")
		if !ok {
			return
		}
		if err := lake.ReadParquet(ctx, b, obj.Key, 10000, func(rs []version) error {
			for _, v := range rs {
				n++
				if seen[v]++; seen[v] == 2 {
					twice = append(twice, fmt.Sprintf("%d@%s", v.ID, v.LastUpdated))
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	return n, twice
}

// TestKillCaptureMidStream: `sandstone ingest --capture wal` killed with
// SIGKILL while it streams a transaction of 300,000 sales orders lands
// nothing of it; the next ingest (once the server has let go of the slot)
// lands every version once. Should an ingest finish before the kill, the
// test commits another transaction and tries again.
func TestKillCaptureMidStream(t *testing.T) {
	exe := sandstoneBinary(t)
	cfg := logicalSource(t)
	src, slot := cfg.SourceURL, config.DefaultSlot(cfg.SourceURL)
	ingest := func() *proc { return startProc(t, exe, cfg, "ingest", "--capture", "wal") }
	pgtest.Exec(t, src, `INSERT INTO sales_order SELECT g, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1 FROM generate_series(1, 5) g`)
	if p := ingest(); p.exit(t, 2*time.Minute) != 0 {
		t.Fatalf("the first ingest (the slot's snapshot) failed:\n%s", p.out.String())
	}
	pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = 2, last_updated = now() WHERE sales_order_id <= 2`)
	versions := int64(5 + 2)
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			t.Fatal("the ingest finished three times before it could be killed mid-stream: make the transaction larger")
		}
		if killMidStream(t, ingest, cfg, 100+attempt*300000) {
			versions += 300000 + 3
			break
		}
		versions += 300000 + 3
		t.Logf("attempt %d: the ingest landed the transaction before the kill; again, with another", attempt)
	}
	// The server may still hold the slot for the killed process's walsender
	// (until it notices the connection is gone, or wal_sender_timeout): end
	// it, as an operator would, so that the test does not wait for it.
	pgtest.Exec(t, src, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, slot)
	var again *proc
	for end := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if again = ingest(); again.exit(t, 5*time.Minute) == 0 {
			break
		}
		if !strings.Contains(again.out.String(), "another consumer is reading it") || time.Now().After(end) {
			t.Fatalf("the ingest after the kill failed:\n%s", again.out.String())
		}
	}
	n, twice := salesOrderVersions(t, cfg.IngestBucket)
	if n != versions || len(twice) > 0 {
		t.Errorf("the lake holds %d sales_order versions, want the source's %d once; landed twice: %v", n, versions, twice)
	}
}

// killMidStream commits a transaction of 300,000 sales orders from id
// from, then three updates, starts an ingest and kills it with SIGKILL
// once it writes the transaction's rows. It reports whether the kill came
// before the ingest ended (then it checks that no batch landed).
func killMidStream(t *testing.T, ingest func() *proc, cfg config.Config, from int) bool {
	t.Helper()
	src := cfg.SourceURL
	before, _ := landed(t, cfg.IngestBucket)
	pgtest.Exec(t, src, `INSERT INTO sales_order SELECT g, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1 FROM generate_series($1::int, $1::int + 299999) g`, from)
	for range 3 {
		pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id = 3`)
	}
	p := ingest()
	// Once the first change has come, the process writes the batch's
	// object (a file bucket's .tmp file until it commits): kill it then.
	for end := time.Now().Add(2 * time.Minute); !writing(t, cfg.IngestBucket); time.Sleep(5 * time.Millisecond) {
		select {
		case <-p.done:
			if p.code != 0 {
				t.Fatalf("the ingest failed:\n%s", p.out.String())
			}
			return false
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("the ingest never started writing the large transaction:\n%s", p.out.String())
		}
	}
	_ = p.cmd.Process.Kill()
	if code := p.exit(t, time.Minute); code != -1 {
		if code != 0 {
			t.Fatalf("the ingest failed:\n%s", p.out.String())
		}
		return false
	}
	if after, _ := landed(t, cfg.IngestBucket); after != before || strings.Contains(p.out.String(), "ingest landed batch") {
		t.Fatalf("the killed ingest landed a batch (%d batches, %d before):\n%s", after, before, p.out.String())
	}
	return true
}

// writing reports whether an object is being written under dir, a file
// bucket: a .tmp file, which the object's commit renames.
func writing(t *testing.T, dir string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".tmp") {
			found = true
			return filepath.SkipAll
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed under the walk
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestCaptureCommandLine: `ingest --capture wal` lands the snapshot and
// then what changed; `drop-slot` removes the slot and the publication it
// created, and says so; a bad --capture is config_invalid.
func TestCaptureCommandLine(t *testing.T) {
	cfg := logicalSource(t)
	ctx := context.Background()
	args := []string{"--source", cfg.SourceURL, "--ingest-bucket", cfg.IngestBucket, "--capture", "wal"}
	pgtest.Exec(t, cfg.SourceURL, `INSERT INTO sales_order VALUES (1, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1)`)
	if out, code := runCode(ctx, append([]string{"ingest"}, args...)...); code != 0 || !strings.Contains(out, "batch 000000000001") {
		t.Fatalf("ingest --capture wal exited %d:\n%s", code, out)
	}
	pgtest.Exec(t, cfg.SourceURL, `UPDATE sales_order SET units_sold = 2, last_updated = now() WHERE sales_order_id = 1`)
	if out, code := runCode(ctx, append([]string{"ingest"}, args...)...); code != 0 || !strings.Contains(out, "batch 000000000002") {
		t.Fatalf("the second ingest exited %d:\n%s", code, out)
	}
	out, code := runCode(ctx, "drop-slot", "--source", cfg.SourceURL)
	if code != 0 || !strings.Contains(out, "slot sandstone_totesys: dropped") || !strings.Contains(out, "publication sandstone: dropped") {
		t.Fatalf("drop-slot exited %d:\n%s", code, out)
	}
	if out, _ := runCode(ctx, "drop-slot", "--source", cfg.SourceURL); !strings.Contains(out, "slot sandstone_totesys: not found") ||
		!strings.Contains(out, "publication sandstone: not found") {
		t.Errorf("drop-slot again:\n%s", out)
	}
	if out, code := runCode(ctx, "ingest", "--source", cfg.SourceURL, "--ingest-bucket", cfg.IngestBucket, "--capture", "logical"); code == 0 ||
		!strings.Contains(out, "config_invalid") {
		t.Errorf("--capture logical exited %d:\n%s", code, out)
	}
	if out, code := runCode(ctx, "drop-slot"); code == 0 || !strings.Contains(out, "--source is required") {
		t.Errorf("drop-slot without a source exited %d:\n%s", code, out)
	}
}

// TestRunFollow: `run --capture wal --follow` lands, transforms and loads
// each change as it commits, on one replication connection, until it is
// stopped; what it confirmed, nothing lands again. --follow without the
// wal, or with --once, is refused.
func TestRunFollow(t *testing.T) {
	cfg := logicalSource(t)
	src := cfg.SourceURL
	pgtest.Exec(t, src, `INSERT INTO sales_order SELECT g, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1 FROM generate_series(1, 5) g`)
	args := []string{"--source", src, "--warehouse", cfg.WarehouseURL, "--ingest-bucket", cfg.IngestBucket,
		"--processed-bucket", cfg.ProcessedBucket, "--alert-state", filepath.Join(t.TempDir(), "alerts.json"), "--capture", "wal"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		out  string
		code int
	}
	done := make(chan outcome, 1)
	go func() {
		out, code := runCode(ctx, append([]string{"run", "--follow", "--interval", "1m", "--audit-every", "0"}, args...)...)
		done <- outcome{out, code}
	}()
	facts := func() int64 {
		conn, err := pgx.Connect(context.Background(), cfg.WarehouseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(context.Background()) }()
		var n int64
		if conn.QueryRow(context.Background(), "SELECT count(*) FROM fact_sales_order").Scan(&n) != nil {
			return -1 // not created yet
		}
		return n
	}
	waitFacts := func(want int64) {
		t.Helper()
		for end := time.Now().Add(time.Minute); facts() < want; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("the warehouse holds %d sales order facts after a minute, want %d", facts(), want)
			}
		}
	}
	waitFacts(5) // the slot's snapshot
	for i := range 3 {
		pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id = $1`, i+1)
		waitFacts(int64(6 + i))
	}
	cancel()
	o := <-done
	if !strings.Contains(o.out, "sales_order                  1") {
		t.Errorf("no result printed for the batches it landed:\n%s", o.out)
	}
	if out, code := runCode(context.Background(), "ingest", "--source", src, "--ingest-bucket", cfg.IngestBucket, "--capture", "wal"); code != 0 || !strings.Contains(out, "nothing new") {
		t.Errorf("an ingest after following exited %d, want nothing new:\n%s", code, out)
	}
	if n, twice := salesOrderVersions(t, cfg.IngestBucket); n != 8 || len(twice) > 0 {
		t.Errorf("the lake holds %d sales_order versions, want 8 once; twice: %v", n, twice)
	}
	for _, bad := range [][]string{{"run", "--follow"}, {"run", "--follow", "--once", "--capture", "wal"}} {
		if out, code := runCode(context.Background(), append(bad, args[:4]...)...); code == 0 || !strings.Contains(out, "--follow") {
			t.Errorf("%v exited %d:\n%s", bad, code, out)
		}
	}
}
