package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/lambdafn"
	"github.com/sandstone-data/sandstone/internal/pgtest"
	"github.com/sandstone-data/sandstone/internal/s3test"
	"github.com/sandstone-data/sandstone/internal/totesys"
	"github.com/sandstone-data/sandstone/internal/warehouse"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// build compiles the bootstrap (as for Lambda, but for this machine) and
// the AWS Lambda Runtime Interface Emulator (a tool of this module).
func build(t *testing.T) (bootstrap, rie string) {
	dir := t.TempDir()
	bootstrap, rie = filepath.Join(dir, "bootstrap"), filepath.Join(dir, "aws-lambda-rie")
	for _, args := range [][]string{
		{"build", "-tags", "lambda.norpc", "-o", bootstrap, "."},
		{"build", "-o", rie, "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	return bootstrap, rie
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// function is the bootstrap running under the emulator.
type function struct {
	addr string
	logs *syncBuffer
}

// syncBuffer holds the emulator's output. exec's goroutine copies it in
// while the test reads it, and the function's lines may arrive after its
// response: read it only through String, and wait for a line with waitFor.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor returns the JSON log lines for which match holds once there are
// at least n, polling the output until a deadline.
func (f function) waitFor(t *testing.T, what string, n int, match func(line map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found []map[string]any
		for _, l := range strings.Split(f.logs.String(), "\n") {
			i := strings.Index(l, "{")
			if i < 0 || !strings.HasSuffix(strings.TrimSpace(l), "}") {
				continue
			}
			var line map[string]any
			if json.Unmarshal([]byte(l[i:]), &line) == nil && match(line) {
				found = append(found, line)
			}
		}
		if len(found) >= n {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d lines after 30 s:\n%s", what, len(found), n, f.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, bootstrap, rie string, env []string) function {
	f := function{addr: freeAddr(t), logs: &syncBuffer{}}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", f.addr,
		"--runtime-api-address", freeAddr(t), bootstrap) // #nosec G204 -- binaries this test built
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "AWS_LAMBDA_FUNCTION_TIMEOUT=120")
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", f.addr)
		if err == nil {
			_ = c.Close()
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator did not start:\n%s", f.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// invoke calls the function over the emulator's invoke API.
func (f function) invoke(t *testing.T, event []byte) (lambdafn.Response, string) {
	url := "http://" + f.addr + "/2015-03-31/functions/function/invocations"
	resp, err := http.Post(url, "application/json", bytes.NewReader(event)) // #nosec G107 -- local emulator
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var r lambdafn.Response
	_ = json.Unmarshal(body, &r)
	return r, string(body)
}

func testdata(t *testing.T, name, bucket string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "lambdafn", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "BUCKET", bucket))
}

// TestBootstrapUnderEmulator runs the real bootstrap under the Lambda
// Runtime Interface Emulator, one function per stage, invoked over HTTP with
// real event JSON, from a seeded source to a loaded warehouse.
func TestBootstrapUnderEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	bootstrap, rie := build(t)
	s3 := s3test.Start(t)
	source, wh := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if _, err := totesys.Seed(context.Background(), source, totesys.SeedOptions{SalesOrders: 500, RandomSeed: 3}); err != nil {
		t.Fatal(err)
	}
	env := []string{
		config.EnvSource + "=" + source,
		config.EnvWarehouse + "=" + wh,
		config.EnvIngestBucket + "=" + s3.CreateBucket(t, "ingest"),
		config.EnvProcessedBucket + "=" + s3.CreateBucket(t, "processed"),
	}
	steps := []struct{ stage, event, bucket string }{
		{"ingest", "scheduler.json", ""},
		{"transform", "s3-put.json", "ingest"},
		{"load", "s3-put.json", "processed"},
	}
	for _, s := range steps {
		f := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"="+s.stage))
		resp, body := f.invoke(t, testdata(t, s.event, s.bucket))
		if resp.Stage != s.stage || len(resp.Batches) != 1 {
			t.Fatalf("%s: response %s\nlogs:\n%s", s.stage, body, f.logs)
		}
		f.waitFor(t, s.stage+" EMF metrics line", 1, func(l map[string]any) bool { return l["Stage"] == s.stage && l["_aws"] != nil })
		// A repeated event finds nothing left to do.
		if again, body := f.invoke(t, testdata(t, s.event, s.bucket)); len(again.Batches) != 0 {
			t.Fatalf("%s repeated: %s", s.stage, body)
		}
	}
	counts, err := warehouse.Counts(context.Background(), wh, "public")
	if err != nil {
		t.Fatal(err)
	}
	if want := pgtest.QueryInt(t, source, "SELECT count(*) FROM payment"); counts["fact_payment"] != want {
		t.Fatalf("fact_payment %d rows, source has %d payments", counts["fact_payment"], want)
	}
}

// TestAuditUnderEmulator runs the audit function's bootstrap under the
// emulator with the schedule's payload: after an ingest the source and the
// bucket agree; a row deleted from the source is drift, in the response
// and in the EMF line (DriftDeleted 1).
func TestAuditUnderEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	bootstrap, rie := build(t)
	s3 := s3test.Start(t)
	source := pgtest.NewDatabase(t)
	if _, err := totesys.Seed(context.Background(), source, totesys.SeedOptions{SalesOrders: 200, RandomSeed: 5}); err != nil {
		t.Fatal(err)
	}
	env := []string{config.EnvSource + "=" + source, config.EnvIngestBucket + "=" + s3.CreateBucket(t, "ingest")}
	ingest := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"=ingest"))
	if resp, body := ingest.invoke(t, testdata(t, "scheduler.json", "")); len(resp.Batches) != 1 {
		t.Fatalf("ingest: %s\nlogs:\n%s", body, ingest.logs)
	}

	f := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"="+lambdafn.StageAudit))
	isAuditEMF := func(l map[string]any) bool { return l["Stage"] == lambdafn.StageAudit && l["_aws"] != nil }
	resp, body := f.invoke(t, testdata(t, "scheduler-audit.json", ""))
	if resp.Stage != lambdafn.StageAudit || resp.Audit == nil || resp.Audit.Drift || len(resp.Audit.Tables) != 11 {
		t.Fatalf("clean audit: %s\nlogs:\n%s", body, f.logs)
	}
	emf := f.waitFor(t, "the clean audit's EMF line", 1, isAuditEMF)
	if emf[0]["DriftMissing"] != 0.0 || emf[0]["DriftDeleted"] != 0.0 || emf[0]["AuditSucceeded"] != 1.0 {
		t.Fatalf("clean audit EMF line %v", emf[0])
	}

	pgtest.Exec(t, source, "DELETE FROM payment WHERE payment_id = (SELECT max(payment_id) FROM payment)")
	resp, body = f.invoke(t, testdata(t, "scheduler-audit.json", ""))
	if a := resp.Audit; a == nil || !a.Drift || a.Deleted != 1 || a.Missing != 0 || a.Tables["payment"]["deleted"] != 1 {
		t.Fatalf("audit after a deletion: %s\nlogs:\n%s", body, f.logs)
	}
	emf = f.waitFor(t, "the drift audit's EMF line", 2, isAuditEMF)
	if emf[1]["DriftDeleted"] != 1.0 || emf[1]["DriftMissing"] != 0.0 || emf[1]["AuditSucceeded"] != 1.0 || emf[1]["Failures"] != 0.0 {
		t.Fatalf("drift audit EMF line %v", emf[1])
	}
	warn := f.waitFor(t, "the drift line", 1, func(l map[string]any) bool { return l["msg"] == lambdafn.MsgAuditDrift })
	if warn[0]["level"] != "WARN" || warn[0]["drift"] != true || !strings.Contains(fmt.Sprint(warn[0]["summary"]), "payment 1 deleted") {
		t.Fatalf("drift line %v", warn[0])
	}
	if strings.Contains(f.logs.String(), `"level":"ERROR"`) {
		t.Fatalf("drift logged as a failure:\n%s", f.logs)
	}
}
