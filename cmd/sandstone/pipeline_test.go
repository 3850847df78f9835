package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
)

// startSandbox starts a source and a warehouse server, removed with the
// test.
func startSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sb")
	sb, err := sandbox.Start(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sandbox.Clean(dir) })
	return sb
}

// TestDemoThenOperate runs the demo at a small scale, then operates its
// installation with the other commands, then cleans it away.
func TestDemoThenOperate(t *testing.T) {
	for _, v := range []string{config.EnvSource, config.EnvWarehouse, config.EnvIngestBucket, config.EnvProcessedBucket, config.EnvAlertState} {
		t.Setenv(v, "")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "demo")
	out, err := runCLI(ctx, "demo", "--dir", dir, "--sales-orders", "400", "--cycles", "1")
	t.Cleanup(func() { _, _ = runCLI(context.Background(), "demo", "--clean", "--dir", dir) })
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"Initial load", "Cycle 1", "fact_sales_order", "Sales by month and currency", "Freshness", "psql "} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	wh := regexp.MustCompile(`postgres://\S+/warehouse\?sslmode=disable`).FindString(out)
	if wh == "" {
		t.Fatalf("no warehouse URL in:\n%s", out)
	}
	readmeSQL(t, wh)
	demoWhatNext(t, out, dir)
	exports := regexp.MustCompile(`(?m)^  export .*$`).FindAllString(out, -1)
	// The next demo keeps the ports: the exports pasted still work.
	again, err := runCLI(ctx, "demo", "--dir", dir, "--sales-orders", "400", "--cycles", "1")
	if err != nil {
		t.Fatalf("demo again: %v\n%s", err, again)
	}
	if got := regexp.MustCompile(`(?m)^  export .*$`).FindAllString(again, -1); strings.Join(got, "\n") != strings.Join(exports, "\n") {
		t.Errorf("the second demo's settings differ from the first's:\n%s\nthen\n%s", strings.Join(exports, "\n"), strings.Join(got, "\n"))
	}
	buckets := []string{"--ingest-bucket", filepath.Join(dir, "ingested"), "--processed-bucket", filepath.Join(dir, "processed")}

	// status --json reads the demo's buckets and warehouse.
	out, err = runCLI(ctx, append([]string{"status", "--json", "--warehouse", wh}, buckets...)...)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Ingested int64            `json:"ingested_batch"`
		Loaded   int64            `json:"loaded_batch"`
		Rows     map[string]int64 `json:"warehouse_rows"`
		Problems []string         `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Ingested != 2 || st.Loaded != 2 || st.Rows["fact_sales_order"] < 400 || len(st.Problems) != 0 {
		t.Fatalf("status: %+v", st)
	}

	for _, args := range [][]string{
		append([]string{"transform"}, buckets...),
		append([]string{"load", "--warehouse", wh}, buckets[2:]...),
	} {
		if out, err := runCLI(ctx, args...); err != nil || !strings.Contains(out, "nothing") {
			t.Errorf("%s after the demo: %v\n%s", args[0], err, out)
		}
	}
	out, err = runCLI(ctx, append([]string{"status", "--warehouse", wh}, buckets...)...)
	if err != nil || !strings.Contains(out, "Waiting: 0 for transform, 0 for load") {
		t.Errorf("status text: %v\n%s", err, out)
	}

	// run --once with a source that is down: non-zero, and the rest goes on.
	out, err = runCLI(ctx, append([]string{"run", "--once", "--retries", "0", "--alert-state", filepath.Join(t.TempDir(), "alerts.json"),
		"--source", "postgres://x:topsecret@127.0.0.1:1/none?connect_timeout=1", "--warehouse", wh}, buckets...)...)
	if err == nil || !strings.Contains(err.Error(), "ingest") || strings.Contains(out+err.Error(), "topsecret") {
		t.Errorf("run --once with the source down: %v\n%s", err, out)
	}
	if !strings.Contains(out, "load") {
		t.Errorf("load did not run after ingest failed:\n%s", out)
	}

	if out, err := runCLI(ctx, "demo", "--clean", "--dir", dir); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("demo --clean: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.json")); !os.IsNotExist(err) {
		t.Errorf("demo --clean left the demo's alert state: %v", err)
	}
}

func TestMissingConfiguration(t *testing.T) {
	for _, v := range []string{config.EnvSource, config.EnvWarehouse} {
		t.Setenv(v, "")
	}
	for _, args := range [][]string{{"ingest"}, {"run", "--once"}, {"load"}} {
		if _, err := runCLI(context.Background(), args...); err == nil || !strings.Contains(err.Error(), "required") {
			t.Errorf("%v without configuration: %v", args, err)
		}
	}
}

// TestStageCommands runs ingest, transform and load one by one, as an
// operator (or cron) would.
func TestStageCommands(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	if _, err := runCLI(ctx, "seed", "--source", sb.Config.SourceURL, "--sales-orders", "200"); err != nil {
		t.Fatal(err)
	}
	in, out := []string{"--ingest-bucket", sb.Config.IngestBucket}, []string{"--processed-bucket", sb.Config.ProcessedBucket}
	steps := []struct {
		args []string
		want []string
	}{
		{append([]string{"ingest", "--source", sb.Config.SourceURL}, in...), []string{"batch 000000000001", "sales_order", "200"}},
		{append(append([]string{"transform"}, in...), out...), []string{"000000000001", "fact_sales_order", "200"}},
		{append([]string{"load", "--warehouse", sb.Config.WarehouseURL}, out...), []string{"000000000001", "fact_sales_order", "200"}},
		{append([]string{"ingest", "--source", sb.Config.SourceURL}, in...), []string{"nothing new"}},
	}
	for _, s := range steps {
		got, err := runCLI(ctx, s.args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", s.args, err, got)
		}
		for _, w := range s.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s output lacks %q:\n%s", s.args[0], w, got)
			}
		}
	}
	if _, err := runCLI(ctx, "load", "--warehouse", "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1", "--processed-bucket", sb.Config.ProcessedBucket); err == nil {
		t.Error("load into an unreachable warehouse succeeded")
	}
}

// TestLookbackIsValidated: the flag is checked as its environment
// variable is, before anything runs.
func TestLookbackIsValidated(t *testing.T) {
	for _, args := range [][]string{
		{"ingest", "--lookback", "-5m"},
		{"ingest", "--lookback", "0"},
		{"run", "--once", "--lookback", "0s"},
	} {
		var stderr strings.Builder
		full := append(args, "--source", "postgres://u@127.0.0.1:1/x", "--ingest-bucket", t.TempDir())
		if code := execute(context.Background(), full, &stderr); code == 0 || !strings.Contains(stderr.String(), "want a positive duration") {
			t.Errorf("%v exited %d with %q", args, code, stderr.String())
		}
	}
	t.Setenv(config.EnvLookback, "-5m")
	if _, err := runCLI(context.Background(), "ingest", "--source", "postgres://u@127.0.0.1:1/x"); err == nil ||
		!strings.Contains(err.Error(), config.EnvLookback) {
		t.Errorf("a negative %s: %v", config.EnvLookback, err)
	}
}

func TestExitCodes(t *testing.T) {
	var stderr strings.Builder
	if code := execute(context.Background(), []string{"--help"}, &stderr); code != 0 {
		t.Errorf("--help exited %d", code)
	}
	code := execute(context.Background(), []string{"ingest", "--source", "postgres://u:s3cr3t@127.0.0.1:1/x?connect_timeout=1", "--ingest-bucket", t.TempDir()}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "sandstone: ") || strings.Contains(stderr.String(), "s3cr3t") {
		t.Errorf("failed ingest exited %d with %q", code, stderr.String())
	}
	if code := execute(context.Background(), []string{"no-such-command"}, &stderr); code != 1 {
		t.Errorf("an unknown command exited %d", code)
	}
}

// TestAuditCommand: exit 0 when the source and the lake agree, 1 with the
// drift named, 2 when it cannot audit, 3 when a repair landed; --json for
// scripts.
func TestAuditCommand(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	src, in := sb.Config.SourceURL, []string{"--ingest-bucket", sb.Config.IngestBucket}
	if _, err := runCLI(ctx, "seed", "--source", src, "--sales-orders", "100"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(ctx, append([]string{"ingest", "--source", src}, in...)...); err != nil {
		t.Fatal(err)
	}
	audit := func(extra ...string) (string, int) {
		var stderr strings.Builder
		var stdout strings.Builder
		root := newRoot()
		root.SetOut(&stdout)
		root.SetErr(&stderr)
		root.SetArgs(append(append([]string{"audit", "--source", src}, in...), extra...))
		code := 0
		if err := root.ExecuteContext(ctx); err != nil {
			code = 1
			var c codedError
			if errors.As(err, &c) {
				code = c.code
			}
		}
		return stdout.String(), code
	}
	if out, code := audit(); code != 0 || !strings.Contains(out, "agree") {
		t.Fatalf("clean audit exited %d:\n%s", code, out)
	}
	pgtest.Exec(t, src, `DELETE FROM payment WHERE payment_id = 7;
		UPDATE sales_order SET units_sold = 1, last_updated = last_updated - interval '3 days' WHERE sales_order_id = 5`)
	out, code := audit("--json")
	var r struct {
		Drift  bool `json:"drift"`
		Tables map[string]struct {
			Missing int64 `json:"missing"`
			Deleted int64 `json:"deleted"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if code != 1 || !r.Drift || r.Tables["payment"].Deleted != 1 || r.Tables["sales_order"].Missing != 1 || len(r.Tables) != 11 {
		t.Fatalf("drift: exit %d, %+v", code, r)
	}
	if out, _ := audit(); !strings.Contains(out, "deleted from payment: ids 7") || !strings.Contains(out, "missing from sales_order: ids 5") {
		t.Errorf("audit text does not name the ids:\n%s", out)
	}
	// --repair mends it; the pipeline takes the repair on; the warehouse
	// then agrees with the lake, until someone edits it by hand.
	out, code = runCode(ctx, append(append([]string{"audit", "--source", src}, in...), "--repair")...)
	if code != 3 || !strings.Contains(out, "Repaired in ingested batch 000000000002: 1 rows, 1 tombstones") ||
		!strings.Contains(out, "sandstone: drift found and repaired in ingested batch 000000000002 (1 rows, 1 tombstones)") ||
		strings.Contains(out, "sandstone: drift found\n") {
		t.Fatalf("repair exited %d (want 3, saying what it repaired):\n%s", code, out)
	}
	wh := []string{"--warehouse", sb.Config.WarehouseURL, "--processed-bucket", sb.Config.ProcessedBucket}
	if out, err := runCLI(ctx, append(append([]string{"run", "--once", "--source", src}, in...), wh...)...); err != nil {
		t.Fatalf("run after the repair: %v\n%s", err, out)
	}
	if out, code := audit(wh...); code != 0 || !strings.Contains(out, "The source, the lake and the warehouse agree.") {
		t.Fatalf("audit after the repair exited %d:\n%s", code, out)
	}
	pgtest.Exec(t, sb.Config.WarehouseURL, "UPDATE dim_design SET design_name = 'edited' WHERE design_id = (SELECT min(design_id) FROM dim_design)")
	if out, code := audit(wh...); code != 1 || !strings.Contains(out, "warehouse dim_design 0 missing, 0 duplicated, 1 stale") {
		t.Errorf("audit of an edited warehouse exited %d:\n%s", code, out)
	}
	var stderr strings.Builder
	if code := execute(ctx, []string{"audit", "--source", "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1", "--ingest-bucket", t.TempDir()}, &stderr); code != 2 {
		t.Errorf("an audit of an unreachable source exited %d: %s", code, stderr.String())
	}
	if code := execute(ctx, []string{"audit", "--source", src, "--lookback", "-1m"}, &stderr); code != 2 {
		t.Errorf("an audit with a bad lookback exited %d", code)
	}
}
