package main

import (
	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/ops/status"
)

func newStatusCmd() *cobra.Command {
	var (
		c          configFlags
		asJSON     bool
		alertState string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each stage's progress, what waits, the warehouse's rows and freshness",
		Long: `Status shows, for each source table, the watermark and the time of the last
landing; the batches waiting at each stage; the last load; the warehouse's row
counts; the freshness (the age of the newest source change that reached the
warehouse) and the lag of recent loads; and the alert state that
'sandstone run' keeps. --json prints one JSON object for scripts.`,
		Example: `  sandstone status --warehouse postgres://reader@dw/warehouse
  sandstone status --json   # settings from SANDSTONE_*`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := status.Gather(cmd.Context(), c.Config, alertState)
			if asJSON {
				return r.WriteJSON(cmd.OutOrStdout())
			}
			return r.WriteText(cmd.OutOrStdout())
		},
	}
	c.bind(cmd, needWarehouse|needIngestBucket|needProcessedBucket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&alertState, "alert-state", envOr(envAlertState, defaultAlertState), "the alert state file 'sandstone run' keeps ($"+envAlertState+")")
	return cmd
}
