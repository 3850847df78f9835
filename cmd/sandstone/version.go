package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildInfo describes this binary in one line.
func buildInfo() string {
	version, commit, goVersion := build()
	return fmt.Sprintf("sandstone %s (commit %s, %s %s/%s)", version, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}

// build returns the module version, the VCS commit the binary was built
// from (with "+dirty" when the tree had changes) and the Go version.
func build() (version, commit, goVersion string) {
	version, commit = "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit != "unknown" {
			commit += "+dirty"
		}
	}
	return version, commit, runtime.Version()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildInfo())
			return err
		},
	}
}
