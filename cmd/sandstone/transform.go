package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
	"github.com/sandstone-data/sandstone/internal/transform"
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
source database.

Example:
  sandstone transform --ingest-bucket ./data/ingested --processed-bucket ./data/processed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := lake.Open(ctx, c.IngestBucket)
			if err != nil {
				return configFailure("transform", err)
			}
			defer func() { _ = in.Close() }()
			out, err := lake.Open(ctx, c.ProcessedBucket)
			if err != nil {
				return configFailure("transform", err)
			}
			defer func() { _ = out.Close() }()
			res, err := transform.Run(ctx, transform.Options{Ingest: in, Processed: out, Logger: slog.Default()})
			printTransform(cmd, res)
			if err != nil {
				logging.Failure(slog.Default(), "transform", res.RunID, err)
			}
			return err
		},
	}
	c.bind(cmd, false, false, true, true)
	return cmd
}

func printTransform(cmd *cobra.Command, res transform.Result) {
	out := cmd.OutOrStdout()
	for _, b := range res.Batches {
		_, _ = fmt.Fprintf(out, "transform: batch %s, %d rows, %d rejected, %d released, %d parked, %.2fs\n",
			b.Batch, b.Total(), b.Rejected, b.Released, b.Parked, b.Seconds)
		printTables(out, b.Rows)
	}
	switch {
	case res.Conflict:
		_, _ = fmt.Fprintln(out, "transform: another run committed the next batch first; stopped")
	case res.DeadlineReached:
		_, _ = fmt.Fprintln(out, "transform: deadline reached; batches still pending")
	case len(res.Batches) == 0:
		_, _ = fmt.Fprintln(out, "transform: nothing new")
	}
}
