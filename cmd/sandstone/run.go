package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/alert"
	"github.com/sandstone-data/sandstone/internal/audit"
	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
	"github.com/sandstone-data/sandstone/internal/metrics"
	"github.com/sandstone-data/sandstone/internal/pipeline"
	"github.com/sandstone-data/sandstone/internal/warehouse"
)

// defaultAlertState is where `run` keeps the alert state that `status` shows.
const defaultAlertState = "./sandstone-data/alerts.json"

// runFlags are run's settings.
type runFlags struct {
	configFlags
	interval    time.Duration
	once        bool
	retries     int
	backoff     time.Duration
	metricsAddr string
	alertState  string
	auditEvery  time.Duration
	autoRepair  bool
	behindLimit time.Duration
	alerts      alert.Config
}

func newRunCmd() *cobra.Command {
	var rf runFlags
	alerts, alertErr := alert.ConfigFromEnv()
	rf.alerts = alerts
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
			if err := requireAll(rf.configFlags); err != nil {
				return configFailure("run", err)
			}
			return rf.run(cmd)
		},
	}
	rf.bind(cmd, true, true, true, true)
	rf.bindBatch(cmd)
	f := cmd.Flags()
	f.DurationVar(&rf.interval, "interval", ev.duration(envInterval, 10*time.Minute), "time between cycles ($"+envInterval+")")
	f.BoolVar(&rf.once, "once", false, "run one cycle and exit (non-zero if a stage failed)")
	f.IntVar(&rf.retries, "retries", ev.int(envRetries, 3), "retries of a failing stage within a cycle ($"+envRetries+")")
	f.DurationVar(&rf.backoff, "backoff", ev.duration(envBackoff, 2*time.Second), "wait before the first retry (doubles each time) ($"+envBackoff+")")
	f.StringVar(&rf.metricsAddr, "metrics-addr", os.Getenv(envMetricsAddr), "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464) ($"+envMetricsAddr+")")
	f.StringVar(&rf.alertState, "alert-state", envOr(envAlertState, defaultAlertState), "file keeping the alert state across restarts (shown by status) ($"+envAlertState+")")
	f.DurationVar(&rf.auditEvery, "audit-every", ev.duration(envAuditEvery, time.Hour), "audit the source against the ingestion bucket this often, between cycles; 0 turns it off ($"+envAuditEvery+")")
	f.BoolVar(&rf.autoRepair, "auto-repair", os.Getenv(envAutoRepair) == "true", "mend what an audit finds at once ($"+envAutoRepair+"=true)")
	f.DurationVar(&rf.behindLimit, "behind-limit", ev.duration(envBehindLimit, 30*time.Minute),
		"alert when the warehouse is this far behind the source (a quiet source is not behind) ($"+envBehindLimit+")")
	alert.BindFlags(f, &rf.alerts)
	return cmd
}

// run runs the pipeline: once, or every interval until ctx ends.
func (rf *runFlags) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	log := slog.Default()
	log.Info("sandstone run starting", "version", buildInfo())
	// The run lock holds a connection of its own for the run's life; each
	// load opens another.
	wh, err := warehouse.Open(ctx, rf.WarehouseURL, rf.WarehouseSchema)
	if err != nil {
		return configFailure("run", err)
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	lock, err := wh.LockRun(ctx)
	if err != nil {
		return configFailure("run", err)
	}
	defer func() { _ = lock.Release(context.WithoutCancel(ctx)) }()
	p, err := pipeline.Open(ctx, rf.Config, log)
	if err != nil {
		return configFailure("run", err)
	}
	defer func() { _ = p.Close() }()
	p.Progress = cmd.ErrOrStderr()
	notifier, err := alert.New(rf.alerts, log)
	if err != nil {
		return configFailure("run", err)
	}
	if err := notifier.Load(rf.alertState); err != nil {
		log.Warn("the saved alert state could not be read; starting afresh", "error", err.Error())
	}
	m := metrics.New(metrics.Options{})
	m.SetBuildInfo(build())
	runner := &pipeline.Runner{Stages: p.Stages(), Retries: rf.retries, Backoff: rf.backoff, Logger: log, Quiet: humanLog,
		Observers: []pipeline.Observer{observer{m, notifier}, printer{cmd.OutOrStdout()}}}
	if rf.metricsAddr != "" {
		go func() {
			if err := m.Serve(ctx, rf.metricsAddr); err != nil {
				log.Error("metrics server failed", "error_kind", string(errkind.ConfigInvalid), "error", err.Error())
			}
		}()
	}
	s := &session{rf: rf, p: p, m: m, n: notifier, log: log,
		aud: &auditor{every: rf.auditEvery, log: log, m: m, n: notifier, bucket: p.Ingest,
			opts: audit.Options{SourceURL: rf.SourceURL, Bucket: p.Ingest, Lookback: rf.Lookback, Repair: rf.autoRepair, Logger: log,
				Processed: p.Processed, WarehouseURL: rf.WarehouseURL, WarehouseSchema: rf.WarehouseSchema}}}
	each := func(reports []pipeline.Report, err error) { s.cycleDone(ctx, reports, err) }
	if rf.once {
		s.aud.every = 0 // one cycle; 'sandstone audit' audits on demand
		reports, err := runner.Cycle(ctx)
		each(reports, err)
		return err
	}
	log.Info("sandstone run: a cycle now and every "+rf.interval.String()+"; Ctrl-C or SIGTERM stops it", "interval", rf.interval.String())
	err = runner.Loop(ctx, rf.interval, each)
	log.Info("sandstone run stopped", "reason", stopReason(ctx, err))
	return err
}

// session is what a run keeps between cycles.
type session struct {
	rf  *runFlags
	p   *pipeline.Pipeline
	m   *metrics.Metrics
	n   *alert.Notifier
	aud *auditor
	log *slog.Logger
}

// cycleDone records a cycle's outcome (pending batches, how far the
// warehouse is behind the source and its alert), saves the alert state,
// and audits when it is time to. What the cycle found is kept and told even
// when a signal ended it.
func (s *session) cycleDone(ctx context.Context, reports []pipeline.Report, err error) {
	defer s.aud.maybe(ctx)
	ctx = context.WithoutCancel(ctx)
	s.m.CycleDone(err)
	tr, ld, perr := s.p.Pending(ctx)
	if perr == nil {
		s.m.SetPending(pipeline.Transform, int(tr))
		s.m.SetPending(pipeline.Load, int(ld))
	}
	caughtUp(s.m, reports, perr == nil && tr == 0 && ld == 0)
	var lag error
	if behind := s.m.BehindSource(); behind > s.rf.behindLimit {
		lag = errkind.Wrap(errkind.BehindSource, fmt.Errorf("the warehouse is %s behind the source (limit %s): it holds no change made after %s",
			behind.Round(time.Second), s.rf.behindLimit, time.Now().Add(-behind).UTC().Format(time.DateTime+" UTC")))
	}
	s.n.Observe(ctx, freshnessAlert, "", lag)
	if err := s.n.Save(s.rf.alertState); err != nil {
		s.log.Warn("could not save the alert state", "path", s.rf.alertState, "error", err.Error())
	}
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
	envBehindLimit = "SANDSTONE_BEHIND_LIMIT"
)

// freshnessAlert is the alert "stage" of the warehouse falling behind the
// source.
const freshnessAlert = "freshness"

// caughtUp tells the metrics how far the warehouse has caught up after a
// cycle: to the snapshot ingest read when nothing is left waiting (a quiet
// source is no lag), else to the snapshot of the newest batch loaded. It
// also records when the source last changed.
func caughtUp(m *metrics.Metrics, reports []pipeline.Report, drained bool) {
	for _, r := range reports {
		switch r.Stage {
		case pipeline.Ingest:
			m.SourceChanged(r.SourceNewest)
			if drained && !r.SnapshotAt.IsZero() {
				m.CaughtUp(r.SnapshotAt)
			}
		case pipeline.Load:
			if !r.SnapshotAt.IsZero() {
				m.CaughtUp(r.SnapshotAt)
			}
		}
	}
}

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
	if n := r.Rejects(); n > 0 {
		o.n.Warn(ctx, r.Stage, r.RunID, errkind.BadRowsRejected, fmt.Sprintf("%d rows rejected (%s), %d parked; 'sandstone rejects' lists them with their reasons",
			n, rejectSummary(r.Rejected), r.Parked))
	}
}

// rejectSummary is "table kind n, ..." in a stable order.
func rejectSummary(rejected map[string]map[string]int64) string {
	var parts []string
	for t, kinds := range rejected {
		for k, n := range kinds {
			parts = append(parts, fmt.Sprintf("%s %s %d", t, k, n))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (o observer) StageFailed(ctx context.Context, stage, runID string, err error) {
	o.m.Record(metrics.StageRun{Stage: stage, RunID: runID, Err: err})
	o.n.Observe(ctx, stage, runID, err)
}

// stopReason says why the loop ended.
func stopReason(ctx context.Context, err error) string {
	switch {
	case err != nil:
		return config.Redact(err.Error())
	case ctx.Err() != nil:
		return "interrupted (SIGINT or SIGTERM); the stage under way finished"
	}
	return "done"
}
