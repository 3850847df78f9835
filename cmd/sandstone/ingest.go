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
lands as many batches of at most --max-batch-rows rows as it needs.`,
		Example: `  sandstone ingest --source postgres://user@host/totesys --ingest-bucket ./sandstone-data/ingested
  SANDSTONE_SOURCE_URL=postgres://user@host/totesys sandstone ingest --max-batch-rows 100000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", config.EnvSource, c.SourceURL); err != nil {
				return configFailure(pipeline.Ingest, err)
			}
			return runStage(cmd, c.Config, pipeline.Ingest, time.Time{})
		},
	}
	c.bind(cmd, needSource|needIngestBucket|needBatch|needCapture)
	return cmd
}
