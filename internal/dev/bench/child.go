package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
)

// StageRun is one run of one stage, as a child process of its own.
type StageRun struct {
	Stage    string
	Duration time.Duration
	// PeakRSS is the child's peak resident set size, in bytes.
	PeakRSS int64
	// SourceCPU is the CPU time the source server's processes that ended
	// while the child ran spent (its connections' backends): the load the
	// child put on the source. 0 when unknown.
	SourceCPU time.Duration
	// ExitCode is the child's exit status (-1 when a signal ended it).
	ExitCode int
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
	// source is the source server, whose CPU time each run reads.
	source server
}

func newChildren(exe string, cfg config.Config, profileDir, sourceDir string) children {
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
	return children{exe: exe, env: env, profileDir: profileDir, source: localServer(sourceDir)}
}

// child is a sandstone child process, and the file it writes its peak
// RSS to when it ends (see peakRSS).
type child struct {
	*exec.Cmd
	rssFile string
}

// command makes the child running sandstone with args.
func (c children) command(ctx context.Context, args ...string) child {
	rssFile := filepath.Join(os.TempDir(), "sandstone-bench-rss-"+strconv.FormatUint(rand.Uint64(), 36)) // #nosec G404 -- a file name
	cmd := exec.CommandContext(ctx, c.exe, append(slices.Clip(args), "--peak-rss-file", rssFile)...)     // #nosec G204 -- our own binary, with our own arguments
	cmd.Env = c.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return child{Cmd: cmd, rssFile: rssFile}
}

// peakRSS is the ended child's peak resident set size, in bytes: as it
// wrote it itself, else (it did not end cleanly, or has no /proc) as
// wait4 reported it, which on Linux also counts the bench's own peak
// before the child started (a Go parent starts a child in its own memory,
// whose high-water mark the exec hands down).
func (ch child) peakRSS() int64 {
	data, err := os.ReadFile(ch.rssFile)
	_ = os.Remove(ch.rssFile)
	if n, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil && perr == nil && n > 0 {
		return n
	}
	return peakRSS(ch.ProcessState)
}

// stage runs one stage (ingest, transform or load) to completion; phase
// names the profiles it may write.
func (c children) stage(ctx context.Context, phase, name string) (StageRun, error) {
	run, err := c.run(ctx, phase+"-"+name, nil, name)
	if err != nil {
		return run, fmt.Errorf("%s %s: %w", phase, name, err)
	}
	return run, nil
}

// run runs sandstone with args to completion, as the step profile names
// (its profiles' file names): its time, peak RSS, exit status and the
// source server's CPU time meanwhile. The child's standard output goes to
// stdout, or, when stdout is nil, with its standard error into the tail of
// output a failure reports.
func (c children) run(ctx context.Context, profile string, stdout io.Writer, args ...string) (StageRun, error) {
	if c.profileDir != "" {
		base := filepath.Join(c.profileDir, profile)
		args = append(args, "--cpuprofile", base+".cpu.pprof", "--memprofile", base+".mem.pprof")
	}
	cmd := c.command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	backends := c.source.children()
	cpu0, cpuOK := c.source.cpu()
	start := time.Now()
	err := cmd.Run()
	run := StageRun{Stage: args[0], Duration: time.Since(start), PeakRSS: cmd.peakRSS(), ExitCode: -1}
	if cmd.ProcessState != nil {
		run.ExitCode = cmd.ProcessState.ExitCode()
	}
	// The child's backends end just after it does.
	c.source.settle(backends, 5*time.Second)
	if cpu1, ok := c.source.cpu(); ok && cpuOK && cpu1 >= cpu0 {
		run.SourceCPU = cpu1 - cpu0
	}
	if err != nil {
		return run, fmt.Errorf("%w\n%s", err, config.Redact(tail(out.String(), 4000)))
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
