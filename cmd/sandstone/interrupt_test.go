package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// sandstoneBinary builds the sandstone command once for the tests that
// run it as a user does, signals and all.
func sandstoneBinary(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sandstone-bin")
		if err != nil {
			builtErr = err
			return
		}
		built = filepath.Join(dir, "sandstone")
		if out, err := exec.Command("go", "build", "-o", built, ".").CombinedOutput(); err != nil {
			builtErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if builtErr != nil {
		t.Fatalf("build: %v", builtErr)
	}
	return built
}

var (
	builtOnce sync.Once
	built     string
	builtErr  error
)

// proc is the sandstone binary running as a user runs it.
type proc struct {
	cmd  *exec.Cmd
	out  lambdatest.SyncBuffer // stdout and stderr
	done chan struct{}
	code int
}

// startProc starts exe with args and the settings of cfg in its
// environment.
func startProc(t *testing.T, exe string, cfg config.Config, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(exe, args...), done: make(chan struct{})} // #nosec G204 -- the binary just built
	p.cmd.Env = append(os.Environ(),
		config.EnvSource+"="+cfg.SourceURL, config.EnvWarehouse+"="+cfg.WarehouseURL,
		config.EnvIngestBucket+"="+cfg.IngestBucket, config.EnvProcessedBucket+"="+cfg.ProcessedBucket)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitFor waits until the output holds text.
func (p *proc) waitFor(t *testing.T, text string, within time.Duration) {
	t.Helper()
	end := time.Now().Add(within)
	for !strings.Contains(p.out.String(), text) {
		select {
		case <-p.done:
			t.Fatalf("exited %d before saying %q:\n%s", p.code, text, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatalf("no %q within %s:\n%s", text, within, p.out.String())
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C at a terminal does.
func (p *proc) interrupt(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
}

// exit waits for the process to end and returns its exit code.
func (p *proc) exit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("still running %s later:\n%s", within, p.out.String())
	}
	return -1
}

// landed verifies every batch of the bucket at url against its manifest
// (every object there, whole, by its SHA-256) and returns the number of
// batches and the rows they hold.
func landed(t *testing.T, url string) (batches, rows int64) {
	t.Helper()
	eachBatch(t, url, func(ctx context.Context, b *lake.Bucket, seq int64, m lake.Manifest) {
		for _, obj := range m.Tables {
			if _, err := lake.GetObject(ctx, b, obj); err != nil {
				t.Fatalf("batch %s: %v", lake.BatchID(seq), err)
			}
		}
		batches, rows = batches+1, rows+m.Rows()
	})
	return batches, rows
}

// eachBatch calls fn with each batch's manifest of the bucket at url, in
// order.
func eachBatch(t *testing.T, url string, fn func(ctx context.Context, b *lake.Bucket, seq int64, m lake.Manifest)) {
	t.Helper()
	ctx := context.Background()
	b, err := lake.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	seqs, err := b.SeqsAfter(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		var m lake.Manifest
		if err := b.ReadManifest(ctx, seq, &m); err != nil {
			t.Fatal(err)
		}
		fn(ctx, b, seq, m)
	}
}

// seeded starts a sandbox with a seeded source and returns it and the
// number of source rows.
func seeded(t *testing.T, orders int) (*sandbox.Sandbox, int64) {
	t.Helper()
	sb := startSandbox(t)
	stats, err := synth.Seed(context.Background(), sb.Config.SourceURL, synth.SeedOptions{SalesOrders: orders, RandomSeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return sb, stats.Total()
}

// holdTable locks table in the database at url until the test ends: a
// stage that reads or writes it waits, its batch under way for as long.
func holdTable(t *testing.T, url, table string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// TestCtrlCIngest: Ctrl-C during a multi-batch ingest says at once that it
// stops after the batch under way, lands that batch whole, starts no
// other and exits 130; the next ingest lands the rest, each row once.
func TestCtrlCIngest(t *testing.T) {
	exe := sandstoneBinary(t)
	sb, total := seeded(t, 3000)
	p := startProc(t, exe, sb.Config, "ingest", "--max-batch-rows", "300")
	p.waitFor(t, "ingest landed batch", 2*time.Minute)
	p.interrupt(t)
	p.waitFor(t, "ingest: stopping after the batch under way", 10*time.Second)
	code := p.exit(t, 2*time.Minute)
	out := p.out.String()
	if code != 130 || !strings.Contains(out, "stopped as asked after batch") || !strings.Contains(out, "sandstone: interrupted") {
		t.Fatalf("ingest, interrupted, exited %d:\n%s", code, out)
	}
	batches, rows := landed(t, sb.Config.IngestBucket)
	if batches < 1 || rows >= total {
		t.Fatalf("%d batches of %d rows landed, of %d: want some, not all", batches, rows, total)
	}

	again := startProc(t, exe, sb.Config, "ingest", "--max-batch-rows", "300")
	if code := again.exit(t, 5*time.Minute); code != 0 {
		t.Fatalf("the next ingest exited %d:\n%s", code, again.out.String())
	}
	more, all := landed(t, sb.Config.IngestBucket)
	if more <= batches || all != total {
		t.Errorf("after the next ingest: %d batches of %d rows, want more than %d batches and every one of the %d rows once", more, all, batches, total)
	}
}

// TestSecondCtrlCIngest: a second Ctrl-C stops at once, abandoning the
// batch under way (here waiting on a locked source table): nothing of it
// is visible, and the next ingest lands every row once.
func TestSecondCtrlCIngest(t *testing.T) {
	exe := sandstoneBinary(t)
	sb, total := seeded(t, 500)
	release := holdTable(t, sb.Config.SourceURL, "sales_order")
	p := startProc(t, exe, sb.Config, "ingest")
	code := stopTwice(t, p, "ingest")
	if out := p.out.String(); code != 130 || !strings.Contains(out, "stopped at once") {
		t.Fatalf("ingest, interrupted twice, exited %d:\n%s", code, out)
	}
	if batches, _ := landed(t, sb.Config.IngestBucket); batches != 0 {
		t.Fatalf("%d batches visible after the batch under way was abandoned", batches)
	}
	release()
	again := startProc(t, exe, sb.Config, "ingest")
	if code := again.exit(t, 5*time.Minute); code != 0 {
		t.Fatalf("the next ingest exited %d:\n%s", code, again.out.String())
	}
	if _, rows := landed(t, sb.Config.IngestBucket); rows != total {
		t.Errorf("%d rows landed, want the %d of the source once", rows, total)
	}
}

// loadable ingests the seeded source in many batches and transforms them;
// it returns the number of batches.
func loadable(t *testing.T, exe string, cfg config.Config) int64 {
	t.Helper()
	for _, args := range [][]string{{"ingest", "--max-batch-rows", "300"}, {"transform"}} {
		p := startProc(t, exe, cfg, args...)
		if code := p.exit(t, 5*time.Minute); code != 0 {
			t.Fatalf("%s exited %d:\n%s", args[0], code, p.out.String())
		}
	}
	n, _ := landed(t, cfg.ProcessedBucket)
	return n
}

// loads counts the batches the warehouse has loaded.
func loads(t *testing.T, cfg config.Config) int64 {
	t.Helper()
	return pgtest.QueryInt(t, cfg.WarehouseURL, "SELECT count(*) FROM "+pgx.Identifier{cfg.WarehouseSchema, "sandstone_loads"}.Sanitize())
}

// TestCtrlCLoad: Ctrl-C during a multi-batch load commits the batch under
// way, starts no other and exits 130, the warehouse agreeing with what it
// loaded; a second Ctrl-C while a batch waits abandons it at once; the
// next load loads the rest.
func TestCtrlCLoad(t *testing.T) {
	exe := sandstoneBinary(t)
	sb, _ := seeded(t, 3000)
	total := loadable(t, exe, sb.Config)
	p := startProc(t, exe, sb.Config, "load")
	p.waitFor(t, "batch loaded", 2*time.Minute)
	p.interrupt(t)
	p.waitFor(t, "load: stopping after the batch under way", 10*time.Second)
	code := p.exit(t, 2*time.Minute)
	if out := p.out.String(); code != 130 || !strings.Contains(out, "stopped as asked after batch") {
		t.Fatalf("load, interrupted, exited %d:\n%s", code, out)
	}
	first := loads(t, sb.Config)
	if first < 1 || first >= total {
		t.Fatalf("%d batches loaded of %d: want some, not all", first, total)
	}
	audit := startProc(t, exe, sb.Config, "audit", "--warehouse", sb.Config.WarehouseURL)
	if code := audit.exit(t, 5*time.Minute); code != 0 {
		t.Fatalf("audit after the interrupted load exited %d:\n%s", code, audit.out.String())
	}

	release := holdTable(t, sb.Config.WarehouseURL, "fact_sales_order")
	twice := startProc(t, exe, sb.Config, "load")
	if code := stopTwice(t, twice, "load"); code != 130 || !strings.Contains(twice.out.String(), "stopped at once") {
		t.Fatalf("load, interrupted twice, exited %d:\n%s", code, twice.out.String())
	}
	if n := loads(t, sb.Config); n != first {
		t.Fatalf("%d batches loaded after the abandoned one, want %d", n, first)
	}
	release()

	again := startProc(t, exe, sb.Config, "load")
	if code := again.exit(t, 5*time.Minute); code != 0 {
		t.Fatalf("the next load exited %d:\n%s", code, again.out.String())
	}
	if n := loads(t, sb.Config); n != total {
		t.Errorf("%d batches loaded, want all %d", n, total)
	}
	audit = startProc(t, exe, sb.Config, "audit", "--warehouse", sb.Config.WarehouseURL)
	if code := audit.exit(t, 5*time.Minute); code != 0 {
		t.Fatalf("audit after the last load exited %d:\n%s", code, audit.out.String())
	}
}

// TestCtrlCRunOnce: Ctrl-C during the ingest of `run --once` lets that
// batch land and starts neither another batch nor transform or load; it
// exits 130.
func TestCtrlCRunOnce(t *testing.T) {
	exe := sandstoneBinary(t)
	sb, _ := seeded(t, 3000)
	p := startProc(t, exe, sb.Config, "run", "--once", "--max-batch-rows", "300")
	p.waitFor(t, "ingest landed batch", 2*time.Minute)
	p.interrupt(t)
	code := p.exit(t, 2*time.Minute)
	out := p.out.String()
	if code != 130 || !strings.Contains(out, "ingest: stopping after the batch under way") || strings.Contains(out, "transform wrote batch") {
		t.Fatalf("run --once, interrupted, exited %d:\n%s", code, out)
	}
	if n, _ := landed(t, sb.Config.ProcessedBucket); n != 0 {
		t.Errorf("transform ran after the interrupt: %d processed batches", n)
	}
}

// processesOf lists the processes whose command line names dir and holds
// every one of words.
func processesOf(dir string, words ...string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f) // #nosec G304 -- /proc
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(b), "\x00", " ")
		if !strings.Contains(line, dir) {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			found = append(found, filepath.Base(filepath.Dir(f))+": "+line)
		}
	}
	return found
}

// TestCtrlCDemoEarly interrupts `sandstone demo` at moments spread over
// its start, the servers' initdb and pg_ctl start above all (a server
// started while the signal arrives): every time it exits 130 and no
// PostgreSQL server of its directory is left running.
func TestCtrlCDemoEarly(t *testing.T) {
	exe := sandstoneBinary(t)
	base, err := os.MkdirTemp("", "sandstone-demo-int") // reachable by the servers' user, so they live in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // #nosec G302 -- the servers' user must reach it
		t.Fatal(err)
	}
	for i, at := range []struct {
		name  string
		words []string // a process of the demo's so named is running
		text  string   // or the output says so
	}{
		{name: "early", text: "Starting throwaway"},
		{name: "source initdb", words: []string{"initdb", "source"}},
		{name: "source pg_ctl start", words: []string{"pg_ctl", "source", "start"}},
		{name: "source postmaster starting", words: []string{"bin/postgres", "source"}},
		{name: "warehouse initdb", words: []string{"initdb", "warehouse"}},
		{name: "warehouse pg_ctl start", words: []string{"pg_ctl", "warehouse", "start"}},
		{name: "warehouse postmaster starting", words: []string{"bin/postgres", "warehouse"}},
		{name: "seeding", text: "Seeding"},
	} {
		dir := filepath.Join(base, fmt.Sprintf("demo%d", i))
		t.Cleanup(func() { _ = sandbox.Clean(dir) })
		p := startProc(t, exe, config.Config{}, "demo", "--dir", dir, "--sales-orders", "2000")
		for end := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
			if (at.text != "" && strings.Contains(p.out.String(), at.text)) || (at.words != nil && len(processesOf(dir, at.words...)) > 0) {
				break
			}
			if at.words != nil && strings.Contains(p.out.String(), "Seeding") {
				// A busy machine ran past so short a moment unseen: interrupt
				// later, which must hold too.
				t.Logf("%s: the moment passed unseen; interrupting while seeding", at.name)
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s: never seen:\n%s", at.name, p.out.String())
			}
		}
		p.interrupt(t)
		code := p.exit(t, 2*time.Minute)
		if code != 130 {
			t.Errorf("interrupted at %s: exit %d:\n%s", at.name, code, p.out.String())
		}
		if left := processesOf(dir, "postgres"); len(left) > 0 || sandbox.Running(dir) {
			t.Errorf("interrupted at %s: servers left running:\n%s\n%s", at.name, strings.Join(left, "\n"), p.out.String())
		}
	}
}

// stopTwice interrupts p once its stage has started and is waiting on a
// locked table in its batch, waits for the stage to say it is stopping,
// interrupts it again and returns its exit code.
func stopTwice(t *testing.T, p *proc, stage string) int {
	t.Helper()
	p.waitFor(t, "stage started", time.Minute)
	time.Sleep(500 * time.Millisecond) // into the batch, waiting on the lock
	p.interrupt(t)
	p.waitFor(t, stage+": stopping after the batch under way", 10*time.Second)
	p.interrupt(t)
	return p.exit(t, 10*time.Second)
}
