package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// fakeRun is a `sandstone run` that never loads anything and stops on
// SIGTERM.
func fakeRun(t *testing.T) children {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "sandstone")
	script := "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n"
	if err := os.WriteFile(exe, []byte(script), 0o700); err != nil { // #nosec G306 -- a test script
		t.Fatal(err)
	}
	return children{exe: exe, env: os.Environ()}
}

func factTables(t *testing.T) string {
	t.Helper()
	wh := pgtest.NewDatabase(t)
	pgtest.Exec(t, wh, `CREATE TABLE fact_sales_order (sales_record_id serial PRIMARY KEY, last_updated_date date, last_updated_time time);
		CREATE TABLE fact_payment (payment_record_id serial PRIMARY KEY, last_updated_date date, last_updated time)`)
	return wh
}

func TestFreshnessCountsChangesThatNeverArrive(t *testing.T) {
	src, _ := seeded(t, 100)
	wh := factTables(t)
	// A fact row from before the phase is not one of its changes.
	pgtest.Exec(t, wh, `INSERT INTO fact_sales_order (last_updated_date, last_updated_time) VALUES ('2020-01-01', '10:00')`)
	f, err := measureFreshness(context.Background(), fakeRun(t), freshnessPlan{
		sourceURL: src, warehouseURL: wh, schema: "public", changes: 4,
		interval: 100 * time.Millisecond, poll: 20 * time.Millisecond, timeout: time.Minute,
		logPath: filepath.Join(t.TempDir(), "run.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.Changes < 4 || f.Missing != f.Changes || len(f.Delays) != 0 {
		t.Fatalf("%d changes, %d missing, %d delays: want every change missing", f.Changes, f.Missing, len(f.Delays))
	}
	if f.RunPeakRSS <= 0 {
		t.Errorf("run's peak RSS %d", f.RunPeakRSS)
	}
}

func TestFreshnessTimesOut(t *testing.T) {
	src, _ := seeded(t, 100)
	_, err := measureFreshness(context.Background(), fakeRun(t), freshnessPlan{
		sourceURL: src, warehouseURL: factTables(t), schema: "public", changes: 1_000_000,
		interval: time.Second, poll: 50 * time.Millisecond, timeout: 500 * time.Millisecond,
		logPath: filepath.Join(t.TempDir(), "run.log"),
	})
	if err == nil || !strings.Contains(err.Error(), "simulat") {
		t.Fatalf("error %v, want the simulator's time out", err)
	}
}

func TestFreshnessNeedsTheFactTables(t *testing.T) {
	src, _ := seeded(t, 10)
	_, err := measureFreshness(context.Background(), fakeRun(t), freshnessPlan{
		sourceURL: src, warehouseURL: pgtest.NewDatabase(t), schema: "public", changes: 1,
		interval: time.Second, poll: time.Second, timeout: time.Second, logPath: filepath.Join(t.TempDir(), "run.log"),
	})
	if err == nil || !strings.Contains(err.Error(), "fact_sales_order") {
		t.Fatalf("error %v, want the missing table", err)
	}
}

func TestHelpers(t *testing.T) {
	if got := tail("abcdef", 3); got != "…def" {
		t.Errorf("tail: %q", got)
	}
	if got := tail("ab", 3); got != "ab" {
		t.Errorf("tail: %q", got)
	}
	if peakRSS(nil) != 0 || perSecond(10, 0) != 0 || perSecond(10, 2) != 5 {
		t.Error("helpers")
	}
	if procField("/nonexistent", "x") != "" || procField("/proc/self/status", "no such field") != "" {
		t.Error("procField found something that is not there")
	}
}
