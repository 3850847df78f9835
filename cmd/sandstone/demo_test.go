package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
)

// cancelOn is an output that cancels a context once the output holds a
// text: a user pressing Ctrl-C at that point.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.buf.Write(p)
	if c.text != "" && strings.Contains(c.buf.String(), c.text) {
		c.cancel()
	}
	return n, err
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// TestDemoInterrupted: Ctrl-C while the servers start, or while the demo
// seeds, stops the demo's servers, says how to remove what it made, exits
// 130 and dumps no initdb output.
func TestDemoInterrupted(t *testing.T) {
	for _, tc := range []struct{ name, at, want string }{
		{"while starting", "Starting throwaway PostgreSQL", "Interrupted. Remove what was made with"},
		{"while seeding", "Seeding a synthetic", "Interrupted: the demo's servers are stopped (cleanly)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			t.Cleanup(func() { _ = sandbox.Clean(dir) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &cancelOn{text: tc.at, cancel: cancel}
			root := newRoot()
			root.SetOut(out)
			code := executeRoot(ctx, root, []string{"demo", "--dir", dir, "--sales-orders", "20000"}, out)
			got := out.String()
			if code != 130 || !strings.Contains(got, tc.want) || !strings.Contains(got, "demo --clean --dir "+dir) {
				t.Errorf("exit %d:\n%s", code, got)
			}
			for _, dump := range []string{"initdb", "pg_ctl", "postgres.log", "LOG:"} {
				if strings.Contains(got, dump) {
					t.Errorf("the output holds %q:\n%s", dump, got)
				}
			}
			if sandbox.Running(dir) {
				t.Error("a demo server still runs after the interrupt")
			}
		})
	}
}

// demoWhatNext checks the demo's closing "what next" block: it puts the
// program on PATH and its export lines, applied, make status and run work
// with no flags at all, run keeping its alert state in the demo's dir.
func demoWhatNext(t *testing.T, out, dir string) {
	t.Helper()
	bin, _ := filepath.Abs(filepath.Dir(os.Args[0]))
	if !strings.Contains(out, "  export PATH=\""+bin+":$PATH\"\n") || !strings.Contains(out, "\n  "+filepath.Base(os.Args[0])+" status ") {
		t.Errorf("the demo does not put %s on PATH, or names the program by its path after:\n%s", bin, out)
	}
	if !strings.Contains(out, " run --metrics-addr 127.0.0.1:9464 ") || !strings.Contains(out, "open http://127.0.0.1:9464/") {
		t.Errorf("the demo does not say how to open the status page:\n%s", out)
	}
	exports := regexp.MustCompile(`(?m)^  export (SANDSTONE_[A-Z_]+)='([^']*)'$`).FindAllStringSubmatch(out, -1)
	if len(exports) != 5 {
		t.Fatalf("want 5 export lines after 'What next', got %d:\n%s", len(exports), out)
	}
	for _, e := range exports {
		t.Setenv(e[1], e[2])
	}
	if got, code := runCode(context.Background(), "status"); code != 0 || !strings.Contains(got, "Waiting: 0 for transform, 0 for load") {
		t.Errorf("status with the demo's exports: exit %d\n%s", code, got)
	}
	if got, code := runCode(context.Background(), "run", "--once"); code != 0 {
		t.Errorf("run --once with the demo's exports: exit %d\n%s", code, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.json")); err != nil {
		t.Errorf("run with the demo's exports kept its alert state elsewhere than the demo's dir: %v", err)
	}
}

// TestDemoPortTaken: a port the demo kept from its last run that is now
// taken stops the demo at once, naming the port and what to do.
func TestDemoPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	dir := filepath.Join(t.TempDir(), "demo")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ports.json"), fmt.Appendf(nil, `{"source":%d}`, port), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sandbox.Clean(dir) })
	out, code := runCode(context.Background(), "demo", "--dir", dir, "--sales-orders", "20")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("port %d is taken", port)) || !strings.Contains(out, "demo --clean --dir "+dir) {
		t.Errorf("demo on a taken port exited %d:\n%s", code, out)
	}
	if sandbox.Running(dir) {
		t.Error("a demo server runs after the demo refused")
	}
	if p := sandbox.SavedPorts(dir); p.Source != port {
		t.Errorf("the demo forgot its port after refusing: %+v", p)
	}
}

// readmeSQL checks that every SQL example of the README runs as written
// against the demo's warehouse, and that the payment-history example shows
// a payment with more than one version.
func readmeSQL(t *testing.T, warehouseURL string) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 4 {
		t.Fatalf("only %d SQL examples in the README", len(blocks))
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, warehouseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for _, b := range blocks {
		rows, err := conn.Query(ctx, b[1])
		n := 0
		for err == nil && rows.Next() {
			n++
		}
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			t.Errorf("README example fails: %v\n%s", err, b[1])
			continue
		}
		if strings.Contains(b[1], "FROM fact_payment") && n < 2 {
			t.Errorf("the payment-history example shows %d versions, want 2 or more:\n%s", n, b[1])
		}
	}
}
