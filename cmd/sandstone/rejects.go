package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/stage/transform"
)

func newRejectsCmd() *cobra.Command {
	var (
		c      configFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "rejects",
		Short: "List the source rows transform set aside, and those waiting for a missing reference",
		Long: `Rejects lists every source row that transform could not turn into star rows
(table, id, kind, reason, batch, when), oldest first, from the processed
bucket's rejects objects; then the rows still parked, waiting for a row they
refer to (they flow when it arrives, or when 'sandstone audit --repair' lands
it). --json prints one object: {"rejects": [...], "parked": [...]}.`,
		Example: `  sandstone rejects --processed-bucket ./sandstone-data/processed
  sandstone rejects --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			b, err := lake.OpenExisting(ctx, c.ProcessedBucket)
			if errors.Is(err, lake.ErrNoBucket) {
				_, _ = fmt.Fprintf(cmd.OutOrStdout(), "rejects: the processed bucket %s has no batches yet\n", c.ProcessedBucket)
				return nil
			}
			if err != nil {
				return configFailure("rejects", errkind.Wrap(errkind.ConfigInvalid, err))
			}
			defer func() { _ = b.Close() }()
			var rejects []transform.Reject
			if err := transform.Rejects(ctx, b, func(r transform.Reject) error {
				rejects = append(rejects, r)
				return nil
			}); err != nil {
				return configFailure("rejects", err)
			}
			parked, err := transform.ParkedRows(ctx, b)
			if err != nil {
				return configFailure("rejects", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Rejects []transform.Reject `json:"rejects"`
					Parked  []transform.Parked `json:"parked"`
				}{append([]transform.Reject{}, rejects...), append([]transform.Parked{}, parked...)})
			}
			printRejects(cmd.OutOrStdout(), rejects, parked)
			return nil
		},
	}
	c.bind(cmd, needProcessedBucket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printRejects(w io.Writer, rejects []transform.Reject, parked []transform.Parked) {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format+"\n", args...) }
	p("Rejected rows: %d", len(rejects))
	for _, r := range rejects {
		p("  batch %s  %s UTC  %-14s id %-8s %-17s %s", r.Batch, r.At.UTC().Format(time.DateTime), r.Table, idText(r.ID), r.Kind, r.Reason)
	}
	p("Parked rows (waiting for a row they refer to): %d", len(parked))
	for _, r := range parked {
		since := "-"
		if !r.SinceAt.IsZero() {
			since = fmt.Sprintf("since batch %s, %s ago", r.Since, time.Since(r.SinceAt).Round(time.Second))
		}
		p("  %-14s id %-8s %s (%s)", r.Table, idText(r.ID), r.Reason, since)
	}
}

func idText(id *int64) string {
	if id == nil {
		return "-"
	}
	return strconv.FormatInt(*id, 10)
}
