package terraform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/lambdafn"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// terraformEnv is the environment this configuration gives each function
// (its defaults), with the references to what only AWS knows (bucket names,
// secret ARNs) replaced by what the test made. Nothing else is added: a
// variable that the test cannot stand in for fails the test.
func terraformEnv(t *testing.T, stands map[string]string) map[string][]string {
	t.Helper()
	m, err := parseModule(mainFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range m.instances("aws_lambda_function") {
		vars := f.block("environment").strMap("variables")
		stage := vars[envStage]
		for name, v := range vars {
			for ref, value := range stands {
				v = strings.ReplaceAll(v, ref, value)
			}
			if strings.Contains(v, "${") {
				t.Fatalf("%s: %s = %q refers to something the test does not stand in for", f.addr, name, v)
			}
			out[stage] = append(out[stage], name+"="+v)
		}
	}
	if len(out) != 4 {
		t.Fatalf("functions for stages %v, want ingest, transform, load and audit", out)
	}
	return out
}

// secretsManager answers GetSecretValue (the AWS JSON protocol) with the
// given secret strings by id.
func secretsManager(t *testing.T, secrets map[string]string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in struct{ SecretId string }
		value, ok := secrets[func() string { _ = json.Unmarshal(body, &in); return in.SecretId }()]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"__type":"ResourceNotFoundException","message":"no secret %q"}`, in.SecretId)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"ARN": in.SecretId, "Name": in.SecretId, "SecretString": value, "VersionId": "v1"})
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// readOnlyDir is a working directory the function cannot write to: mode
// 0555, and (when the test runs as root, whom modes do not stop) the
// function runs as nobody. It checks that a process run as the function's
// user indeed cannot create a file there.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil { // #nosec G302 -- reachable by nobody
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil { // #nosec G302 -- read-only on purpose
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) }) // #nosec G302 -- so that the test can remove it
	probe := exec.Command("/bin/sh", "-c", "echo x > probe")
	probe.Dir = dir
	if os.Geteuid() == 0 {
		probe.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	if out, err := probe.CombinedOutput(); err == nil {
		t.Fatalf("the function's user can write to %s: %s", dir, out)
	}
	return dir
}

// TestFunctionsWithTerraformsEnvironment runs the real bootstrap of each of
// the four functions under the Lambda Runtime Interface Emulator with
// exactly the environment this configuration declares for it (as the
// Lambda service adds: region, credentials, and the endpoints of the
// in-process S3 and Secrets Manager that stand in for AWS), from a
// read-only working directory, against real PostgreSQL: ingest, transform,
// load and the audit, with data flowing from a seeded totesys to the
// warehouse, nothing written under the working directory, and every write
// allowed by the buckets' write-once policy (s3test.WriteOnce).
func TestFunctionsWithTerraformsEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	bootstrap, rie := lambdatest.Build(t)
	// The buckets' policy of s3.tf, enforced: every write of the stages
	// must carry If-None-Match, and none may delete.
	s3 := s3test.Start(t, s3test.WriteOnce())
	const ingestion, processed = "sandstone-ingestion-test", "sandstone-processed-test"
	s3.CreateBucket(t, ingestion)
	s3.CreateBucket(t, processed)
	source, wh := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if _, err := synth.Seed(context.Background(), source, synth.SeedOptions{SalesOrders: 300, RandomSeed: 7}); err != nil {
		t.Fatal(err)
	}
	const sourceARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:sandstone/source-db-AbCdEf"
	const warehouseARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:sandstone/warehouse-db-AbCdEf"
	sm := secretsManager(t, map[string]string{
		sourceARN:    fmt.Sprintf(`{"url": %q}`, source),
		warehouseARN: fmt.Sprintf(`{"url": %q}`, wh),
	})
	env := terraformEnv(t, map[string]string{
		"${aws_s3_bucket.ingestion.bucket}":          ingestion,
		"${aws_s3_bucket.processed.bucket}":          processed,
		"${aws_secretsmanager_secret.source.arn}":    sourceARN,
		"${aws_secretsmanager_secret.warehouse.arn}": warehouseARN,
	})
	cwd := readOnlyDir(t)
	tmp := t.TempDir()                           // Lambda's /tmp
	if err := os.Chmod(tmp, 0o777); err != nil { // #nosec G302 -- the function's user writes here
		t.Fatal(err)
	}
	runtime := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC", "TMPDIR=" + tmp, "LAMBDA_TASK_ROOT=" + cwd,
		"AWS_REGION=eu-west-2", "AWS_DEFAULT_REGION=eu-west-2",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_SESSION_TOKEN=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + s3.Endpoint, "AWS_ENDPOINT_URL_SECRETS_MANAGER=" + sm,
	}
	steps := []struct{ stage, event, bucket string }{
		{"ingest", "scheduler.json", ""},
		{"transform", "s3-put.json", ingestion},
		{"load", "s3-put.json", processed},
		{"audit", "scheduler-audit.json", ""},
	}
	root := filepath.Join("..", "..")
	for _, s := range steps {
		f := lambdatest.Start(t, bootstrap, rie, lambdatest.Options{
			Env:   append(append([]string{"AWS_LAMBDA_FUNCTION_NAME=sandstone-" + s.stage}, runtime...), env[s.stage]...),
			Exact: true, Dir: cwd, AsNobody: true})
		var resp lambdafn.Response
		body := f.Invoke(t, lambdatest.Event(t, root, s.event, s.bucket), &resp)
		if s.stage == "audit" {
			if resp.Audit == nil || resp.Audit.Drift || len(resp.Audit.Tables) != 11 {
				t.Fatalf("audit: %s\nlogs:\n%s", body, f.Logs)
			}
		} else if resp.Stage != s.stage || len(resp.Batches) != 1 {
			t.Fatalf("%s: response %s\nlogs:\n%s", s.stage, body, f.Logs)
		}
		// The EMF line is the run's last: once it is there, every line of
		// the run is, and the absence of ERROR lines means something.
		f.WaitFor(t, s.stage+" EMF metrics line", 1, func(l map[string]any) bool { return l["Stage"] == s.stage && l["_aws"] != nil })
		if errs := f.Lines(func(l map[string]any) bool { return l["level"] == "ERROR" }); len(errs) > 0 {
			t.Fatalf("%s logged errors: %v", s.stage, errs)
		}
	}
	if r := s3.Refusals(); len(r) != 0 {
		t.Fatalf("the buckets' policy refused writes of the stages: %v", r)
	}
	w, err := warehouse.Open(context.Background(), wh, "public")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	counts, err := w.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := pgtest.QueryInt(t, source, "SELECT count(*) FROM sales_order"); counts["fact_sales_order"] != want || want == 0 {
		t.Fatalf("fact_sales_order %d rows, source has %d orders", counts["fact_sales_order"], want)
	}
	if entries, err := os.ReadDir(cwd); err != nil || len(entries) != 0 {
		t.Fatalf("the working directory holds %v (%v)", entries, err)
	}
}
