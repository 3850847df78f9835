package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
)

func connect(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sandstoneBinary builds cmd/sandstone once for the package's tests.
func sandstoneBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var out []byte
		out, buildErr = exec.Command("go", "env", "GOMOD").Output()
		if buildErr != nil {
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "sandstone-bench-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sandstone")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/sandstone")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build sandstone: " + e.err.Error() + "\n" + e.out }

func TestRunTiny(t *testing.T) {
	exe := sandstoneBinary(t)
	dir := filepath.Join(t.TempDir(), "bench")
	profiles := t.TempDir()
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{
		Dir: dir, SalesOrders: 2000, FreshnessChanges: 5, FreshnessInterval: time.Second,
		Poll: 50 * time.Millisecond, Executable: exe, ProfileDir: profiles, Progress: &progress,
		BoundedBatchRows: 2500, IndexedCycle: true,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the bench directory is still there (%v)", err)
	}

	var js bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(js.Bytes(), &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sales_orders", "source_rows", "pipeline_seconds", "baseline_seconds", "ratio",
		"rows_per_second", "peak_rss_mb", "incremental_seconds", "freshness_p50_seconds", "freshness_p95_seconds",
		"stage_seconds", "machine", "targets", "audit_seconds", "audit_peak_rss_mb", "audit_drift", "audit_exit_code",
		"audit_source_rows", "audit_landed_versions", "audit_ingest_ratio", "audit_tables",
		"incremental_rows_per_second", "incremental_load_batch_seconds", "floor_seconds", "load_floor_ratio",
		"bounded_batches", "bounded_stage_seconds", "bounded_longest_seconds", "bounded_equal"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON has no %q:\n%s", k, js.String())
		}
	}
	num := func(k string) float64 { v, _ := obj[k].(float64); return v }
	if num("sales_orders") != 2000 {
		t.Errorf("sales_orders %v", obj["sales_orders"])
	}
	if res.SourceRows < 8000 || res.SourceRows != res.BaselineRows {
		t.Errorf("source rows %d, baseline rows %d: want the same, over 8000", res.SourceRows, res.BaselineRows)
	}
	if res.WarehouseRows["fact_sales_order"] != res.SourceTables["sales_order"] ||
		res.WarehouseRows["fact_payment"] != res.SourceTables["payment"] {
		t.Errorf("warehouse %v after the initial load of %v", res.WarehouseRows, res.SourceTables)
	}
	if num("ratio") <= 0 || num("pipeline_seconds") <= 0 || num("baseline_seconds") <= 0 || num("rows_per_second") <= 0 {
		t.Errorf("times: %s", js.String())
	}
	rss, _ := obj["peak_rss_mb"].(map[string]any)
	for _, s := range Stages {
		if mb, _ := rss[s].(float64); mb <= 1 || mb > 4096 {
			t.Errorf("peak RSS of %s: %v MB", s, rss[s])
		}
		if res.StageSeconds[s] <= 0 || res.IncrementalStageSeconds[s] <= 0 || res.IncrementalPeakRSSMB[s] <= 0 {
			t.Errorf("stage %s: %v s, incremental %v s, %v MB", s, res.StageSeconds[s], res.IncrementalStageSeconds[s], res.IncrementalPeakRSSMB[s])
		}
	}
	sum := res.StageSeconds["ingest"] + res.StageSeconds["transform"] + res.StageSeconds["load"]
	if d := sum - res.PipelineSeconds; d > 1e-6 || d < -1e-6 {
		t.Errorf("stages sum to %vs, pipeline %vs", sum, res.PipelineSeconds)
	}
	if res.IncrementalChanges <= 0 || res.IncrementalSeconds <= 0 {
		t.Errorf("incremental: %d changes in %vs", res.IncrementalChanges, res.IncrementalSeconds)
	}
	p50, p95 := num("freshness_p50_seconds"), num("freshness_p95_seconds")
	if p50 <= 0 || p95 < p50 || res.FreshnessMaxSeconds < p95 {
		t.Errorf("freshness p50 %v, p95 %v, max %v", p50, p95, res.FreshnessMaxSeconds)
	}
	if res.FreshnessChanges < 5 || int64(res.FreshnessMeasured)+res.FreshnessMissing != res.FreshnessChanges || res.FreshnessMeasured < 5 {
		t.Errorf("freshness: %d changes, %d measured, %d missing", res.FreshnessChanges, res.FreshnessMeasured, res.FreshnessMissing)
	}
	// The audit, after the incremental cycle: two batches landed, every
	// source row read, nothing missing or deleted.
	if res.AuditDrift || res.AuditExitCode != 0 || obj["audit_drift"] != false {
		t.Errorf("the audit of a clean pipeline found drift (exit %d): %+v\n%s", res.AuditExitCode, res.AuditTables, progress.String())
	}
	if mb := num("audit_peak_rss_mb"); num("audit_seconds") <= 0 || mb <= 1 || mb > 4096 {
		t.Errorf("audit: %vs, %v MB", obj["audit_seconds"], obj["audit_peak_rss_mb"])
	}
	if res.AuditSourceRows != res.SourceRows || res.AuditBatch == "" || len(res.AuditTables) != len(res.SourceTables) {
		t.Errorf("audit of batch %q read %d source rows of %d tables; the source has %d rows in %d", res.AuditBatch,
			res.AuditSourceRows, len(res.AuditTables), res.SourceRows, len(res.SourceTables))
	}
	// Every row landed, and each changed row again (the simulator's rows
	// of the freshness phase come later).
	if res.AuditLandedVersions < res.SourceRows+res.IncrementalChanges || res.AuditMissing != 0 || res.AuditDeleted != 0 {
		t.Errorf("audit: %d landed versions (want at least %d + %d), %d missing, %d deleted", res.AuditLandedVersions,
			res.SourceRows, res.IncrementalChanges, res.AuditMissing, res.AuditDeleted)
	}
	for name, n := range res.SourceTables {
		if at := res.AuditTables[name]; at.SourceRows != n {
			t.Errorf("audit of %s: %d source rows, the seed made %d", name, at.SourceRows, n)
		}
	}
	if r := num("audit_ingest_ratio"); r <= 0 || r != res.AuditSeconds/res.StageSeconds["ingest"] {
		t.Errorf("audit_ingest_ratio %v: want audit_seconds / the initial ingest's seconds", obj["audit_ingest_ratio"])
	}
	if res.AuditSourceCPUSeconds < 0 || res.IngestSourceCPUSeconds < 0 {
		t.Errorf("source CPU: ingest %vs, audit %vs", res.IngestSourceCPUSeconds, res.AuditSourceCPUSeconds)
	}
	for _, kind := range []string{"cpu", "mem"} {
		if st, err := os.Stat(filepath.Join(profiles, "audit."+kind+".pprof")); err != nil || st.Size() == 0 {
			t.Errorf("no %s profile of the audit: %v", kind, err)
		}
	}
	met := map[string]bool{}
	for _, tg := range res.Targets {
		met[tg.Name] = tg.Met
	}
	if !met["audit of the clean pipeline"] || !met["audit peak RSS"] {
		t.Errorf("audit targets: %+v", res.Targets)
	}
	// The floor wrote the incremental load's fact rows again; the bounded
	// load made the same warehouse, in batches of at most 2,500 rows.
	if res.FloorRows != res.IncrementalChanges || res.FloorSeconds <= 0 || res.LoadFloorRatio <= 0 ||
		res.IncrementalLoadBatchSeconds <= 0 || res.IncrementalRowsPerSecond["load"] <= 0 {
		t.Errorf("floor: %d rows in %vs (load's batch %vs, %v rows/s), want the %d changes", res.FloorRows, res.FloorSeconds,
			res.IncrementalLoadBatchSeconds, res.IncrementalRowsPerSecond["load"], res.IncrementalChanges)
	}
	if !res.BoundedEqual || res.BoundedBatches < 1 || res.BoundedStageSeconds["load"] <= 0 || res.BoundedLongestSeconds["load"] <= 0 {
		t.Errorf("bounded load: %d batches, equal %v (%v differ), seconds %v, longest %v", res.BoundedBatches,
			res.BoundedEqual, res.BoundedDiffers, res.BoundedStageSeconds, res.BoundedLongestSeconds)
	}
	// The second cycle, after the source's indexes on last_updated.
	if c := res.Indexed; c == nil || c.Changes <= 0 || c.Seconds <= 0 || c.LoadBatchSeconds <= 0 || c.PeakRSSMB["ingest"] <= 0 ||
		res.SourceIndexSeconds <= 0 || obj["indexed"] == nil {
		t.Errorf("indexed cycle: %+v, indexes built in %vs", c, res.SourceIndexSeconds)
	}
	// Each cycle's floor read the rows it changed (the window holds them
	// and what the lookback reaches back to), not the whole source, and
	// wrote its fact rows again.
	for _, c := range []Cycle{res.incremental(), *res.Indexed} {
		if f := c.Floor; f.ReadRows < c.Changes || f.ReadRows > res.SourceRows/2 || f.ReadSeconds <= 0 || f.WriteSeconds <= 0 ||
			f.Ratio != c.Seconds/f.seconds() {
			t.Errorf("cycle of %d changes in %vs: floor %+v", c.Changes, c.Seconds, f)
		}
	}
	if f, _ := obj["incremental_floor"].(map[string]any); f["read_rows"] == nil || f["write_seconds"] == nil {
		t.Errorf("JSON incremental_floor: %v", obj["incremental_floor"])
	}
	if res.RunPeakRSSMB <= 0 || res.Machine.CPUs <= 0 || res.Machine.PostgreSQL == "" || len(res.Targets) != 10 {
		t.Errorf("run RSS %v, machine %+v, %d targets", res.RunPeakRSSMB, res.Machine, len(res.Targets))
	}
	for _, s := range Stages {
		for _, kind := range []string{"cpu", "mem"} {
			if st, err := os.Stat(filepath.Join(profiles, "initial-"+s+"."+kind+".pprof")); err != nil || st.Size() == 0 {
				t.Errorf("no %s profile of %s: %v", kind, s, err)
			}
		}
	}

	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"baseline (COPY out + COPY in)", "initial pipeline", "pipeline / baseline", "freshness", "p95", "transform", "target",
		"audit (after incremental)", "audit peak RSS", "the initial ingest's", "floor (COPY, checked by PG)", "bounded initial",
		"PG reads the window", "PG writes the fact rows", "floor (the cycle"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "DRIFT") {
		t.Errorf("the table tells drift:\n%s", table.String())
	}
}

// fakeAudit writes a stand-in sandstone whose audit prints report and
// exits with code.
func fakeAudit(t *testing.T, report string, code int) children {
	t.Helper()
	fake := filepath.Join(t.TempDir(), "sandstone")
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1 $2\" = \"audit --json\" ] || exit 9\ncat <<'EOF'\n%s\nEOF\necho 'a log line' >&2\nexit %d\n", report, code)
	if err := os.WriteFile(fake, []byte(script), 0o700); err != nil { // #nosec G306 -- a test script
		t.Fatal(err)
	}
	return children{exe: fake, env: os.Environ()}
}

func TestAuditDriftIsTold(t *testing.T) {
	ctx := context.Background()
	drift := `{"batch": "00000002", "drift": true, "seconds": 0.1, "tables": {
		"sales_order": {"source_rows": 10, "landed_versions": 9, "missing": 1, "pending": 0, "deleted": 0},
		"payment": {"source_rows": 5, "landed_versions": 6, "missing": 0, "pending": 2, "deleted": 1}}}`
	a, err := fakeAudit(t, drift, 1).audit(ctx)
	if err != nil {
		t.Fatalf("exit 1 with a report is drift, not a failure: %v", err)
	}
	res := Result{StageSeconds: map[string]float64{"ingest": 2}}
	res.setAudit(a)
	res.Targets = evaluate(res)
	if !res.AuditDrift || res.AuditExitCode != 1 || res.AuditSourceRows != 15 || res.AuditLandedVersions != 15 ||
		res.AuditMissing != 1 || res.AuditPending != 2 || res.AuditDeleted != 1 || res.AuditBatch != "00000002" {
		t.Errorf("drift recorded as %+v", res)
	}
	if res.AuditSeconds <= 0 || res.AuditIngestRatio != res.AuditSeconds/2 {
		t.Errorf("audit %vs, ratio %v", res.AuditSeconds, res.AuditIngestRatio)
	}
	var js, table bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"audit_drift": true`) {
		t.Errorf("JSON lacks audit_drift true:\n%s", js.String())
	}
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AUDIT FOUND DRIFT", "payment 0 missing, 1 deleted", "sales_order 1 missing, 0 deleted", "DRIFT (exit 1)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	for _, tg := range res.Targets {
		if tg.Name == "audit of the clean pipeline" && tg.Met {
			t.Errorf("target met despite drift: %+v", tg)
		}
	}

	// A report of drift with exit 0 is drift all the same.
	a, err = fakeAudit(t, drift, 0).audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res.setAudit(a)
	if !res.AuditDrift {
		t.Error("a report with drift: true, exit 0, recorded clean")
	}

	// Exit 2 is a failure, and so is exit 1 without a report.
	if _, err := fakeAudit(t, `{}`, 2).audit(ctx); err == nil || !strings.Contains(err.Error(), "a log line") {
		t.Errorf("exit 2: %v, want a failure with the child's output", err)
	}
	if _, err := fakeAudit(t, `not json`, 1).audit(ctx); err == nil {
		t.Error("exit 1 without a report was accepted")
	}
}

func TestRunReportsAFailingStage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench")
	fake := filepath.Join(t.TempDir(), "sandstone")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"no luck with $1 for postgres://u:secret@h/db\"\nexit 3\n"), 0o700); err != nil { // #nosec G306 -- a test script
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{Dir: dir, SalesOrders: 50, Executable: fake, FreshnessChanges: -1, Keep: true})
	if err == nil || !strings.Contains(err.Error(), "initial ingest") || !strings.Contains(err.Error(), "no luck with ingest") {
		t.Fatalf("error %v, want the ingest child's failure and output", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("a password reached the error: %v", err)
	}
	// Kept: the servers run until cleaned.
	if _, serr := os.Stat(dir); serr != nil {
		t.Errorf("--keep removed the directory: %v", serr)
	}
	if err := sandbox.Clean(dir); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for _, o := range []Options{
		{SalesOrders: -1},
		{ChangeFraction: 2},
		{FreshnessInterval: -time.Second},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// TestChildPeakRSSIsItsOwn: on Linux a child's peak RSS as wait4 reports
// it counts the parent's peak before the child started; the bench reports
// the child's own.
func TestChildPeakRSSIsItsOwn(t *testing.T) {
	exe := sandstoneBinary(t)
	held := make([]byte, 300<<20)
	for i := range held {
		held[i] = 1
	}
	c := children{exe: exe, env: os.Environ()}
	run, err := c.run(context.Background(), "rss", nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if run.PeakRSS <= 1<<20 || run.PeakRSS >= 200<<20 {
		t.Errorf("sandstone version's peak RSS: %d bytes, want its own (a few MB), not this test's 300 MB", run.PeakRSS)
	}
	held[len(held)-1] = 2 // held until the child ended
}
