package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/audit"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
)

// errDrift is audit's finding of drift: exit code 1, not a failure.
var errDrift = errors.New("the source and the ingestion bucket disagree")

func newAuditCmd() *cobra.Command {
	var (
		c      configFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Compare the source with what has landed: missing and deleted rows",
		Long: `Audit reads every source table's (id, last_updated) in one read-only snapshot
and every version landed in the ingestion bucket, and reports per table: the
rows in the source; the rows whose current version never landed and that the
next ingest will not pick up (missing: committed later than the lookback, or
backfilled with an old last_updated); the rows the next ingest will still land
(pending); and the ids that landed but are gone from the source (deleted).
An update that keeps last_updated is out of its reach.

Exit status: 0 when everything agrees, 1 when it found drift, 2 when it
could not audit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", c.SourceURL); err != nil {
				return exitCode(2, errkind.Wrap(errkind.ConfigInvalid, err))
			}
			ctx := cmd.Context()
			b, err := lake.Open(ctx, c.IngestBucket)
			if err != nil {
				err = errkind.Wrap(errkind.ConfigInvalid, err)
				logging.Failure(slog.Default(), "audit", "", err)
				return exitCode(2, err)
			}
			defer func() { _ = b.Close() }()
			r, err := audit.Run(ctx, audit.Options{SourceURL: c.SourceURL, Bucket: b, Lookback: c.Lookback, Logger: slog.Default()})
			if err != nil {
				logging.Failure(slog.Default(), "audit", "", err)
				return exitCode(2, err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return exitCode(2, err)
				}
			} else {
				printAudit(cmd.OutOrStdout(), r)
			}
			if r.Drift {
				return exitCode(1, errDrift)
			}
			return nil
		},
	}
	c.bind(cmd, true, false, true, false)
	pre := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if err := pre(cmd, args); err != nil {
			return exitCode(2, err)
		}
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printAudit(w io.Writer, r audit.Report) {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format+"\n", args...) }
	p("Audit of the source against ingested batch %s (%.2fs):", r.Batch, r.Seconds)
	p("  %-16s %10s %10s %8s %8s %8s", "table", "source", "landed", "missing", "pending", "deleted")
	names := make([]string, 0, len(r.Tables))
	for t := range r.Tables {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, name := range names {
		t := r.Tables[name]
		p("  %-16s %10d %10d %8d %8d %8d", name, t.SourceRows, t.Landed, t.Missing, t.Pending, t.Deleted)
	}
	for _, name := range names {
		t := r.Tables[name]
		if len(t.MissingExamples) > 0 {
			p("  missing from %s: ids %s", name, joinIDs(t.MissingExamples))
		}
		if len(t.DeletedExamples) > 0 {
			p("  deleted from %s: ids %s", name, joinIDs(t.DeletedExamples))
		}
	}
	if r.Drift {
		p("Drift found.")
	} else {
		p("The source and the ingestion bucket agree.")
	}
}

func joinIDs(ids []int32) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	return strings.Join(parts, ", ")
}
