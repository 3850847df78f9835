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
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/ops/status"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// defaultAlertState is where `run` keeps the alert state that `status` shows.
const defaultAlertState = "./sandstone-data/alerts.json"

// runFlags are run's settings.
type runFlags struct {
	configFlags
	interval    time.Duration
	once        bool
	follow      bool
	retries     int
	backoff     time.Duration
	metricsAddr string
	alertState  string
	auditEvery  time.Duration
	behindLimit time.Duration
	alerts      alert.Config
}

func newRunCmd() *cobra.Command {
	var rf runFlags
	alerts, alertErr := alert.ConfigFromEnv()
	rf.alerts = alerts
	var ev envErrors
	var deprecated bool // $SANDSTONE_AUTO_REPAIR is set
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run ingest, transform and load every --interval until stopped",
		Long: `Run runs the whole pipeline (ingest -> transform -> load) now and then every
--interval, until SIGINT or SIGTERM, when it lets the batch under way land
and stops (exit 0; a second signal stops at once, abandoning that batch).
A failing stage is retried with backoff and does not stop the loop;
with --alert-email or --alert-webhook, a failure streak sends one alert, a
reminder every --alert-reminder while it lasts, and one "recovered" message.
--metrics-addr serves the status page (/: what 'sandstone status' says, with
charts and the warehouse's sales; it shows business totals, so bind it where
only those who may see them reach it), Prometheus metrics (/metrics) and
health (/healthz, /readyz). --once runs one cycle and exits non-zero if a stage failed (130
when interrupted).

Beside the cycles, every --audit-every (0 turns it off), it audits the source
against the ingestion bucket (as 'sandstone audit' does), without holding
them up; drift alerts as a failing "audit" stage and, with --auto-repair, is
mended at once through the ordinary pipeline (the next cycle transforms and
loads the repair batch).

With --capture wal, --follow keeps the replication connection open and
lands each transaction as it commits, under a second behind the source:
transform and load take each batch while the next lands, and --interval is
then only how often they look for work landed by others (an audit's repair)
and how long a failing ingest waits before it tries again. Each stage's
result is printed when it did something, and a line a minute sums them up.

With --capture wal it reads its replication slot every minute, beside the
cycles: the WAL the slot holds back on the source's disk goes to the
metrics and the status page and, past $SANDSTONE_SLOT_LAG_ALERT_BYTES (1 GiB by
default), alerts as a "slot" stage (slot_lag).`,
		Example: `  sandstone run --source postgres://... --warehouse postgres://... --interval 10m
  sandstone run --once --log-format text   # one cycle, settings from SANDSTONE_*
  sandstone run --capture wal --follow     # each change as it commits`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if deprecated {
				slog.Default().Warn(envAutoRepair+" is deprecated: set "+config.EnvAuditRepair+" instead", "variable", envAutoRepair)
			}
			if err := errors.Join(alertErr, ev.err()); err != nil {
				return configFailure("run", err)
			}
			if err := requireAll(rf.configFlags); err != nil {
				return configFailure("run", err)
			}
			if err := rf.checkFollow(); err != nil {
				return configFailure("run", err)
			}
			return rf.run(cmd)
		},
	}
	rf.bind(cmd, needPipeline|needBatch|needCapture)
	// The old name of the setting, read as the new one is, which wins.
	deprecated = os.Getenv(envAutoRepair) != ""
	if deprecated && os.Getenv(config.EnvAuditRepair) == "" {
		rf.AuditRepair = ev.bool(envAutoRepair)
	}
	f := cmd.Flags()
	f.DurationVar(&rf.interval, "interval", ev.duration(envInterval, 10*time.Minute), "time between cycles ($"+envInterval+")")
	f.BoolVar(&rf.once, "once", false, "run one cycle and exit (non-zero if a stage failed)")
	f.BoolVar(&rf.follow, "follow", ev.bool(envFollow), "with --capture wal: land each change as it commits, on a replication connection kept open, and transform and load each batch while the next lands ($"+envFollow+")")
	f.IntVar(&rf.retries, "retries", ev.int(envRetries, 3), "retries of a failing stage within a cycle ($"+envRetries+")")
	f.DurationVar(&rf.backoff, "backoff", ev.duration(envBackoff, 2*time.Second), "wait before the first retry (doubles each time) ($"+envBackoff+")")
	f.StringVar(&rf.metricsAddr, "metrics-addr", os.Getenv(envMetricsAddr), "serve the status page (/), /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464) ($"+envMetricsAddr+")")
	f.StringVar(&rf.alertState, "alert-state", envOr(envAlertState, defaultAlertState), "file keeping the alert state across restarts (shown by status) ($"+envAlertState+")")
	f.DurationVar(&rf.auditEvery, "audit-every", ev.duration(envAuditEvery, time.Hour), "audit the source against the ingestion bucket this often, beside the cycles; 0 turns it off ($"+envAuditEvery+")")
	f.BoolVar(&rf.AuditRepair, "auto-repair", rf.AuditRepair, "mend what an audit finds at once ($"+config.EnvAuditRepair+")")
	f.DurationVar(&rf.behindLimit, "behind-limit", ev.duration(envBehindLimit, 30*time.Minute),
		"alert when the warehouse is this far behind the source (a quiet source is not behind) ($"+envBehindLimit+")")
	alert.BindFlags(f, &rf.alerts)
	return cmd
}

// run runs the pipeline: once, or every interval until a signal (graceful:
// the stage under way stops after its batch under way). Once, a signal
// makes it exit 130; as a service, it stops with 0.
func (rf *runFlags) run(cmd *cobra.Command) error {
	ctx, stop := graceful(cmd.Context())
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
	p.Progress, p.Quiet = cmd.ErrOrStderr(), humanLog
	notifier, err := alert.New(rf.alerts, log)
	if err != nil {
		return configFailure("run", err)
	}
	if err := notifier.Load(rf.alertState); err != nil {
		log.Warn("the saved alert state could not be read; starting afresh", "error", err.Error())
	}
	m := metrics.New(metrics.Options{Page: status.NewPage(rf.Config, rf.alertState, pageRefresh)})
	m.SetBuildInfo(build())
	runner := &pipeline.Runner{Stages: p.Stages(), Retries: rf.retries, Backoff: rf.backoff, Logger: log, Quiet: humanLog, Stop: stop,
		Observers: []pipeline.Observer{observer{m, notifier}, printer{cmd.OutOrStdout()}}}
	if rf.follow {
		followWith(runner, p, cmd.OutOrStdout(), log)
	}
	if rf.metricsAddr != "" {
		go func() {
			if err := m.Serve(ctx, rf.metricsAddr); err != nil {
				log.Error("metrics server failed", "error_kind", string(errkind.ConfigInvalid), "error", err.Error())
			}
		}()
	}
	s := &session{rf: rf, p: p, m: m, n: notifier, log: log, slot: newSlotWatch(rf.Config, m, notifier, log)}
	if rf.once { // one cycle; 'sandstone audit' audits on demand
		reports, err := runner.Cycle(ctx)
		s.slot.check(context.WithoutCancel(ctx))
		s.cycleDone(ctx, reports, err)
		return interrupted(cmd.Context(), err)
	}
	s.aud = newAudits(&audit.Driver{Logger: log, Observers: []audit.Observer{observer{m, notifier}}},
		audit.Options{SourceURL: rf.SourceURL, Bucket: p.Ingest, Lookback: rf.Lookback, Repair: rf.AuditRepair,
			Processed: p.Processed, WarehouseURL: rf.WarehouseURL, WarehouseSchema: rf.WarehouseSchema}, rf.auditEvery)
	if rf.follow {
		log.Info("sandstone run: following the source; Ctrl-C or SIGTERM stops it", "capture", rf.Capture, "slot", rf.Slot)
	} else {
		log.Info("sandstone run: a cycle now and every "+rf.interval.String()+"; Ctrl-C or SIGTERM stops it", "interval", rf.interval.String())
	}
	err = s.loop(ctx, runner)
	log.Info("sandstone run stopped", "reason", stopReason(cmd.Context(), err))
	return err
}

// session is what a run keeps between cycles.
type session struct {
	rf   *runFlags
	p    *pipeline.Pipeline
	m    *metrics.Metrics
	n    *alert.Notifier
	aud  *audits // nil with --once
	slot *slotWatch
	log  *slog.Logger
}

// loop runs a cycle every --interval and the audits and the slot's watch
// beside the cycles until ctx ends, and returns once all have stopped.
func (s *session) loop(ctx context.Context, runner *pipeline.Runner) error {
	actx, stop := context.WithCancel(ctx)
	go s.aud.run(actx)
	slotDone := s.slot.start(actx, slotEvery)
	loop := runner.Loop
	if s.rf.follow {
		loop = runner.Follow
	}
	err := loop(ctx, s.rf.interval, func(reports []pipeline.Report, err error) {
		s.cycleDone(ctx, reports, err)
		s.aud.cycleDone()
	})
	stop()
	<-s.aud.done
	<-slotDone
	s.saveAlerts() // with what the last audit told them
	return err
}

// cycleDone records a cycle's outcome (pending batches, how far the
// warehouse is behind the source and its alert) and saves the alert state.
// What the cycle found is kept and told even when a signal ended it.
func (s *session) cycleDone(ctx context.Context, reports []pipeline.Report, err error) {
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
	s.saveAlerts()
}

// saveAlerts saves the alert state, for the next run and for status; only
// the loop's goroutine calls it, never two at once.
func (s *session) saveAlerts() {
	if err := s.n.Save(s.rf.alertState); err != nil {
		s.log.Warn("could not save the alert state", "path", s.rf.alertState, "error", err.Error())
	}
}

// The environment variables of run's flags (the alert flags' are
// alert.Env*).
const (
	envInterval    = "SANDSTONE_INTERVAL"
	envFollow      = "SANDSTONE_FOLLOW"
	envRetries     = "SANDSTONE_RETRIES"
	envBackoff     = "SANDSTONE_BACKOFF"
	envMetricsAddr = "SANDSTONE_METRICS_ADDR"
	envAlertState  = config.EnvAlertState
	envAuditEvery  = "SANDSTONE_AUDIT_EVERY"
	envAutoRepair  = "SANDSTONE_AUTO_REPAIR" // deprecated: config.EnvAuditRepair
	envBehindLimit = "SANDSTONE_BEHIND_LIMIT"
)

// pageRefresh is how often the status page at / reloads itself.
const pageRefresh = 30 * time.Second

// freshnessAlert is the alert "stage" of the warehouse falling behind the
// source.
const freshnessAlert = "freshness"

// caughtUp tells the metrics how far the warehouse has caught up after a
// cycle (pipeline.CaughtUp: to the newest batch loaded or, when nothing is
// left waiting, to the snapshot ingest read) and when the source last
// changed.
func caughtUp(m *metrics.Metrics, reports []pipeline.Report, drained bool) {
	for _, r := range reports {
		if r.Stage == pipeline.Ingest {
			m.SourceChanged(r.SourceNewest)
		}
	}
	if to := pipeline.CaughtUp(reports, drained); !to.IsZero() {
		m.CaughtUp(to)
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

// bool is the true or false (strconv.ParseBool's) in the environment
// variable name, else false.
func (e *envErrors) bool(name string) bool {
	v := os.Getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		*e = append(*e, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

func (e envErrors) err() error { return errors.Join(e...) }

// envOr is the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// audits runs sandstone run's audits beside its cycles, never in line
// with them: the first once the first cycle has ended (it then compares
// with what that cycle landed), then every `every`, one at a time (a tick
// that comes while an audit runs waits for it and never starts a second),
// until its context ends. The cycles go on while an audit runs; its
// repair lands on top of what they landed meanwhile (ingest.LandRepair).
type audits struct {
	d     *audit.Driver
	opts  audit.Options
	every time.Duration
	first chan struct{} // closed when the first cycle has ended
	once  sync.Once
	done  chan struct{} // closed when run has returned
}

// newAudits audits with d and opts every `every`; never when it is not
// positive.
func newAudits(d *audit.Driver, opts audit.Options, every time.Duration) *audits {
	return &audits{d: d, opts: opts, every: every, first: make(chan struct{}), done: make(chan struct{})}
}

// cycleDone tells the audits that a cycle has ended.
func (a *audits) cycleDone() { a.once.Do(func() { close(a.first) }) }

// run audits until ctx ends.
func (a *audits) run(ctx context.Context) {
	defer close(a.done)
	if a.every <= 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-a.first:
	}
	t := time.NewTicker(a.every)
	defer t.Stop()
	for ctx.Err() == nil {
		_, _ = a.d.Run(ctx, a.opts) // the driver logs, measures and alerts
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func requireAll(c configFlags) error {
	if err := require("--source", config.EnvSource, c.SourceURL); err != nil {
		return errkind.Wrap(errkind.ConfigInvalid, err)
	}
	return errkind.Wrap(errkind.ConfigInvalid, require("--warehouse", config.EnvWarehouse, c.WarehouseURL))
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

// AuditDone counts the audit's drift and alerts on it, as a failing
// "audit" stage, until an audit finds none.
func (o observer) AuditDone(ctx context.Context, r audit.Report) {
	o.m.AuditDone(r.DriftRows(), nil)
	var drift error
	if r.Drift {
		msg := r.Summary()
		if r.Repaired != nil {
			msg += "; repaired in ingested batch " + r.Repaired.Batch
		}
		drift = errkind.Wrap(errkind.DriftFound, errors.New(msg))
	}
	o.n.Observe(ctx, audit.Stage, "", drift)
}

func (o observer) AuditFailed(ctx context.Context, err error) {
	o.m.AuditDone(nil, err)
	o.n.Observe(ctx, audit.Stage, "", err)
}

// stopReason says why the loop ended.
func stopReason(ctx context.Context, err error) string {
	switch {
	case err != nil:
		return config.Redact(err.Error())
	case ctx.Err() != nil:
		return "interrupted (SIGINT or SIGTERM); the stage under way finished its batch under way"
	}
	return "done"
}
