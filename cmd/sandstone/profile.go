package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// addProfileFlags gives root the hidden persistent --cpuprofile,
// --memprofile and --peak-rss-file flags, which write pprof profiles of
// the command and its peak RSS (the benchmark passes them to the stages it
// runs). It wraps the persistent hooks already set (the log flags'), so
// call it after addLogFlags. The files are written when the command
// succeeds.
func addProfileFlags(root *cobra.Command) {
	var cpuPath, memPath, rssPath string
	pf := root.PersistentFlags()
	pf.StringVar(&cpuPath, "cpuprofile", "", "write a CPU profile (pprof) of the command to this file")
	pf.StringVar(&memPath, "memprofile", "", "write an allocation profile (pprof) at the end of the command to this file")
	pf.StringVar(&rssPath, "peak-rss-file", "", "write the command's peak RSS in bytes at its end to this file")
	for _, name := range []string{"cpuprofile", "memprofile", "peak-rss-file"} {
		if err := pf.MarkHidden(name); err != nil {
			panic(err)
		}
	}
	var cpuFile *os.File
	pre, post := root.PersistentPreRunE, root.PersistentPostRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if pre != nil {
			if err := pre(cmd, args); err != nil {
				return err
			}
		}
		if cpuPath == "" {
			return nil
		}
		f, err := os.Create(cpuPath) // #nosec G304 -- the operator's own output file
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		cpuFile = f
		return nil
	}
	root.PersistentPostRunE = func(cmd *cobra.Command, args []string) error {
		var errs []error
		if cpuFile != nil {
			pprof.StopCPUProfile()
			if err := cpuFile.Close(); err != nil {
				errs = append(errs, fmt.Errorf("cpu profile: %w", err))
			}
			cpuFile = nil
		}
		if memPath != "" {
			errs = append(errs, writeHeapProfile(memPath))
		}
		if rssPath != "" {
			errs = append(errs, writePeakRSS(rssPath))
		}
		if post != nil {
			errs = append(errs, post(cmd, args))
		}
		return errors.Join(errs...)
	}
}

// writeHeapProfile writes the allocation profile (pprof "allocs", which
// also holds the in-use heap) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path) // #nosec G304 -- the operator's own output file
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// writePeakRSS writes to path the peak resident set size of this program,
// in bytes: Linux's high-water mark of the memory it was exec'd into
// (VmHWM). The peak wait4 reports to a parent also counts the parent's own
// peak before it started this program; this one does not. Where /proc has
// no such line it writes nothing.
func writePeakRSS(path string) error {
	kb, err := strconv.ParseInt(strings.TrimSuffix(procStatus("VmHWM"), " kB"), 10, 64)
	if err != nil {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.FormatInt(kb*1024, 10)), 0o600); err != nil {
		return fmt.Errorf("peak RSS: %w", err)
	}
	return nil
}

// procStatus is the value of field in /proc/self/status ("" when there
// is none).
func procStatus(field string) string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
