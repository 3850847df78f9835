package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

func newSeedCmd() *cobra.Command {
	var (
		cf   configFlags
		opts synth.SeedOptions
	)
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Create a synthetic totesys database in an empty PostgreSQL database",
		Long: `Seed creates the totesys schema in an empty PostgreSQL database (--source) and
fills it with a realistic synthetic history shaped like the real totesys:
the same reference data, sales orders and 0.42 purchase orders per sales
order (as in the real data), each order with its transaction and payment,
arriving in working-hour bursts from 2022-11-03 to now; payments paid 13
hours to 6 days after the order. The same --random-seed and --sales-orders
give the same data (up to the moving "now").

It refuses a database that already holds totesys tables. The rows stream in
through COPY in one transaction: a million sales orders (about 4.3 million
rows) take well under a minute.`,
		Example: `  createdb totesys
  sandstone seed --source 'postgres:///totesys?host=/var/run/postgresql' --sales-orders 100000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", config.EnvSource, cf.SourceURL); err != nil {
				return err
			}
			if opts.SalesOrders < 0 {
				return fmt.Errorf("--sales-orders must be 0 or more, not %d", opts.SalesOrders)
			}
			began := time.Now()
			stats, err := synth.Seed(cmd.Context(), cf.SourceURL, opts)
			if err != nil {
				return err
			}
			printSeedStats(cmd.OutOrStdout(), stats, time.Since(began))
			return nil
		},
	}
	cf.bind(cmd, needSource)
	f := cmd.Flags()
	if err := f.MarkHidden("lookback"); err != nil {
		panic(errors.Join(errors.New("seed: the lookback flag is gone"), err))
	}
	f.IntVar(&opts.SalesOrders, "sales-orders", synth.DefaultSalesOrders, "how many sales orders to make (purchase orders, transactions, payments and designs follow)")
	f.Int64Var(&opts.RandomSeed, "random-seed", synth.DefaultRandomSeed, "seed of the random data: the same seed gives the same rows")
	return cmd
}

func printSeedStats(w io.Writer, stats synth.Stats, took time.Duration) {
	secs := took.Seconds()
	_, _ = fmt.Fprintf(w, "seeded totesys: %d rows in %.1f s (%.0f rows/s)\n", stats.Total(), secs, float64(stats.Total())/max(secs, 1e-9))
	for _, t := range totesys.Tables {
		_, _ = fmt.Fprintf(w, "  %-15s %10d\n", t.Name, stats[t.Name])
	}
}
