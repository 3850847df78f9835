package main

import (
	"context"
	"os"
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
	if _, err := runCLI(ctx, "bench", "--sales-orders", "-5", "--dir", dir); err == nil {
		t.Error("a negative scale was accepted")
	}
}
