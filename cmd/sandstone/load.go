package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
	"github.com/sandstone-data/sandstone/internal/warehouse"
)

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
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runLoad(cmd, cf.Config, maxDuration)
			if err != nil {
				logging.Failure(slog.Default(), "load", "", err)
			}
			return err
		},
	}
	cf.bind(cmd, false, true, false, true)
	cmd.Flags().DurationVar(&maxDuration, "max-duration", 0,
		"stop at the first batch boundary after this long, leaving the rest for the next run (0: no limit)")
	return cmd
}

func runLoad(cmd *cobra.Command, c config.Config, maxDuration time.Duration) error {
	if err := require("--warehouse", c.WarehouseURL); err != nil {
		return errkind.Wrap(errkind.ConfigInvalid, err)
	}
	ctx := cmd.Context()
	// Load only reads the processed bucket: a directory not there yet is
	// not created; it has no batches (the ledger check still runs).
	name, _ := lake.ResolveURL(c.ProcessedBucket)
	bucket, err := lake.OpenExisting(ctx, c.ProcessedBucket)
	if errors.Is(err, lake.ErrNoBucket) {
		bucket, err = lake.Open(ctx, "mem://")
	}
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, err)
	}
	defer func() { _ = bucket.Close() }()
	opts := warehouse.Options{URL: c.WarehouseURL, Schema: c.WarehouseSchema, Processed: bucket, Logger: slog.Default()}
	if maxDuration > 0 {
		opts.Deadline = time.Now().Add(maxDuration)
	}
	res, err := warehouse.Load(ctx, opts)
	printLoad(cmd.OutOrStdout(), res, err == nil)
	if err == nil && len(res.Batches) == 0 && len(res.Skipped) == 0 {
		printNothingToLoad(cmd, bucket, name)
	}
	return err
}

// printNothingToLoad says why a load found nothing: a processed bucket with
// no batches at all (a fresh setup, or the wrong bucket) is not a warehouse
// up to date.
func printNothingToLoad(cmd *cobra.Command, bucket *lake.Bucket, name string) {
	out := cmd.OutOrStdout()
	seq, err := bucket.LatestSeq(cmd.Context())
	switch {
	case err != nil:
		_, _ = fmt.Fprintf(out, "nothing to load (the processed bucket %s could not be listed: %s)\n", name, config.Redact(err.Error()))
	case seq == 0:
		_, _ = fmt.Fprintf(out, "nothing to load: the processed bucket %s has no batches yet; "+
			"run 'sandstone ingest' and 'sandstone transform' first (or 'sandstone run'), or point --processed-bucket at the bucket transform writes\n", name)
	default:
		_, _ = fmt.Fprintf(out, "nothing to load: the warehouse is up to date (batch %s of %s)\n", lake.BatchID(seq), name)
	}
}

// printLoad tells what a load did, a line per batch.
func printLoad(w io.Writer, res warehouse.Result, finished bool) {
	for _, b := range res.Batches {
		var total int64
		var parts []string
		for _, t := range warehouse.TableNames() {
			if n, ok := b.Rows[t]; ok {
				total += n
				parts = append(parts, fmt.Sprintf("%s %d", t, n))
			}
		}
		detail := ""
		if len(parts) > 0 {
			detail = " (" + strings.Join(parts, ", ") + ")"
		}
		_, _ = fmt.Fprintf(w, "batch %s: %d rows written in %.2fs%s\n", b.Batch, total, b.Seconds, detail)
	}
	for _, seq := range res.Skipped {
		_, _ = fmt.Fprintf(w, "batch %s: already loaded by another run\n", lake.BatchID(seq))
	}
	switch {
	case !finished:
	case res.Pending > 0:
		_, _ = fmt.Fprintf(w, "loaded %s; %s left for the next run (time is up)\n", batches(len(res.Batches)), batches(res.Pending))
	case len(res.Batches) == 0 && len(res.Skipped) == 0: // printNothingToLoad says why
	default:
		_, _ = fmt.Fprintf(w, "loaded %s\n", batches(len(res.Batches)))
	}
}

func batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}
