package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func addLogFlags(root *cobra.Command) {
	root.PersistentPreRun = func(*cobra.Command, []string) {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
}
