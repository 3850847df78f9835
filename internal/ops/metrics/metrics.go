// Package metrics records Sandstone's figures as Prometheus collectors on a
// private registry, served with health and readiness over HTTP (for
// `sandstone run --metrics-addr`). The Lambda functions write the same
// figures as CloudWatch Embedded Metric Format log lines instead: package
// emf, which needs no Prometheus.
//
// The Prometheus metrics:
//
//	sandstone_rows_total{stage,table}                 counter   rows written
//	sandstone_bytes_total{stage,table}                counter   bytes written
//	sandstone_stage_duration_seconds{stage}           histogram successful stage run durations
//	sandstone_stage_failures_total{stage,kind}        counter   failed stage runs by errkind
//	sandstone_batches_pending{stage}                  gauge     batches waiting for the stage
//	sandstone_last_success_timestamp_seconds{stage}   gauge     Unix time of the last successful run
//	sandstone_warehouse_behind_source_seconds         gauge     how far the warehouse is behind the source: the age of the newest source snapshot whose changes have all reached it (alert on this)
//	sandstone_warehouse_caught_up_timestamp_seconds   gauge     Unix time of that snapshot
//	sandstone_source_last_change_timestamp_seconds    gauge     the newest last_updated ingested: when the source last changed
//	sandstone_build_info{version,commit,go_version}   gauge     1, labelled with the build
//	sandstone_freshness_seconds                       gauge     the latest freshness
//	sandstone_freshness_lag_seconds                   histogram every freshness observed
//	sandstone_source_clock_skew_seconds{table}        gauge     how far a table's last_updated runs ahead (+) or behind (-) the source's clock beyond the lookback; 0 within it
//	sandstone_rejected_rows_total{table,kind}         counter   source rows transform set aside, by kind: bad_value, missing_reference (sandstone rejects lists them)
//	sandstone_parked_rows                             gauge     rows waiting for a row they refer to
//	sandstone_drift_rows{table,kind}                  gauge     rows the last audit found missing or deleted
//	sandstone_audits_total{result}                    counter   audits: clean, drift or failed
//	sandstone_last_audit_timestamp_seconds            gauge     Unix time of the last audit that ran to the end
//	sandstone_slot_retained_wal_bytes{slot}           gauge     WAL the replication slot of --capture wal holds back on the source's disk (alert on this)
//	sandstone_slot_unconfirmed_wal_bytes{slot}        gauge     WAL written since the position capture last confirmed to the slot
//	sandstone_slot_safe_wal_bytes{slot}               gauge     WAL that may still be written before max_slot_wal_keep_size invalidates the slot (absent without that limit)
//
// Freshness is the time between the newest source change and its arrival in
// the warehouse, observed by each load that brought new data.
package metrics

import (
	"cmp"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/ops/metrics/emf"
)

// DefaultFailureGrace is how long a failure streak may last before /readyz
// reports not ready: the totesys specification's freshness limit.
const DefaultFailureGrace = 30 * time.Minute

// Histogram buckets, in seconds.
var (
	durationBuckets  = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
	freshnessBuckets = []float64{5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400}
)

// Options tune New; the zero value is fine.
type Options struct {
	// FailureGrace is how long failing cycles keep /readyz at 200 after
	// a success (DefaultFailureGrace when zero or negative).
	FailureGrace time.Duration
	// Page, when set, is served at / beside the metrics (the status page).
	Page http.Handler
}

// StageRun is the outcome of one stage run, as the runner knows it. It is
// declared in package emf, so that the Lambda can record it without
// linking Prometheus.
type StageRun = emf.StageRun

// Metrics holds Sandstone's Prometheus collectors and the readiness state.
// Its methods are safe for concurrent use.
type Metrics struct {
	reg         *prometheus.Registry
	rows        *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	failures    *prometheus.CounterVec
	pending     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	freshness   prometheus.Gauge
	freshHist   prometheus.Histogram
	skew        *prometheus.GaugeVec
	drift       *prometheus.GaugeVec
	rejected    *prometheus.CounterVec
	parked      prometheus.Gauge
	audits      *prometheus.CounterVec
	lastAudit   prometheus.Gauge
	caughtUp    prometheus.Gauge
	lastChange  prometheus.Gauge
	buildInfo   *prometheus.GaugeVec
	slot        slotGauges

	grace time.Duration
	now   func() time.Time
	page  http.Handler

	mu           sync.Mutex
	stages       map[string]bool // stages whose failure counters exist
	lastOK       time.Time       // end of the last successful cycle
	failingSince time.Time       // first failed cycle of the current streak
	failKind     errkind.Kind    // kind of the last failed cycle
	started      time.Time       // when New was called
	caughtUpTo   time.Time       // the warehouse holds every change before it
}

// New returns Metrics on a fresh private registry, which also holds the Go
// runtime and process collectors.
func New(opts Options) *Metrics {
	opts.FailureGrace = cmp.Or(max(opts.FailureGrace, 0), DefaultFailureGrace)
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandstone_rows_total", Help: "Rows written, by stage and table.",
		}, []string{"stage", "table"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandstone_bytes_total", Help: "Bytes written, by stage and table.",
		}, []string{"stage", "table"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sandstone_stage_duration_seconds", Help: "Durations of successful stage runs.",
			Buckets: durationBuckets,
		}, []string{"stage"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandstone_stage_failures_total", Help: "Failed stage runs, by stage and error kind.",
		}, []string{"stage", "kind"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandstone_batches_pending", Help: "Batches waiting for the stage.",
		}, []string{"stage"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandstone_last_success_timestamp_seconds", Help: "Unix time of the stage's last successful run.",
		}, []string{"stage"}),
		freshness: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandstone_freshness_seconds",
			Help: "Latest seconds between the newest source change and its arrival in the warehouse.",
		}),
		freshHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandstone_freshness_lag_seconds",
			Help:    "Seconds between the newest source change and its arrival in the warehouse, per load.",
			Buckets: freshnessBuckets,
		}),
		skew: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandstone_source_clock_skew_seconds",
			Help: "How far a source table's last_updated runs ahead (+) or behind (-) the source's clock beyond the lookback; 0 within it.",
		}, []string{"table"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandstone_rejected_rows_total", Help: "Source rows transform set aside, by source table and kind (bad_value, missing_reference).",
		}, []string{"table", "kind"}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandstone_parked_rows", Help: "Rows waiting for a row they refer to.",
		}),
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandstone_drift_rows", Help: "Rows the last audit found missing from the lake or deleted from the source, by table and kind.",
		}, []string{"table", "kind"}),
		audits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandstone_audits_total", Help: "Audits, by result: clean, drift or failed.",
		}, []string{"result"}),
		lastAudit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandstone_last_audit_timestamp_seconds", Help: "Unix time of the last audit that ran to the end.",
		}),
		caughtUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandstone_warehouse_caught_up_timestamp_seconds",
			Help: "Unix time of the newest source snapshot whose changes have all reached the warehouse.",
		}),
		lastChange: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sandstone_source_last_change_timestamp_seconds",
			Help: "The newest last_updated ingested, as Unix time: when the source last changed.",
		}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sandstone_build_info", Help: "1, labelled with the version, commit and Go version of the build.",
		}, []string{"version", "commit", "go_version"}),
		slot:   newSlotGauges(),
		grace:  opts.FailureGrace,
		page:   opts.Page,
		now:    time.Now,
		stages: map[string]bool{},
	}
	m.started = m.now()
	behind := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sandstone_warehouse_behind_source_seconds",
		Help: "How far the warehouse is behind the source: the age of the newest source snapshot whose changes have all reached it (since start-up when none has yet).",
	}, func() float64 { return m.BehindSource().Seconds() })
	m.reg.MustRegister(append(m.slot.collectors(), m.rows, m.bytes, m.duration, m.failures, m.pending, m.lastSuccess, behind, m.caughtUp,
		m.lastChange, m.buildInfo, m.freshness, m.freshHist, m.skew, m.drift, m.audits, m.lastAudit, m.rejected, m.parked,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))...)
	return m
}

// Registry returns the private registry, to add collectors or gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// initStage creates the stage's failure counters at zero, so that the first
// failure shows as an increase.
func (m *Metrics) initStage(stage string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stages[stage] {
		return
	}
	m.stages[stage] = true
	for _, k := range errkind.All {
		m.failures.WithLabelValues(stage, string(k))
	}
}

// StageDone records a successful stage run: its duration and the rows and
// bytes it wrote per table.
func (m *Metrics) StageDone(stage string, d time.Duration, rows, bytes map[string]int64) {
	m.initStage(stage)
	m.duration.WithLabelValues(stage).Observe(d.Seconds())
	for table, n := range rows {
		m.rows.WithLabelValues(stage, table).Add(float64(n))
	}
	for table, n := range bytes {
		m.bytes.WithLabelValues(stage, table).Add(float64(n))
	}
	m.lastSuccess.WithLabelValues(stage).Set(float64(m.now().UnixNano()) / 1e9)
}

// StageFailed counts a failed stage run of the given kind.
func (m *Metrics) StageFailed(stage string, kind errkind.Kind) {
	m.initStage(stage)
	m.failures.WithLabelValues(stage, string(kind)).Inc()
}

// SetPending sets the number of batches waiting for the stage.
func (m *Metrics) SetPending(stage string, n int) {
	m.pending.WithLabelValues(stage).Set(float64(n))
}

// ObserveFreshness records the time between the newest source change and
// its arrival in the warehouse.
func (m *Metrics) ObserveFreshness(d time.Duration) {
	m.freshness.Set(d.Seconds())
	m.freshHist.Observe(d.Seconds())
}

// Record records a stage run: StageDone or StageFailed, and its freshness
// when known.
func (m *Metrics) Record(r StageRun) {
	if r.Err != nil {
		m.StageFailed(r.Stage, errkind.Of(r.Err))
	} else {
		m.StageDone(r.Stage, r.Duration, r.Rows, r.Bytes)
	}
	if r.Freshness > 0 {
		m.ObserveFreshness(r.Freshness)
	}
	for table, d := range r.Skew {
		m.skew.WithLabelValues(table).Set(d.Seconds())
	}
	for table, kinds := range r.Rejected {
		for kind, n := range kinds {
			m.rejected.WithLabelValues(table, kind).Add(float64(n))
		}
	}
	if r.Parked != nil {
		m.parked.Set(float64(*r.Parked))
	}
}

// CycleDone records the end of one pipeline cycle (all stages) for /readyz;
// err is nil when the cycle succeeded.
func (m *Metrics) CycleDone(err error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		m.lastOK, m.failingSince = now, time.Time{}
		return
	}
	if m.failingSince.IsZero() {
		m.failingSince = now
	}
	m.failKind = errkind.Of(err)
}

// Ready reports whether the pipeline is ready: a cycle has succeeded, and
// the last cycle succeeded or the current failure streak is younger than
// the grace period. When not ready, reason says why.
func (m *Metrics) Ready() (ready bool, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.lastOK.IsZero() && m.failingSince.IsZero():
		return false, "no cycle has succeeded yet"
	case m.lastOK.IsZero():
		return false, "no cycle has succeeded yet; failing (" + string(m.failKind) + ") since " + m.failingSince.UTC().Format(time.RFC3339)
	case m.failingSince.IsZero():
		return true, ""
	}
	since := m.now().Sub(m.failingSince)
	if since < m.grace {
		return true, ""
	}
	return false, "failing (" + string(m.failKind) + ") for " + strconv.Itoa(int(since.Seconds())) + "s, since " +
		m.failingSince.UTC().Format(time.RFC3339)
}

// AuditDone records an audit: the drift rows by table and kind when it ran
// to the end (err nil), and its result.
func (m *Metrics) AuditDone(drift map[string]map[string]int64, err error) {
	if err != nil {
		m.audits.WithLabelValues("failed").Inc()
		return
	}
	found := false
	for table, kinds := range drift {
		for kind, n := range kinds {
			m.drift.WithLabelValues(table, kind).Set(float64(n))
			found = found || n > 0
		}
	}
	if found {
		m.audits.WithLabelValues("drift").Inc()
	} else {
		m.audits.WithLabelValues("clean").Inc()
	}
	m.lastAudit.Set(float64(m.now().UnixNano()) / 1e9)
}
