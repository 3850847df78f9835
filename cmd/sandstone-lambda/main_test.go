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
	logs *bytes.Buffer
}

func start(t *testing.T, bootstrap, rie string, env []string) function {
	f := function{addr: freeAddr(t), logs: &bytes.Buffer{}}
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
		if !strings.Contains(f.logs.String(), fmt.Sprintf(`"Stage":%q`, s.stage)) {
			t.Errorf("%s: no EMF metrics line in the logs:\n%s", s.stage, f.logs)
		}
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
