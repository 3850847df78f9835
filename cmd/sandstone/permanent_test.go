package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// logLines are the JSON log lines of out (other lines are skipped).
func logLines(out string) []map[string]any {
	var lines []map[string]any
	for _, l := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestPermanentConnectFailures: a wrong password or a missing database, on
// the source or the warehouse, fails ingest, load and run --once at once
// (one attempt, however many retries run allows), with one ERROR line of
// its own kind, each message naming its stage once, and no password.
func TestPermanentConnectFailures(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	const pw = "s3cret-pw"
	role := func(db string, onWarehouse bool) string {
		srv := sb.Source
		if onWarehouse {
			srv = sb.Warehouse
		}
		u, err := srv.AddPasswordRole(ctx, "sandstone", pw, db)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	srcWrong := strings.Replace(role("totesys", false), pw, "wrong-"+pw, 1)
	srcMissing := role("no_such_db", false)
	whWrong := strings.Replace(role("warehouse", true), pw, "wrong-"+pw, 1)
	whMissing := role("no_such_db", true)
	dir := t.TempDir()
	buckets := []string{"--ingest-bucket", dir + "/in", "--processed-bucket", dir + "/out"}
	run := func(src, wh string) []string {
		return append([]string{"run", "--once", "--source", src, "--warehouse", wh, "--retries", "3", "--backoff", "10s",
			"--alert-state", dir + "/alerts.json"}, buckets...)
	}
	for _, c := range []struct {
		name, stage, kind string
		args              []string
	}{
		{"ingest wrong password", "ingest", "source_auth_failed", append([]string{"ingest", "--source", srcWrong}, buckets[:2]...)},
		{"ingest missing database", "ingest", "source_database_missing", append([]string{"ingest", "--source", srcMissing}, buckets[:2]...)},
		{"load wrong password", "load", "warehouse_auth_failed", append([]string{"load", "--warehouse", whWrong}, buckets[2:]...)},
		{"load missing database", "load", "warehouse_database_missing", append([]string{"load", "--warehouse", whMissing}, buckets[2:]...)},
		{"run source wrong password", "ingest", "source_auth_failed", run(srcWrong, sb.Config.WarehouseURL)},
		{"run source missing database", "ingest", "source_database_missing", run(srcMissing, sb.Config.WarehouseURL)},
		{"run warehouse wrong password", "run", "warehouse_auth_failed", run(sb.Config.SourceURL, whWrong)},
		{"run warehouse missing database", "run", "warehouse_database_missing", run(sb.Config.SourceURL, whMissing)},
	} {
		t.Run(c.name, func(t *testing.T) { // not parallel: the commands set the default logger
			start := time.Now()
			out, code := runCode(ctx, append(c.args, "--log-format", "json")...)
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("took %s: retried?", took)
			}
			if code == 0 {
				t.Errorf("exited 0:\n%s", out)
			}
			var errs, attempts int
			for _, l := range logLines(out) {
				switch {
				case l["level"] == "ERROR":
					errs++
					if l["error_kind"] != c.kind || l["stage"] != c.stage {
						t.Errorf("ERROR line of stage %v, kind %v; want %s, %s", l["stage"], l["error_kind"], c.stage, c.kind)
					}
				case l["msg"] == "stage started" && l["stage"] == c.stage:
					attempts++
				case l["msg"] == "stage failed; retrying":
					t.Errorf("retried: %v", l)
				}
			}
			if errs != 1 {
				t.Errorf("%d ERROR lines, want 1:\n%s", errs, out)
			}
			if c.stage != "run" && attempts != 1 {
				t.Errorf("%d attempts of %s, want 1:\n%s", attempts, c.stage, out)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Count(l, "connect to source")+strings.Count(l, "connect to warehouse") > 1 || strings.Contains(l, c.stage+": "+c.stage+":") || strings.Contains(l, "ingest: ingest:") {
					t.Errorf("a prefix said twice: %s", l)
				}
			}
			if !strings.Contains(out, "sandstone: ") || strings.Contains(out, pw) {
				t.Errorf("no final error line, or the password shown:\n%s", out)
			}
		})
	}
}
