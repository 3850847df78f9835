package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/dev/demo"
	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
)

func newDemoCmd() *cobra.Command {
	opts := demo.Options{}
	var clean bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on throwaway servers, with nothing to configure",
		Long: `Demo starts throwaway PostgreSQL servers for a totesys source and a warehouse
under --dir (as an unprivileged user when run as root), seeds a realistic
totesys, runs ingest -> transform -> load, then simulates a few cycles of live
business (new orders and payments, payments getting paid, an address and a
department changing) and runs the pipeline after each. It ends with the
warehouse's row counts, a sample query, the freshness, and a psql line.
The servers keep running afterwards; --clean stops them and removes --dir.

Needs the PostgreSQL server binaries (Debian: apt-get install postgresql).`,
		Example: `  make demo                          # builds ./bin/sandstone and runs this
  sandstone demo --sales-orders 100000 --cycles 5
  sandstone demo --clean`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clean {
				return cleanSandbox(cmd, opts.Dir)
			}
			opts.Out = cmd.OutOrStdout()
			opts.Self = os.Args[0]
			opts.Logger = logging.New(cmd.ErrOrStderr(), logging.FormatAuto, slog.LevelWarn)
			_, err := demo.Run(cmd.Context(), opts)
			if errors.Is(err, demo.ErrInterrupted) {
				return exitCode(130, err) // 128 + SIGINT, as shells report it
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "./sandstone-data/demo", "directory for the demo's servers and buckets")
	f.IntVar(&opts.SalesOrders, "sales-orders", 20000, "size of the seeded source, in sales orders")
	f.IntVar(&opts.Cycles, "cycles", 3, "cycles of simulated business after the initial load")
	f.BoolVar(&clean, "clean", false, "stop the demo's servers and remove its directory")
	return cmd
}

// cleanSandbox stops the servers of the sandbox in dir and removes it (demo
// and bench --clean).
func cleanSandbox(cmd *cobra.Command, dir string) error {
	if err := sandbox.Clean(dir); err != nil {
		return err
	}
	cmd.Printf("removed %s and stopped its servers\n", dir)
	return nil
}
