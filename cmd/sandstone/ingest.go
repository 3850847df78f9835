package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/ingest"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
)

func newIngestCmd() *cobra.Command {
	var c configFlags
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Land every new or changed source row in the ingestion bucket (one batch)",
		Long: `Ingest reads, in one consistent snapshot of the totesys database, every row
version that is new since the last run and writes it to the ingestion bucket:
one Parquet object per changed table, then a manifest. Nothing is written when
nothing changed. Rows that commit late (up to --lookback after their
last_updated) are caught by the next run, and no version lands twice.

Example:
  sandstone ingest --source postgres://user@host/totesys --ingest-bucket ./data/ingested`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", c.SourceURL); err != nil {
				return configFailure("ingest", err)
			}
			ctx := cmd.Context()
			b, err := lake.Open(ctx, c.IngestBucket)
			if err != nil {
				return configFailure("ingest", err)
			}
			defer func() { _ = b.Close() }()
			res, err := ingest.Run(ctx, ingest.Options{SourceURL: c.SourceURL, Bucket: b, Lookback: c.Lookback, Logger: slog.Default()})
			if err != nil {
				logging.Failure(slog.Default(), "ingest", res.RunID, err)
				return err
			}
			printIngest(cmd, res)
			return nil
		},
	}
	c.bind(cmd, true, false, true, false)
	return cmd
}

func printIngest(cmd *cobra.Command, res ingest.Result) {
	out := cmd.OutOrStdout()
	switch {
	case res.Conflict:
		_, _ = fmt.Fprintln(out, "ingest: another run committed the batch first; nothing written")
	case res.Sequence == 0:
		_, _ = fmt.Fprintf(out, "ingest: nothing new (%.2fs)\n", res.Duration.Seconds())
	default:
		_, _ = fmt.Fprintf(out, "ingest: batch %s, %d rows, %d bytes, %.2fs\n", res.Batch, res.Total(), res.Bytes, res.Duration.Seconds())
		printTables(out, res.Rows)
	}
}
