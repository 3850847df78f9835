package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// runCode runs the command line as main does and returns stdout and
// stderr (logs included) together, with the exit code.
func runCode(ctx context.Context, args ...string) (string, int) {
	var out strings.Builder
	root := newRoot()
	root.SetOut(&out)
	code := executeRoot(ctx, root, args, &out)
	return out.String(), code
}

// TestRelativeFileBucket: a relative file:// URL means the current
// directory, never the filesystem root.
func TestRelativeFileBucket(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	// Names no one has at the root: file://rel/NAME used to mean /NAME,
	// file://./NAME too.
	in, out := "sandstone-in-"+filepath.Base(cwd), "sandstone-out-"+filepath.Base(cwd)
	got, code := runCode(context.Background(), "transform", "--ingest-bucket", "file://rel/"+in, "--processed-bucket", "file://./"+out)
	t.Cleanup(func() { _, _ = os.Remove("/"+in), os.Remove("/"+out) })
	if code != 0 || !strings.Contains(got, "(nothing new)") {
		t.Fatalf("transform exited %d:\n%s", code, got)
	}
	for _, d := range []string{filepath.Join("rel", in), out} {
		if fi, err := os.Stat(filepath.Join(cwd, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s is not in the current directory: %v", d, err)
		}
	}
	for _, d := range []string{in, out} {
		if _, err := os.Stat("/" + d); err == nil {
			t.Errorf("a relative file:// URL made /%s at the filesystem root", d)
		}
	}
}

// silentServer accepts TCP connections on the loopback and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestConnectTimeout: a source or warehouse that accepts the connection and
// never answers fails the command after the default connect timeout (or
// the URL's connect_timeout), with its error kind, instead of hanging. The
// default is waited for once (ingest); the other commands show they use the
// same setting with connect_timeout=1.
func TestConnectTimeout(t *testing.T) {
	addr := silentServer(t)
	bucket := t.TempDir()
	url := "postgres://u:s3cret@" + addr + "/x"
	cases := []struct {
		name  string
		args  []string
		code  int
		want  []string
		limit time.Duration
	}{
		{"ingest", []string{"ingest", "--source", url, "--ingest-bucket", bucket}, 1,
			[]string{`error_kind=source_unreachable`, "connect timeout of 10s"}, config.DefaultConnectTimeout + 15*time.Second},
		{"ingest connect_timeout=1", []string{"ingest", "--source", url + "?connect_timeout=1", "--ingest-bucket", bucket}, 1,
			[]string{`error_kind=source_unreachable`, "connect timeout of 1s"}, config.DefaultConnectTimeout - time.Second},
		{"audit", []string{"audit", "--source", url + "?connect_timeout=1", "--ingest-bucket", bucket}, 2,
			[]string{`error_kind=source_unreachable`, "connect timeout of 1s"}, config.DefaultConnectTimeout - time.Second},
		{"load", []string{"load", "--warehouse", url + "?connect_timeout=1", "--processed-bucket", bucket}, 1,
			[]string{`error_kind=warehouse_unreachable`, "connect timeout of 1s"}, config.DefaultConnectTimeout - time.Second},
		{"status", []string{"status", "--warehouse", url + "?connect_timeout=1", "--ingest-bucket", bucket, "--processed-bucket", bucket}, 1,
			[]string{"problem: warehouse:", "connect timeout of 1s", "loaded unknown"}, config.DefaultConnectTimeout - time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { // not parallel: the commands set the default logger
			// Without a connect timeout the command would wait until this
			// context ends: a minute, well past every limit.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			out, code := runCode(ctx, append(c.args, "--log-format", "text")...)
			if took := time.Since(start); took > c.limit {
				t.Errorf("%s took %s, more than %s", c.name, took, c.limit)
			}
			if code != c.code {
				t.Errorf("%s exited %d, want %d:\n%s", c.name, code, c.code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s output lacks %q:\n%s", c.name, w, out)
				}
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("password in the output:\n%s", out)
			}
		})
	}
}

// TestConfigErrorsAreConfigInvalid: an unparsable URL and a missing URL
// are config_invalid, each with the one ERROR line every failure writes.
func TestConfigErrorsAreConfigInvalid(t *testing.T) {
	for _, v := range []string{config.EnvSource, config.EnvWarehouse} {
		t.Setenv(v, "")
	}
	bucket := t.TempDir()
	bad := "postgres://u:pw@127.0.0.1:notaport/x"
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ingest", "--source", bad, "--ingest-bucket", bucket}, 1, "source URL"},
		{[]string{"audit", "--source", bad, "--ingest-bucket", bucket}, 2, "source URL"},
		{[]string{"load", "--warehouse", bad, "--processed-bucket", bucket}, 1, "warehouse URL"},
		{[]string{"ingest", "--ingest-bucket", bucket}, 1, "--source is required: give the flag or set SANDSTONE_SOURCE_URL"},
		{[]string{"audit", "--ingest-bucket", bucket}, 2, "--source is required: give the flag or set SANDSTONE_SOURCE_URL"},
		{[]string{"load", "--processed-bucket", bucket}, 1, "--warehouse is required: give the flag or set SANDSTONE_WAREHOUSE_URL"},
		{[]string{"run", "--once", "--warehouse", bad, "--ingest-bucket", bucket, "--processed-bucket", bucket}, 1, "--source is required: give the flag or set SANDSTONE_SOURCE_URL"},
		{[]string{"run", "--once", "--source", bad, "--ingest-bucket", bucket, "--processed-bucket", bucket}, 1, "--warehouse is required: give the flag or set SANDSTONE_WAREHOUSE_URL"},
		{[]string{"ingest", "--source", bad, "--lookback", "0", "--ingest-bucket", bucket}, 1, "want a positive duration"},
		{[]string{"ingest", "--source", bad, "--capture", "logical", "--ingest-bucket", bucket}, 1, `--capture "logical": want poll`},
		{[]string{"run", "--once", "--source", bad, "--slot", "My-Slot", "--ingest-bucket", bucket, "--processed-bucket", bucket}, 1, `--slot "My-Slot": a replication slot name is 1 to 63 lowercase letters`},
		{[]string{"ingest", "--source", bad, "--publication", "", "--ingest-bucket", bucket}, 1, `--publication "": a publication name`},
		// A flag that cannot be parsed, as a variable that cannot be.
		{[]string{"ingest", "--log-format", "text", "--source", bad, "--lookback", "abc"}, 1, `invalid argument "abc" for "--lookback" flag`},
		{[]string{"audit", "--log-format", "text", "--source", bad, "--lookback", "abc"}, 2, `invalid argument "abc" for "--lookback" flag`},
		{[]string{"load", "--log-format", "text", "--warehouse", bad, "--max-duration", "soon"}, 1, `invalid argument "soon" for "--max-duration" flag`},
		{[]string{"run", "--log-format", "text", "--once", "--retries", "many"}, 1, `invalid argument "many" for "--retries" flag`},
	} {
		out, code := runCode(context.Background(), append(c.args, "--log-format", "text")...)
		stage := c.args[0]
		if code != c.code || !strings.Contains(out, c.want) ||
			strings.Count(out, "stage failed") != 1 || !strings.Contains(out, "stage="+stage) ||
			!strings.Contains(out, "error_kind=config_invalid") || strings.Contains(out, "source_unreachable") {
			t.Errorf("%v exited %d (want %d, one ERROR line of kind config_invalid with %q):\n%s", c.args, code, c.code, c.want, out)
		}
		if strings.Contains(out, ":pw@") {
			t.Errorf("%v shows the password:\n%s", c.args, out)
		}
	}
}

// TestFreshSetup: on a fresh setup load says there are no batches and
// what to run first; status says what is not there yet, creates nothing,
// and says so when the buckets and the warehouse's ledger disagree.
func TestFreshSetup(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	fresh := t.TempDir()
	in, out := filepath.Join(fresh, "ingested"), filepath.Join(fresh, "processed")
	wh := sb.Config.WarehouseURL

	// A first cycle whose ingest fails (the source is down): load has
	// nothing to load, creates no schema and gives no advice.
	failed := t.TempDir()
	got, code := runCode(ctx, "run", "--once", "--log-format", "text", "--retries", "0", "--alert-state", filepath.Join(failed, "alerts.json"),
		"--source", "postgres://u:pw@127.0.0.1:1/none?connect_timeout=1", "--warehouse", wh,
		"--ingest-bucket", filepath.Join(failed, "ingested"), "--processed-bucket", filepath.Join(failed, "processed"))
	if code != 1 || !strings.Contains(got, "has no batches yet, and ingest failed in this cycle") || strings.Contains(got, "'sandstone run'") {
		t.Errorf("a failed first cycle exited %d:\n%s", code, got)
	}
	if n := pgtest.QueryInt(t, wh, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Errorf("a failed first cycle made %d warehouse tables", n)
	}

	// status at a warehouse with no tables and buckets never written: it
	// says so and creates nothing.
	got, code = runCode(ctx, "status", "--warehouse", wh, "--ingest-bucket", in, "--processed-bucket", out)
	if code != 0 || !strings.Contains(got, "no Sandstone tables in schema public") || strings.Contains(got, "Warehouse rows:") ||
		!strings.Contains(got, "ingestion bucket: bucket file://"+in+": no batches yet") || strings.Contains(got, "problem:") {
		t.Errorf("status of a fresh setup exited %d:\n%s", code, got)
	}
	got, code = runCode(ctx, "status", "--json", "--warehouse", wh, "--ingest-bucket", in, "--processed-bucket", out)
	var st struct {
		Notes    []string         `json:"notes"`
		Rows     map[string]int64 `json:"warehouse_rows"`
		Problems []string         `json:"problems"`
	}
	if err := json.Unmarshal([]byte(got), &st); code != 0 || err != nil || len(st.Notes) != 3 || st.Rows != nil || len(st.Problems) != 0 {
		t.Errorf("status --json of a fresh setup exited %d (%v): %+v\n%s", code, err, st, got)
	}

	got, code = runCode(ctx, "load", "--warehouse", wh, "--processed-bucket", out)
	if code != 0 || !strings.Contains(got, "the processed bucket file://"+out+" has no batches yet") ||
		!strings.Contains(got, "sandstone ingest") || strings.Contains(got, "up to date") {
		t.Errorf("load of a fresh setup exited %d:\n%s", code, got)
	}

	// Once loaded, load is up to date; status at another (empty) processed
	// bucket, or a wiped one, says it disagrees with the ledger.
	if _, err := runCLI(ctx, "seed", "--source", sb.Config.SourceURL, "--sales-orders", "20"); err != nil {
		t.Fatal(err)
	}
	// audit without --repair reads only, too.
	if got, code := runCode(ctx, "audit", "--source", sb.Config.SourceURL, "--ingest-bucket", in); code != 0 {
		t.Errorf("audit of a fresh setup exited %d:\n%s", code, got)
	}
	for _, d := range []string{in, out} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("status, load or audit created %s", d)
		}
	}
	buckets := []string{"--ingest-bucket", in, "--processed-bucket", out}
	if got, err := runCLI(ctx, append([]string{"run", "--once", "--source", sb.Config.SourceURL, "--warehouse", wh,
		"--alert-state", filepath.Join(fresh, "alerts.json")}, buckets...)...); err != nil {
		t.Fatalf("run --once: %v\n%s", err, got)
	}
	if got, code := runCode(ctx, "load", "--warehouse", wh, "--processed-bucket", out); code != 0 || !strings.Contains(got, "up to date (batch 000000000001") {
		t.Errorf("load after a run exited %d:\n%s", code, got)
	}
	if got, _ := runCode(ctx, append([]string{"status", "--warehouse", wh}, buckets...)...); strings.Contains(got, "problem:") || strings.Contains(got, "note:") {
		t.Errorf("status of a loaded setup:\n%s", got)
	}
	other := filepath.Join(fresh, "other")
	got, _ = runCode(ctx, "status", "--warehouse", wh, "--ingest-bucket", in, "--processed-bucket", other)
	if !strings.Contains(got, "problem: processed bucket: the warehouse has loaded batches up to 000000000001, and the processed bucket "+other+" has none") {
		t.Errorf("status at a processed bucket never written:\n%s", got)
	}
	if err := os.MkdirAll(other, 0o750); err != nil {
		t.Fatal(err)
	}
	got, _ = runCode(ctx, "status", "--warehouse", wh, "--ingest-bucket", in, "--processed-bucket", other)
	if !strings.Contains(got, "problem: processed bucket and warehouse ledger disagree:") || !strings.Contains(got, "the bucket has no batch 1") {
		t.Errorf("status at an empty processed bucket:\n%s", got)
	}
	// The processed bucket made from another ingestion bucket: status says
	// the two disagree, as transform would refuse them.
	got, _ = runCode(ctx, "status", "--warehouse", wh, "--ingest-bucket", other, "--processed-bucket", out)
	if !strings.Contains(got, "problem: ingestion and processed buckets disagree:") || !strings.Contains(got, "the ingestion bucket has no batch 1") {
		t.Errorf("status at another ingestion bucket:\n%s", got)
	}
	// And freshness in its two parts, times labelled UTC.
	got, _ = runCode(ctx, append([]string{"status", "--warehouse", wh}, buckets...)...)
	for _, want := range []string{"behind the source:   at most ", "caught up to:        20", " UTC (the snapshot of loaded batch 000000000001",
		"source last changed: 20", "newest last_updated"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
}

// TestTwoRuns: a second `sandstone run` against the installation a first
// one runs refuses, naming the first; once the first stops, it runs.
func TestTwoRuns(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	if _, err := runCLI(ctx, "seed", "--source", sb.Config.SourceURL, "--sales-orders", "20"); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--source", sb.Config.SourceURL, "--warehouse", sb.Config.WarehouseURL,
		"--ingest-bucket", sb.Config.IngestBucket, "--processed-bucket", sb.Config.ProcessedBucket,
		"--alert-state", filepath.Join(t.TempDir(), "alerts.json"), "--audit-every", "0"}

	first, stop := context.WithCancel(ctx)
	var out1 lambdatest.SyncBuffer
	done := make(chan int)
	go func() {
		root := newRoot()
		root.SetOut(&out1)
		done <- executeRoot(first, root, append(args, "--interval", "1h"), &out1)
	}()
	// The first run has finished its first cycle when load has reported.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out1.String(), "load "); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("the first run did not finish a cycle:\n%s", out1.String())
		}
	}

	var stderr strings.Builder
	code := execute(ctx, append(args, "--once"), &stderr)
	want := fmt.Sprintf(`another sandstone run already runs against this warehouse (schema "public"): "sandstone run pid %d on `, os.Getpid())
	if code != 1 || !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "server process") {
		t.Errorf("the second run exited %d:\n%s", code, stderr.String())
	}

	stop()
	if code := <-done; code != 0 {
		t.Errorf("the first run, stopped, exited %d:\n%s", code, out1.String())
	}
	stderr.Reset()
	if code := execute(ctx, append(args, "--once"), &stderr); code != 0 {
		t.Errorf("a run after the first stopped exited %d:\n%s", code, stderr.String())
	}
}

// TestMaxDurationVariable: load --max-duration has its variable, named in
// its help and in the README, which sets the default; a bad value is
// config_invalid.
func TestMaxDurationVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "`SANDSTONE_MAX_DURATION`") {
		t.Error("the README does not list SANDSTONE_MAX_DURATION")
	}
	t.Setenv("SANDSTONE_MAX_DURATION", "7m")
	if out, code := runCode(context.Background(), "load", "--help"); code != 0 || !strings.Contains(out, "($SANDSTONE_MAX_DURATION) (default 7m0s)") {
		t.Errorf("load --help (exit %d):\n%s", code, out)
	}
	t.Setenv("SANDSTONE_MAX_DURATION", "soon")
	out, code := runCode(context.Background(), "load", "--log-format", "text", "--warehouse", "postgres://u@127.0.0.1:1/x", "--processed-bucket", t.TempDir())
	if code != 1 || !strings.Contains(out, `SANDSTONE_MAX_DURATION="soon"`) || !strings.Contains(out, "error_kind=config_invalid") {
		t.Errorf("load with a bad SANDSTONE_MAX_DURATION exited %d:\n%s", code, out)
	}
}

// TestHelp: every command a user runs has an example in its help; ingest
// says it lands batches; the README's examples use the default directories.
func TestHelp(t *testing.T) {
	for _, name := range []string{"seed", "simulate", "ingest", "transform", "load", "run", "demo", "status", "audit", "rejects"} {
		out, code := runCode(context.Background(), name, "--help")
		if code != 0 || !strings.Contains(out, "\nExamples:\n  ") {
			t.Errorf("%s --help (exit %d) has no example:\n%s", name, code, out)
		}
	}
	if out, _ := runCode(context.Background(), "ingest", "--help"); strings.Contains(out, "(one batch)") {
		t.Errorf("ingest --help says it lands one batch:\n%s", out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(readme), "./data/") {
		t.Error("the README's examples use ./data/, not the default ./sandstone-data/")
	}
}

// TestVersion: `sandstone version` and `sandstone --version` print the
// module version, the commit and the Go version, and exit 0.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := runCode(context.Background(), args...)
		if code != 0 || !strings.HasPrefix(out, "sandstone ") || !strings.Contains(out, "(commit ") ||
			!strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v exited %d: %q", args, code, out)
		}
	}
}

// TestRunEnvironment: every flag of run has its SANDSTONE_* variable,
// named in its help and in the README's configuration table; the variables
// set the defaults, and a bad value is refused as config_invalid.
func TestRunEnvironment(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	envName := regexp.MustCompile(`\$(SANDSTONE_[A-Z_]+)`)
	newRunCmd().Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "once" {
			return
		}
		m := envName.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("--%s names no SANDSTONE_* variable: %q", f.Name, f.Usage)
		} else if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("the README does not list %s (--%s)", m[1], f.Name)
		}
	})
	t.Setenv("SANDSTONE_INTERVAL", "42m")
	t.Setenv("SANDSTONE_RETRIES", "7")
	t.Setenv("SANDSTONE_BACKOFF", "3s")
	t.Setenv("SANDSTONE_METRICS_ADDR", "127.0.0.1:9999")
	t.Setenv("SANDSTONE_ALERT_STATE", "/var/lib/sandstone/alerts.json")
	out, code := runCode(context.Background(), "run", "--help")
	for _, want := range []string{`(default 42m0s)`, `(default 7)`, `(default 3s)`, `(default "127.0.0.1:9999")`, `(default "/var/lib/sandstone/alerts.json")`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("run --help (exit %d) lacks %s", code, want)
		}
	}
	t.Setenv("SANDSTONE_INTERVAL", "often")
	t.Setenv("SANDSTONE_RETRIES", "-1")
	out, code = runCode(context.Background(), "run", "--once", "--log-format", "text", "--source", "postgres://u@127.0.0.1:1/x", "--warehouse", "postgres://u@127.0.0.1:1/x")
	if code != 1 || !strings.Contains(out, `SANDSTONE_INTERVAL="often"`) || !strings.Contains(out, `SANDSTONE_RETRIES="-1"`) || !strings.Contains(out, "error_kind=config_invalid") {
		t.Errorf("run with bad variables exited %d:\n%s", code, out)
	}
}
