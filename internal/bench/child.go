package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sandstone-data/sandstone/internal/config"
)

// StageRun is one run of one stage, as a child process of its own.
type StageRun struct {
	Stage    string
	Duration time.Duration
	// PeakRSS is the child's peak resident set size, in bytes.
	PeakRSS int64
}

// children starts sandstone commands as child processes, configured for
// one sandbox through the environment, so that each stage's time and peak
// memory are its own.
type children struct {
	exe string
	env []string
	// profileDir, when set, receives a CPU and an allocation profile of
	// every stage run.
	profileDir string
}

func newChildren(exe string, cfg config.Config, profileDir string) children {
	env := []string{
		config.EnvSource + "=" + cfg.SourceURL,
		config.EnvWarehouse + "=" + cfg.WarehouseURL,
		config.EnvIngestBucket + "=" + cfg.IngestBucket,
		config.EnvProcessedBucket + "=" + cfg.ProcessedBucket,
		config.EnvWarehouseSchema + "=" + cfg.WarehouseSchema,
		config.EnvLookback + "=" + cfg.Lookback.String(),
		"SANDSTONE_LOG_LEVEL=warn",
		"SANDSTONE_LOG_FORMAT=text",
	}
	// The caller's own SANDSTONE_* settings must not point the children
	// anywhere else.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDSTONE_") {
			env = append(env, kv)
		}
	}
	return children{exe: exe, env: env, profileDir: profileDir}
}

// command makes the child running sandstone with args.
func (c children) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.exe, args...) // #nosec G204 -- our own binary, with our own arguments
	cmd.Env = c.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// stage runs one stage (ingest, transform or load) to completion; phase
// names the profiles it may write.
func (c children) stage(ctx context.Context, phase, name string) (StageRun, error) {
	args := []string{name}
	if c.profileDir != "" {
		base := filepath.Join(c.profileDir, phase+"-"+name)
		args = append(args, "--cpuprofile", base+".cpu.pprof", "--memprofile", base+".mem.pprof")
	}
	cmd := c.command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	run := StageRun{Stage: name, Duration: time.Since(start), PeakRSS: peakRSS(cmd.ProcessState)}
	if err != nil {
		return run, fmt.Errorf("%s %s: %w\n%s", phase, name, err, config.Redact(tail(out.String(), 4000)))
	}
	return run, nil
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
