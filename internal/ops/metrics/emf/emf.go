// Package emf writes CloudWatch Embedded Metric Format lines: the metrics
// of the Lambda functions, which CloudWatch Logs extracts from their log
// output without an API call. It needs nothing but the standard library and
// errkind, so that the Lambda links no Prometheus (package metrics serves
// the same figures to Prometheus for `sandstone run`).
package emf

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// The CloudWatch namespace and dimension of the EMF lines.
const (
	Namespace = "Sandstone"
	Dimension = "Stage"
)

// Writer writes CloudWatch Embedded Metric Format lines: one JSON object per
// stage run, which CloudWatch Logs turns into metrics in namespace
// "Sandstone" with dimension "Stage":
//
//	Rows (Count), Bytes (Bytes), Seconds (Seconds), Failures (Count) and,
//	when the run measured it, FreshnessSeconds (Seconds).
//
// A line also carries run_id and, for a failure, error_kind, for Logs
// Insights. Its methods are safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// New returns a Writer writing to w (a Lambda's stdout).
func New(w io.Writer) *Writer {
	return &Writer{w: w, now: time.Now}
}

// StageRun is the outcome of one stage run, as the runner knows it. Writer
// records part of it; package metrics, which aliases it, all of it.
type StageRun struct {
	Stage    string
	RunID    string
	Duration time.Duration
	// Rows and Bytes are written per table.
	Rows  map[string]int64
	Bytes map[string]int64
	// Err is nil when the run succeeded.
	Err error
	// Freshness is the time between the newest source change and its
	// arrival in the warehouse, when this run measured it (else zero).
	Freshness time.Duration
	// BehindSource is set by a load that loaded batches: how far the
	// warehouse was then behind the source (the age of the newest loaded
	// batch's snapshot). Unlike Freshness, a quiet source or a writer's
	// skewed clock does not change it.
	BehindSource time.Duration
	// Skew is, per source table, how far its last_updated runs ahead of or
	// behind the source's clock beyond the lookback (ingest).
	Skew map[string]time.Duration
	// Rejected counts, per source table and kind, the rows set aside;
	// Parked, when set, the rows waiting for a missing reference
	// (transform).
	Rejected map[string]map[string]int64
	Parked   *int64
}

type emfMetric struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type emfDirective struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []emfMetric `json:"Metrics"`
}

type emfMeta struct {
	Timestamp         int64          `json:"Timestamp"`
	CloudWatchMetrics []emfDirective `json:"CloudWatchMetrics"`
}

// Record writes the EMF line of one stage run.
func (e *Writer) Record(r StageRun) error {
	var rows, bytes int64
	for _, n := range r.Rows {
		rows += n
	}
	for _, n := range r.Bytes {
		bytes += n
	}
	failures := 0
	if r.Err != nil {
		failures = 1
	}
	line := map[string]any{
		Dimension:  r.Stage,
		"Rows":     rows,
		"Bytes":    bytes,
		"Seconds":  r.Duration.Seconds(),
		"Failures": failures,
		"run_id":   r.RunID,
	}
	metrics := []emfMetric{{"Rows", "Count"}, {"Bytes", "Bytes"}, {"Seconds", "Seconds"}, {"Failures", "Count"}}
	if r.Freshness > 0 {
		line["FreshnessSeconds"] = r.Freshness.Seconds()
		metrics = append(metrics, emfMetric{"FreshnessSeconds", "Seconds"})
	}
	if r.BehindSource > 0 {
		line["BehindSourceSeconds"] = r.BehindSource.Seconds()
		metrics = append(metrics, emfMetric{"BehindSourceSeconds", "Seconds"})
	}
	if r.Err != nil {
		line["error_kind"] = string(errkind.Of(r.Err))
	}

	return e.write(r.Stage, line, metrics)
}

// write adds the metric directive to line and writes it.
func (e *Writer) write(stage string, line map[string]any, metrics []emfMetric) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	line["_aws"] = emfMeta{
		Timestamp: e.now().UnixMilli(),
		CloudWatchMetrics: []emfDirective{{
			Namespace:  Namespace,
			Dimensions: [][]string{{Dimension}},
			Metrics:    metrics,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("emf %s: %w", stage, err)
	}
	if _, err := e.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("emf %s: write: %w", stage, err)
	}
	return nil
}

// AuditStage is the Stage dimension of the audit's EMF lines.
const AuditStage = "audit"

// AuditRun is the outcome of one audit (internal/ops/audit), as its EMF line
// tells it.
type AuditRun struct {
	Duration time.Duration
	// Measured is true when the audit compared the whole source, so that
	// Missing and Deleted are its findings; a failed audit that got no
	// findings has it false and writes no drift metrics.
	Measured bool
	// Missing and Deleted are the drift, in total over the tables.
	Missing, Deleted int64
	// Warehouse counts, when WarehouseChecked, the warehouse rows that
	// differ from the processed bucket (missing, duplicated or stale).
	WarehouseChecked bool
	Warehouse        int64
	// Batch is the newest ingested batch the audit compared with;
	// Repaired the batch a repair landed, if any.
	Batch, Repaired string
	// Tables has the drift per table and kind (audit.Report.DriftRows), for
	// Logs Insights; it is no metric.
	Tables map[string]map[string]int64
	// Err is nil when the audit succeeded (with or without drift).
	Err error
}

// RecordAudit writes the EMF line of one audit, with dimension
// Stage = "audit":
//
//	AuditSucceeded (Count, 1 or 0), Failures (Count, 0 or 1), Seconds and,
//	when the audit measured them, DriftMissing and DriftDeleted (Count,
//	totals over the tables) and, when it checked the warehouse,
//	DriftWarehouse (Count).
//
// An alarm on DriftMissing + DriftDeleted > 0 fires on drift; one on the
// sum of AuditSucceeded over the schedule's interval < 1 on audits that no
// longer happen or no longer succeed.
func (e *Writer) RecordAudit(a AuditRun) error {
	succeeded, failures := 1, 0
	if a.Err != nil {
		succeeded, failures = 0, 1
	}
	line := map[string]any{
		Dimension:        AuditStage,
		"AuditSucceeded": succeeded,
		"Failures":       failures,
		"Seconds":        a.Duration.Seconds(),
	}
	metrics := []emfMetric{{"AuditSucceeded", "Count"}, {"Failures", "Count"}, {"Seconds", "Seconds"}}
	if a.Measured {
		line["DriftMissing"], line["DriftDeleted"] = a.Missing, a.Deleted
		metrics = append(metrics, emfMetric{"DriftMissing", "Count"}, emfMetric{"DriftDeleted", "Count"})
		if a.WarehouseChecked {
			line["DriftWarehouse"] = a.Warehouse
			metrics = append(metrics, emfMetric{"DriftWarehouse", "Count"})
		}
	}
	if a.Batch != "" {
		line["batch"] = a.Batch
	}
	if a.Repaired != "" {
		line["repaired_batch"] = a.Repaired
	}
	if len(a.Tables) > 0 {
		line["tables"] = a.Tables
	}
	if a.Err != nil {
		line["error_kind"] = string(errkind.Of(a.Err))
	}
	return e.write(AuditStage, line, metrics)
}

// SlotLag is how far wal capture's replication slot holds the source
// back, as the ingest function reads it after a run.
type SlotLag struct {
	Slot string
	// RetainedBytes is the WAL the slot keeps on the source's disk;
	// UnconfirmedBytes the WAL past what capture confirmed.
	RetainedBytes, UnconfirmedBytes int64
	// SafeWALBytes is how much more WAL may be written before
	// max_slot_wal_keep_size invalidates the slot; nil without that limit.
	SafeWALBytes *int64
	WALStatus    string
}

// RecordSlotLag writes the EMF line of the slot's lag, with dimension
// Stage = stage (ingest's):
//
//	SlotRetainedBytes and SlotUnconfirmedBytes (Bytes) and, when
//	max_slot_wal_keep_size limits the slot, SlotSafeWALBytes (Bytes).
//
// A line also carries slot and wal_status, for Logs Insights. An alarm on
// the maximum of SlotRetainedBytes fires when the slot holds back too much
// of the source's disk.
func (e *Writer) RecordSlotLag(stage string, l SlotLag) error {
	line := map[string]any{
		Dimension:              stage,
		"SlotRetainedBytes":    l.RetainedBytes,
		"SlotUnconfirmedBytes": l.UnconfirmedBytes,
		"slot":                 l.Slot,
		"wal_status":           l.WALStatus,
	}
	metrics := []emfMetric{{"SlotRetainedBytes", "Bytes"}, {"SlotUnconfirmedBytes", "Bytes"}}
	if l.SafeWALBytes != nil {
		line["SlotSafeWALBytes"] = *l.SafeWALBytes
		metrics = append(metrics, emfMetric{"SlotSafeWALBytes", "Bytes"})
	}
	return e.write(stage, line, metrics)
}
