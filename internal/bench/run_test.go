package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/sandbox"
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
		"stage_seconds", "machine", "targets"} {
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
	if res.RunPeakRSSMB <= 0 || res.Machine.CPUs <= 0 || res.Machine.PostgreSQL == "" || len(res.Targets) != 5 {
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
	for _, want := range []string{"baseline (COPY out + COPY in)", "initial pipeline", "pipeline / baseline", "freshness", "p95", "transform", "target"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
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
