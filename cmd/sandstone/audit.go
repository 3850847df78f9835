package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
)

// errDrift is audit's finding of drift: exit code 1, not a failure.
var errDrift = errors.New("drift found")

// auditLong is audit's help.
const auditLong = `Audit reads every source table's (id, last_updated) in one read-only snapshot
and every version landed in the ingestion bucket, and reports per table: the
rows in the source; the rows whose current version never landed and that the
next ingest will not pick up (missing: committed later than the lookback, or
backfilled with an old last_updated); the rows the next ingest will still land
(pending); and the ids that landed but are gone from the source (deleted).
An update that keeps last_updated is out of its reach. With --warehouse it
also checks the warehouse against the processed bucket: every loaded fact
version is there once, every dimension holds the latest loaded value.

--repair lands what is missing, and a tombstone for each deleted id, as one
ingestion batch marked as a repair; the next run (or transform and load)
takes it through the pipeline, and load records the deletions in
sandstone_deletions. The report is kept in the ingestion bucket (audits/),
where 'sandstone status' shows the last one.

Exit status: 0 when everything agrees, 1 when it found drift it did not
repair, 2 when it could not audit, 3 when --repair landed a repair batch for
all the drift it found.`

func newAuditCmd() *cobra.Command {
	var (
		c      configFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Compare the source with what has landed: missing and deleted rows",
		Long:  auditLong,
		Example: `  sandstone audit --source postgres://reader@totesys/totesys --ingest-bucket ./sandstone-data/ingested
  sandstone audit --json
  sandstone audit --repair   # then 'sandstone run --once' takes the repair through`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd, c.Config, asJSON)
		},
	}
	c.bind(cmd, needPipeline)
	pre := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if err := pre(cmd, args); err != nil {
			return exitCode(2, err)
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return exitCode(2, cmd.Root().FlagErrorFunc()(cmd, err))
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	// Not bound to $SANDSTONE_AUDIT_REPAIR: an audit on demand repairs
	// only when asked to.
	cmd.Flags().BoolVar(&c.AuditRepair, "repair", false, "land what is missing and tombstones for what is deleted, as a repair batch")
	return cmd
}

// runAudit audits through the one audit driver (which logs, saves the
// report and repairs, as run and the Lambda do), prints the report and
// exits 1 on drift, 2 on failure, 3 when a repair landed. The warehouse is checked when cfg names
// it.
func runAudit(cmd *cobra.Command, cfg config.Config, asJSON bool) error {
	if err := require("--source", config.EnvSource, cfg.SourceURL); err != nil {
		return exitCode(2, configFailure(audit.Stage, err))
	}
	d := &audit.Driver{Logger: slog.Default(), Quiet: humanLog}
	r, err := d.Audit(cmd.Context(), cfg)
	if err != nil {
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
	if r.Repaired != nil && r.WarehouseDrift() == 0 { // the repair mends the source's drift only
		return exitCode(3, fmt.Errorf("drift found and repaired in ingested batch %s (%d rows, %d tombstones); the next run takes it through the pipeline",
			r.Repaired.Batch, sum(r.Repaired.Rows), sum(r.Repaired.Tombstones)))
	}
	if r.Drift {
		return exitCode(1, errDrift)
	}
	return nil
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
			p("  missing from %s: ids %s", name, audit.JoinIDs(t.MissingExamples))
		}
		if len(t.DeletedExamples) > 0 {
			p("  deleted from %s: ids %s", name, audit.JoinIDs(t.DeletedExamples))
		}
	}
	if r.Warehouse != nil {
		p("Warehouse against the processed bucket's loaded batches:")
		p("  %-20s %10s %10s %8s %10s %8s", "table", "warehouse", "processed", "missing", "duplicated", "stale")
		for _, st := range star.Tables {
			if t := r.Warehouse[st.Name]; t != nil {
				name := st.Name
				p("  %-20s %10d %10d %8d %10d %8d", name, t.Rows, t.Processed, t.Missing, t.Duplicated, t.Stale)
				if len(t.Examples) > 0 {
					p("    ids %s", audit.JoinIDs(t.Examples))
				}
			}
		}
	}
	if r.Repaired != nil {
		p("Repaired in ingested batch %s: %d rows, %d tombstones; the next run takes it through the pipeline.",
			r.Repaired.Batch, sum(r.Repaired.Rows), sum(r.Repaired.Tombstones))
	}
	p("%s.", strings.ToUpper(r.Summary()[:1])+r.Summary()[1:])
}

func sum[N int | int64](m map[string]N) N {
	var n N
	for _, v := range m {
		n += v
	}
	return n
}
