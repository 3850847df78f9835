package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

func newIngestCmd() *cobra.Command {
	var c configFlags
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Land every new or changed source row in the ingestion bucket (in batches of at most --max-batch-rows)",
		Long: `Ingest reads, in one consistent snapshot of the totesys database, every row
version that is new since the last run and writes it to the ingestion bucket:
one Parquet object per changed table, then a manifest. Nothing is written when
nothing changed. Rows that commit late (up to --lookback after their
last_updated) are caught by the next run, and no version lands twice. A run
lands as many batches of at most --max-batch-rows rows as it needs.

With --capture wal it reads every committed change from a logical replication
slot instead: the first run creates the slot and lands, from the snapshot the
slot exports, what the lake does not hold yet; each later run lands the whole
transactions committed since. A slot that is gone, invalidated or confirmed
past the lake fails with capture_gap; --resnapshot then starts again from a
new slot, and sandstone audit --repair records what went meanwhile. A slot
another consumer holds fails with capture_slot_busy and lands nothing
(sandstone run retries it).`,
		Example: `  sandstone ingest --source postgres://user@host/totesys --ingest-bucket ./sandstone-data/ingested
  SANDSTONE_SOURCE_URL=postgres://user@host/totesys sandstone ingest --max-batch-rows 100000
  sandstone ingest --capture wal --source postgres://replicator@host/totesys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", config.EnvSource, c.SourceURL); err != nil {
				return configFailure(pipeline.Ingest, err)
			}
			return runStage(cmd, c.Config, pipeline.Ingest, time.Time{})
		},
	}
	c.bind(cmd, needSource|needIngestBucket|needBatch|needCapture)
	cmd.Flags().BoolVar(&c.Resnapshot, "resnapshot", false, "with --capture wal: start again from a new slot and its snapshot (after a capture_gap)")
	return cmd
}
