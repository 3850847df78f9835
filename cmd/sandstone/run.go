package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/alert"
	"github.com/sandstone-data/sandstone/internal/audit"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
	"github.com/sandstone-data/sandstone/internal/metrics"
	"github.com/sandstone-data/sandstone/internal/pipeline"
	"github.com/sandstone-data/sandstone/internal/warehouse"
)

// defaultAlertState is where `run` keeps the alert state that `status` shows.
const defaultAlertState = "./sandstone-data/alerts.json"

func newRunCmd() *cobra.Command {
	var (
		c           configFlags
		interval    time.Duration
		once        bool
		retries     int
		backoff     time.Duration
		metricsAddr string
		alertState  string
		auditEvery  time.Duration
		autoRepair  bool
	)
	alerts, alertErr := alert.ConfigFromEnv()
	var ev envErrors
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run ingest, transform and load every --interval until stopped",
		Long: `Run runs the whole pipeline (ingest -> transform -> load) now and then every
--interval, until SIGINT or SIGTERM, when it lets the stage under way finish
and stops. A failing stage is retried with backoff and does not stop the loop;
with --alert-email or --alert-webhook, a failure streak sends one alert, a
reminder every --alert-reminder while it lasts, and one "recovered" message.
--metrics-addr serves Prometheus metrics (/metrics) and health (/healthz,
/readyz). --once runs one cycle and exits non-zero if a stage failed.

Between cycles, every --audit-every (0 turns it off), it audits the source
against the ingestion bucket (as 'sandstone audit' does); drift alerts as a
failing "audit" stage and, with --auto-repair, is mended at once through the
ordinary pipeline (the next cycle transforms and loads the repair batch).

Example:
  sandstone run --source postgres://... --warehouse postgres://... --interval 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := errors.Join(alertErr, ev.err()); err != nil {
				return configFailure("run", err)
			}
			if err := requireAll(c); err != nil {
				return configFailure("run", err)
			}
			ctx := cmd.Context()
			log := slog.Default()
			log.Info("sandstone run starting", "version", buildInfo())
			lock, err := warehouse.LockRun(ctx, c.WarehouseURL, c.WarehouseSchema)
			if err != nil {
				return configFailure("run", err)
			}
			defer func() { _ = lock.Release(context.WithoutCancel(ctx)) }()
			p, err := pipeline.Open(ctx, c.Config, log)
			if err != nil {
				return configFailure("run", err)
			}
			defer func() { _ = p.Close() }()
			notifier, err := alert.New(alerts, log)
			if err != nil {
				return configFailure("run", err)
			}
			restoreAlerts(notifier, alertState)
			m := metrics.New(metrics.Options{})
			runner := &pipeline.Runner{Stages: p.Stages(), Retries: retries, Backoff: backoff, Logger: log,
				Observers: []pipeline.Observer{observer{m, notifier}}}
			if metricsAddr != "" {
				go func() {
					if err := m.Serve(ctx, metricsAddr); err != nil {
						log.Error("metrics server failed", "error_kind", string(errkind.ConfigInvalid), "error", err.Error())
					}
				}()
			}
			aud := &auditor{every: auditEvery, log: log, m: m, n: notifier, bucket: p.Ingest,
				opts: audit.Options{SourceURL: c.SourceURL, Bucket: p.Ingest, Lookback: c.Lookback, Repair: autoRepair, Logger: log,
					Processed: p.Processed, WarehouseURL: c.WarehouseURL, WarehouseSchema: c.WarehouseSchema}}
			each := func(reports []pipeline.Report, err error) {
				defer aud.maybe(ctx)
				m.CycleDone(err)
				if tr, ld, perr := p.Pending(ctx); perr == nil {
					m.SetPending(pipeline.Transform, int(tr))
					m.SetPending(pipeline.Load, int(ld))
				}
				printReports(cmd.OutOrStdout(), reports)
				saveAlerts(notifier, alertState, log)
			}
			if once {
				aud.every = 0 // one cycle; 'sandstone audit' audits on demand
				reports, err := runner.Cycle(ctx)
				each(reports, err)
				return err
			}
			return runner.Loop(ctx, interval, each)
		},
	}
	c.bind(cmd, true, true, true, true)
	f := cmd.Flags()
	f.DurationVar(&interval, "interval", ev.duration(envInterval, 10*time.Minute), "time between cycles ($"+envInterval+")")
	f.BoolVar(&once, "once", false, "run one cycle and exit (non-zero if a stage failed)")
	f.IntVar(&retries, "retries", ev.int(envRetries, 3), "retries of a failing stage within a cycle ($"+envRetries+")")
	f.DurationVar(&backoff, "backoff", ev.duration(envBackoff, 2*time.Second), "wait before the first retry (doubles each time) ($"+envBackoff+")")
	f.StringVar(&metricsAddr, "metrics-addr", os.Getenv(envMetricsAddr), "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464) ($"+envMetricsAddr+")")
	f.StringVar(&alertState, "alert-state", envOr(envAlertState, defaultAlertState), "file keeping the alert state across restarts (shown by status) ($"+envAlertState+")")
	f.DurationVar(&auditEvery, "audit-every", ev.duration(envAuditEvery, time.Hour), "audit the source against the ingestion bucket this often, between cycles; 0 turns it off ($"+envAuditEvery+")")
	f.BoolVar(&autoRepair, "auto-repair", os.Getenv(envAutoRepair) == "true", "mend what an audit finds at once ($"+envAutoRepair+"=true)")
	alert.BindFlags(f, &alerts)
	return cmd
}

// The environment variables of run's flags (the alert flags' are
// alert.Env*).
const (
	envInterval    = "SANDSTONE_INTERVAL"
	envRetries     = "SANDSTONE_RETRIES"
	envBackoff     = "SANDSTONE_BACKOFF"
	envMetricsAddr = "SANDSTONE_METRICS_ADDR"
	envAlertState  = "SANDSTONE_ALERT_STATE"
	envAuditEvery  = "SANDSTONE_AUDIT_EVERY"
	envAutoRepair  = "SANDSTONE_AUTO_REPAIR"
)

// envErrors collects the environment variables that could not be parsed,
// for the command to refuse before it runs (their defaults are kept).
type envErrors []error

// duration is the non-negative duration in the environment variable name,
// else def.
func (e *envErrors) duration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		*e = append(*e, fmt.Errorf("%s=%q: want a duration such as 10m", name, v))
		return def
	}
	return d
}

// int is the non-negative integer in the environment variable name, else
// def.
func (e *envErrors) int(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		*e = append(*e, fmt.Errorf("%s=%q: want a whole number such as 3", name, v))
		return def
	}
	return n
}

func (e envErrors) err() error { return errors.Join(e...) }

// envOr is the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// auditor audits between cycles, every so often, and reports what it
// finds to the log, the metrics, the alerts and the ingestion bucket.
type auditor struct {
	every  time.Duration
	last   time.Time
	opts   audit.Options
	bucket *lake.Bucket
	log    *slog.Logger
	m      *metrics.Metrics
	n      *alert.Notifier
}

// maybe audits when every has passed since the last audit.
func (a *auditor) maybe(ctx context.Context) {
	if a.every <= 0 || ctx.Err() != nil || (!a.last.IsZero() && time.Since(a.last) < a.every) {
		return
	}
	a.last = time.Now()
	r, err := audit.Run(ctx, a.opts)
	a.m.AuditDone(r.DriftRows(), err)
	if err != nil {
		logging.Failure(a.log, "audit", "", err)
		a.n.Observe(ctx, "audit", "", err)
		return
	}
	if err := audit.Save(ctx, a.bucket, r); err != nil {
		a.log.Warn("the audit report could not be saved", "stage", "audit", "error", err.Error())
	}
	if !r.Drift {
		a.log.Info("audit: "+r.Summary(), "stage", "audit", "seconds", r.Seconds)
		a.n.Observe(ctx, "audit", "", nil)
		return
	}
	msg := r.Summary()
	if r.Repaired != nil {
		msg += "; repaired in ingested batch " + r.Repaired.Batch
	}
	a.log.Warn("audit: "+msg, "stage", "audit", "drift", true, "seconds", r.Seconds)
	a.n.Observe(ctx, "audit", "", errkind.Wrap(errkind.DriftFound, errors.New(msg)))
}

func requireAll(c configFlags) error {
	if err := require("--source", c.SourceURL); err != nil {
		return errkind.Wrap(errkind.ConfigInvalid, err)
	}
	return errkind.Wrap(errkind.ConfigInvalid, require("--warehouse", c.WarehouseURL))
}

// observer feeds stage outcomes to the metrics and the alerts.
type observer struct {
	m *metrics.Metrics
	n *alert.Notifier
}

func (o observer) StageDone(ctx context.Context, r pipeline.Report) {
	var parked *int64
	if r.Stage == pipeline.Transform && len(r.Batches) > 0 {
		parked = &r.Parked // known after a batch
	}
	o.m.Record(metrics.StageRun{Stage: r.Stage, RunID: r.RunID, Duration: r.Duration, Rows: r.Rows,
		Bytes: r.Bytes, Freshness: r.Freshness, Skew: r.Skew, Rejected: r.Rejected, Parked: parked})
	o.n.Observe(ctx, r.Stage, r.RunID, nil)
}

func (o observer) StageFailed(ctx context.Context, stage, runID string, err error) {
	o.m.Record(metrics.StageRun{Stage: stage, RunID: runID, Err: err})
	o.n.Observe(ctx, stage, runID, err)
}

func restoreAlerts(n *alert.Notifier, path string) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's own state file
	if err != nil {
		return
	}
	var s alert.State
	if json.Unmarshal(data, &s) == nil {
		n.Restore(s)
	}
}

func saveAlerts(n *alert.Notifier, path string, log *slog.Logger) {
	if path == "" {
		return
	}
	data, err := json.MarshalIndent(n.State(), "", "  ")
	if err == nil {
		_ = os.MkdirAll(filepath.Dir(path), 0o750)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		log.Warn("could not save the alert state", "path", path, "error", err.Error())
	}
}

// printReports prints one line per stage and the rows it moved per table.
func printReports(w io.Writer, reports []pipeline.Report) {
	for _, r := range reports {
		line := fmt.Sprintf("%-9s %8d rows  %6.2fs", r.Stage, r.Total(), r.Duration.Seconds())
		if len(r.Batches) > 0 {
			line += "  batches " + strings.Join(r.Batches, ",")
		}
		if r.Note != "" {
			line += "  (" + r.Note + ")"
		}
		if r.Freshness > 0 {
			line += fmt.Sprintf("  freshness %.1fs", r.Freshness.Seconds())
		}
		var rejected int64
		for _, n := range r.Rejected {
			rejected += n
		}
		if rejected > 0 || r.Parked > 0 {
			line += fmt.Sprintf("  rejected %d, parked %d (sandstone rejects lists them)", rejected, r.Parked)
		}
		_, _ = fmt.Fprintln(w, line)
		printTables(w, r.Rows)
	}
}

// printTables prints the tables with rows, by name, one a line.
func printTables(w io.Writer, rows map[string]int64) {
	tables := make([]string, 0, len(rows))
	for t, n := range rows {
		if n > 0 {
			tables = append(tables, t)
		}
	}
	sort.Strings(tables)
	for _, t := range tables {
		_, _ = fmt.Fprintf(w, "  %-20s %9d\n", t, rows[t])
	}
}
