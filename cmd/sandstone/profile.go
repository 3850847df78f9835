package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// addProfileFlags gives root the hidden persistent --cpuprofile and
// --memprofile flags, which write pprof profiles of the command (the
// benchmark passes them to the stages it runs). It wraps the persistent
// hooks already set (the log flags'), so call it after addLogFlags. The
// profiles are written when the command succeeds.
func addProfileFlags(root *cobra.Command) {
	var cpuPath, memPath string
	pf := root.PersistentFlags()
	pf.StringVar(&cpuPath, "cpuprofile", "", "write a CPU profile (pprof) of the command to this file")
	pf.StringVar(&memPath, "memprofile", "", "write an allocation profile (pprof) at the end of the command to this file")
	for _, name := range []string{"cpuprofile", "memprofile"} {
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
