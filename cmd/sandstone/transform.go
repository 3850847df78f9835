package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

func newTransformCmd() *cobra.Command {
	var c configFlags
	cmd := &cobra.Command{
		Use:   "transform",
		Short: "Turn every new ingested batch into star-schema rows in the processed bucket",
		Long: `Transform reads, in order, every batch of the ingestion bucket that has not
been processed yet and writes, for each, a processed batch with the same
number: one Parquet object per star-schema table that has rows, the rows it
had to reject (JSON lines), its state, then a manifest. Rows that refer to a
row not seen yet are parked and released by a later batch. It never reads the
source database.`,
		Example: `  sandstone transform --ingest-bucket ./sandstone-data/ingested --processed-bucket ./sandstone-data/processed`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStage(cmd, c.Config, pipeline.Transform, time.Time{})
		},
	}
	c.bind(cmd, needIngestBucket|needProcessedBucket)
	return cmd
}
