package main

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
)

// closedPort is a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestStatusWhenItCannotSee: status at a warehouse it cannot read (a wrong
// password, a missing database, a closed port) exits 1, leads with the
// problem, and says "unknown" (JSON null) for what it could not read, not
// 0, while the buckets' counts it could read stay; with nothing
// configured, it exits 1 naming the flags and variables.
func TestStatusWhenItCannotSee(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	if _, err := runCLI(ctx, "seed", "--source", sb.Config.SourceURL, "--sales-orders", "20"); err != nil {
		t.Fatal(err)
	}
	buckets := []string{"--ingest-bucket", sb.Config.IngestBucket, "--processed-bucket", sb.Config.ProcessedBucket}
	if out, err := runCLI(ctx, append([]string{"run", "--once", "--source", sb.Config.SourceURL, "--warehouse", sb.Config.WarehouseURL,
		"--alert-state", filepath.Join(t.TempDir(), "alerts.json")}, buckets...)...); err != nil {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	const pw = "s3cret-pw"
	good, err := sb.Warehouse.AddPasswordRole(ctx, "sandstone", pw, "warehouse")
	if err != nil {
		t.Fatal(err)
	}
	missing, err := sb.Warehouse.AddPasswordRole(ctx, "sandstone", pw, "no_such_db")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, url, want string }{
		{"wrong password", strings.Replace(good, pw, "wrong-"+pw, 1), "password authentication failed"},
		{"missing database", missing, `database "no_such_db" does not exist`},
		{"closed port", "postgres://sandstone:" + pw + "@" + closedPort(t) + "/warehouse?sslmode=disable", "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"status", "--warehouse", c.url, "--alert-state", filepath.Join(t.TempDir(), "none.json")}, buckets...)
			var stdout, stderr strings.Builder
			root := newRoot()
			root.SetOut(&stdout)
			code := executeRoot(ctx, root, args, &stderr)
			out := stdout.String()
			first, _, _ := strings.Cut(out, "\n")
			if code != 1 || !strings.HasPrefix(first, "problem: warehouse: ") || !strings.Contains(first, c.want) {
				t.Errorf("status exited %d, first line %q:\n%s%s", code, first, out, stderr.String())
			}
			for _, want := range []string{"Batches: ingested 1, processed 1, loaded unknown", "Waiting: 0 for transform, unknown for load", "Warehouse rows: unknown"} {
				if !strings.Contains(out, want) {
					t.Errorf("status lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(stderr.String(), "sandstone: status: warehouse: ") || strings.Contains(out+stderr.String(), pw) {
				t.Errorf("stderr does not name the problem, or the password shown:\n%s", stderr.String())
			}

			stdout.Reset()
			stderr.Reset()
			root = newRoot()
			root.SetOut(&stdout)
			code = executeRoot(ctx, root, append(args, "--json"), &stderr)
			var st map[string]any
			if err := json.Unmarshal([]byte(stdout.String()), &st); err != nil || code != 1 {
				t.Fatalf("status --json exited %d (%v):\n%s%s", code, err, stdout.String(), stderr.String())
			}
			problems, _ := st["problems"].([]any)
			if len(problems) != 1 || !strings.Contains(problems[0].(string), c.want) ||
				st["loaded_batch"] != nil || st["pending_load"] != nil || st["ingested_batch"] != 1.0 || st["pending_transform"] != 0.0 {
				t.Errorf("status --json: %s", stdout.String())
			}
		})
	}

	// Nothing configured: no warehouse, no bucket where the defaults point.
	t.Chdir(t.TempDir())
	for _, v := range []string{config.EnvWarehouse, config.EnvIngestBucket, config.EnvProcessedBucket} {
		t.Setenv(v, "")
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		out, code := runCode(ctx, append(args, "--alert-state", "none.json")...)
		if code != 1 || !strings.Contains(out, "nothing configured") || !strings.Contains(out, "--warehouse or SANDSTONE_WAREHOUSE_URL") ||
			!strings.Contains(out, "--ingest-bucket or SANDSTONE_INGEST_BUCKET") {
			t.Errorf("%v with nothing configured exited %d:\n%s", args, code, out)
		}
	}
}
