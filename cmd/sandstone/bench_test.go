package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchCleanAndProfiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "bench")
	if err := os.MkdirAll(filepath.Join(dir, "ingested"), 0o750); err != nil {
		t.Fatal(err)
	}
	profiles := t.TempDir()
	cpu, mem := filepath.Join(profiles, "cpu.pprof"), filepath.Join(profiles, "mem.pprof")
	out, err := runCLI(ctx, "--cpuprofile", cpu, "--memprofile", mem, "bench", "--clean", "--dir", dir)
	if err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("bench --clean: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dir, err)
	}
	for _, p := range []string{cpu, mem} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	if _, err := runCLI(ctx, "--cpuprofile", filepath.Join(profiles, "no", "such", "dir"), "bench", "--clean", "--dir", dir); err == nil {
		t.Error("a CPU profile that cannot be created was accepted")
	}
	if _, err := runCLI(ctx, "--memprofile", filepath.Join(profiles, "no", "such", "dir"), "bench", "--clean", "--dir", dir); err == nil {
		t.Error("a memory profile that cannot be created was accepted")
	}
	rss := filepath.Join(profiles, "rss")
	if _, err := runCLI(ctx, "--peak-rss-file", rss, "version"); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(rss); err != nil || len(data) < 7 || strings.Trim(string(data), "0123456789") != "" {
		t.Errorf("peak RSS file: %q, %v; want a count of bytes, at least a megabyte", data, err)
	}
	if _, err := runCLI(ctx, "--peak-rss-file", filepath.Join(profiles, "no", "such", "dir"), "version"); err == nil {
		t.Error("a peak RSS file that cannot be written was accepted")
	}
	if _, err := runCLI(ctx, "bench", "--sales-orders", "-5", "--dir", dir); err == nil {
		t.Error("a negative scale was accepted")
	}
}

// TestBenchJSONAudits runs the real `sandstone bench --json` at a small
// scale, as a built binary (its stages run as children of it), and checks
// the audit phase's figures.
func TestBenchJSONAudits(t *testing.T) {
	tmp := t.TempDir()
	exe := filepath.Join(tmp, "sandstone")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "bench")
	cmd := exec.Command(exe, "bench", "--dir", dir, "--sales-orders", "300", "--freshness-changes", "0", "--json") // #nosec G204 -- the binary just built
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var res struct {
		SourceRows          int64              `json:"source_rows"`
		StageSeconds        map[string]float64 `json:"stage_seconds"`
		IncrementalChanges  int64              `json:"incremental_changes"`
		AuditSeconds        float64            `json:"audit_seconds"`
		AuditPeakRSSMB      float64            `json:"audit_peak_rss_mb"`
		AuditExitCode       *int               `json:"audit_exit_code"`
		AuditDrift          *bool              `json:"audit_drift"`
		AuditSourceRows     int64              `json:"audit_source_rows"`
		AuditLandedVersions int64              `json:"audit_landed_versions"`
		AuditIngestRatio    float64            `json:"audit_ingest_ratio"`
		Targets             []struct {
			Name string `json:"name"`
			Met  bool   `json:"met"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	if res.AuditDrift == nil || *res.AuditDrift || res.AuditExitCode == nil || *res.AuditExitCode != 0 {
		t.Errorf("audit of a clean pipeline: drift %v, exit %v\n%s", res.AuditDrift, res.AuditExitCode, stderr.String())
	}
	if res.AuditSeconds <= 0 || res.AuditPeakRSSMB <= 1 || res.AuditPeakRSSMB > 4096 {
		t.Errorf("audit: %vs, %v MB", res.AuditSeconds, res.AuditPeakRSSMB)
	}
	if res.SourceRows <= 0 || res.AuditSourceRows != res.SourceRows || res.AuditLandedVersions < res.SourceRows+res.IncrementalChanges {
		t.Errorf("audit read %d source rows (the source has %d) and %d landed versions (%d changed)",
			res.AuditSourceRows, res.SourceRows, res.AuditLandedVersions, res.IncrementalChanges)
	}
	if res.AuditIngestRatio <= 0 || res.StageSeconds["ingest"] <= 0 {
		t.Errorf("audit / ingest %v, ingest %vs", res.AuditIngestRatio, res.StageSeconds["ingest"])
	}
	found := 0
	for _, tg := range res.Targets {
		if strings.HasPrefix(tg.Name, "audit") {
			found++
			if !tg.Met {
				t.Errorf("target %q missed", tg.Name)
			}
		}
	}
	if found != 2 {
		t.Errorf("%d audit targets, want 2: %+v", found, res.Targets)
	}
	if !strings.Contains(stderr.String(), "Audit: sandstone audit --json") {
		t.Errorf("progress lacks the audit:\n%s", stderr.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dir, err)
	}
}
