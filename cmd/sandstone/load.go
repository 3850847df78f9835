package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

// envMaxDuration is the variable of load --max-duration.
const envMaxDuration = "SANDSTONE_MAX_DURATION"

func newLoadCmd() *cobra.Command {
	var cf configFlags
	var maxDuration time.Duration
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load processed batches into the warehouse",
		Long: `Load applies every batch of the processed bucket that the warehouse has not
loaded yet, in order, each in one transaction recorded in the warehouse's load
ledger (sandstone_loads): a batch takes effect once, however often load runs.

The first run creates the warehouse schema (or checks the tables someone else
created: a missing or mistyped column stops it before anything is written).`,
		Example: `  sandstone load --warehouse postgres://loader@dw/warehouse --processed-bucket ./sandstone-data/processed
  sandstone load --max-duration 5m   # the rest waits for the next run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--warehouse", config.EnvWarehouse, cf.WarehouseURL); err != nil {
				return configFailure(pipeline.Load, err)
			}
			var deadline time.Time
			if maxDuration > 0 {
				deadline = time.Now().Add(maxDuration)
			}
			return runStage(cmd, cf.Config, pipeline.Load, deadline)
		},
	}
	cf.bind(cmd, needWarehouse|needProcessedBucket)
	var ev envErrors
	cmd.Flags().DurationVar(&maxDuration, "max-duration", ev.duration(envMaxDuration, 0),
		"stop at the first batch boundary after this long, leaving the rest for the next run (0: no limit) ($"+envMaxDuration+")")
	pre := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if err := ev.err(); err != nil {
			return configFailure(pipeline.Load, err)
		}
		return pre(cmd, args)
	}
	return cmd
}
