// Package lambdatest runs the real Lambda bootstrap (cmd/sandstone-lambda)
// under the AWS Lambda Runtime Interface Emulator, for tests that invoke a
// function over HTTP as Lambda does.
package lambdatest

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BootstrapPackage is the bootstrap's import path.
const BootstrapPackage = "github.com/sandstone-data/sandstone/cmd/sandstone-lambda"

// Build compiles the bootstrap (as for Lambda, but for this machine) and
// the emulator (a tool of this module) into a new directory, readable and
// executable by every user (so that Options.AsNobody can run them).
func Build(t *testing.T) (bootstrap, rie string) {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's directories are private to the user running the test.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil { // #nosec G302 -- test binaries, run by nobody
			t.Fatal(err)
		}
	}
	bootstrap, rie = filepath.Join(dir, "bootstrap"), filepath.Join(dir, "aws-lambda-rie")
	for _, args := range [][]string{
		{"build", "-tags", "lambda.norpc", "-o", bootstrap, BootstrapPackage},
		{"build", "-o", rie, "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"},
	} {
		cmd := exec.Command("go", args...) // #nosec G204 -- fixed arguments
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	return bootstrap, rie
}

// FreeAddr is a free 127.0.0.1:PORT.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// Function is the bootstrap running under the emulator.
type Function struct {
	Addr string
	Logs *SyncBuffer
}

// SyncBuffer is a buffer that a writer in another goroutine (the
// emulator's exec, a command, concurrent loggers) may fill while the test
// reads it through String. The emulator's lines may arrive after its
// response: wait for one with WaitFor.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p (the emulator's output), safe for concurrent use.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is the output so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines are the JSON log lines of the output for which match holds.
func (f Function) Lines(match func(line map[string]any) bool) []map[string]any {
	var found []map[string]any
	for _, l := range strings.Split(f.Logs.String(), "\n") {
		i := strings.Index(l, "{")
		if i < 0 || !strings.HasSuffix(strings.TrimSpace(l), "}") {
			continue
		}
		var line map[string]any
		if json.Unmarshal([]byte(l[i:]), &line) == nil && match(line) {
			found = append(found, line)
		}
	}
	return found
}

// WaitTimeout is how long WaitFor waits for a line. A line is written
// when the function's process gets to it, which on a busy machine may be
// well after the response: only the deadline, not the check, is a guess.
const WaitTimeout = 2 * time.Minute

// WaitFor returns the JSON log lines for which match holds once there are
// at least n, polling the output until WaitTimeout has passed.
func (f Function) WaitFor(t *testing.T, what string, n int, match func(line map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		if found := f.Lines(match); len(found) >= n {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d lines after %s:\n%s", what, n, WaitTimeout, f.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Options say how the function's process runs.
type Options struct {
	// Env is the function's environment. With Exact it is all of it (as on
	// Lambda, where the process sees the function's variables and the
	// runtime's); otherwise it is added to the test's own environment.
	Env   []string
	Exact bool
	// Dir is the working directory ("" for the test's).
	Dir string
	// AsNobody runs the emulator and the bootstrap as user nobody (65534)
	// when the test runs as root, for whom file modes stop nothing.
	AsNobody bool
}

// Start starts the bootstrap under the emulator and waits for its invoke
// API; the process is killed when the test ends.
func Start(t *testing.T, bootstrap, rie string, o Options) Function {
	t.Helper()
	f := Function{Addr: FreeAddr(t), Logs: &SyncBuffer{}}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", f.Addr,
		"--runtime-api-address", FreeAddr(t), bootstrap) // #nosec G204 -- binaries this test built
	if o.Exact {
		cmd.Env = append([]string{}, o.Env...)
	} else {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	cmd.Env = append(cmd.Env, "AWS_LAMBDA_FUNCTION_TIMEOUT=120")
	cmd.Dir = o.Dir
	if o.AsNobody && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	cmd.Stdout, cmd.Stderr = f.Logs, f.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", f.Addr)
		if err == nil {
			_ = c.Close()
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator did not start:\n%s", f.Logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Invoke calls the function over the emulator's invoke API and decodes its
// response into resp; it returns the body as it came.
func (f Function) Invoke(t *testing.T, event []byte, resp any) string {
	t.Helper()
	url := "http://" + f.Addr + "/2015-03-31/functions/function/invocations"
	r, err := http.Post(url, "application/json", bytes.NewReader(event)) // #nosec G107 -- local emulator
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Body.Close() }()
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, resp)
	return string(body)
}

// Event reads an event of internal/ops/lambdafn/testdata, with BUCKET replaced
// by bucket; root is the path of the repository's root.
func Event(t *testing.T, root, name, bucket string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "internal", "ops", "lambdafn", "testdata", name)) // #nosec G304 -- test data
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "BUCKET", bucket))
}
