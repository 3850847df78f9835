package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
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
'sandstone run' keeps. With --capture wal it reads the replication slot too
(--source): how much WAL it holds back on the source's disk, its wal_status
and how much more it may fall behind before max_slot_wal_keep_size
invalidates it. --json prints one JSON object for scripts.

What it cannot read (a warehouse that refuses the login, a bucket it cannot
list) comes first, as problem: lines (JSON "problems"); the counts it could
not read say "unknown" (JSON null), and status exits 1. It exits 1 too when
nothing is configured: no --warehouse ($SANDSTONE_WAREHOUSE_URL) and no
bucket at --ingest-bucket or --processed-bucket.`,
		Example: `  sandstone status --warehouse postgres://reader@dw/warehouse
  sandstone status --json   # settings from SANDSTONE_*`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := status.Gather(cmd.Context(), c.Config, alertState)
			write := r.WriteText
			if asJSON {
				write = r.WriteJSON
			}
			if err := write(cmd.OutOrStdout()); err != nil {
				return err
			}
			return problems(r.Problems)
		},
	}
	c.bind(cmd, needWarehouse|needIngestBucket|needProcessedBucket|needCapture)
	cmd.Flags().StringVar(&c.SourceURL, "source", c.SourceURL, "totesys PostgreSQL URL, to read the replication slot of --capture wal ($"+config.EnvSource+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&alertState, "alert-state", envOr(envAlertState, defaultAlertState), "the alert state file 'sandstone run' keeps ($"+envAlertState+")")
	return cmd
}

// problems is status's error when it found problems (what it could not
// read, or the buckets and the warehouse disagreeing): exit code 1, the
// first problem said again on stderr's last line, for scripts reading
// --json too.
func problems(all []string) error {
	switch len(all) {
	case 0:
		return nil
	case 1:
		return errors.New("status: " + all[0])
	}
	return fmt.Errorf("status: %s (and %d more problems)", all[0], len(all)-1)
}
