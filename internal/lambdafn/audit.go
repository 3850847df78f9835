package lambdafn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/audit"
	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/logging"
	"github.com/sandstone-data/sandstone/internal/metrics/emf"
)

// The messages of the audit stage's one result line: INFO when the source
// and the ingestion bucket agree, WARN (with drift=true) when they do not.
// Drift is a finding, not a failure: only a failure logs an ERROR line.
const (
	MsgAuditClean = "audit found no drift"
	MsgAuditDrift = "audit found drift"
)

// AuditResponse is what the audit stage found.
type AuditResponse struct {
	Drift bool `json:"drift"`
	// Batch is the newest ingested batch the audit compared with.
	Batch string `json:"batch"`
	// Missing and Deleted are the drift in total; Tables has it per table
	// and kind, every table present (Report.DriftRows: source tables with
	// missing and deleted, warehouse tables with missing, duplicated, stale).
	Missing int64                       `json:"missing"`
	Deleted int64                       `json:"deleted"`
	Tables  map[string]map[string]int64 `json:"tables"`
	Summary string                      `json:"summary"`
	// Warehouse has, when the audit checked the warehouse, each warehouse
	// table's rows that differ from the processed bucket (missing,
	// duplicated, stale); WarehouseDrift is their total.
	Warehouse      map[string]map[string]int64 `json:"warehouse,omitempty"`
	WarehouseDrift int64                       `json:"warehouse_drift,omitempty"`
	// Repair is SANDSTONE_AUDIT_REPAIR; Repaired what the repair landed.
	Repair   bool            `json:"repair"`
	Repaired *audit.Repaired `json:"repaired,omitempty"`
}

// audit runs sandstone audit against the ingestion bucket, saves its report
// under audits/ there, and logs and measures what it found.
func (h *Handler) audit(ctx context.Context) (Response, error) {
	start := time.Now()
	resp := Response{Stage: StageAudit, Batches: []string{}, Rows: map[string]int64{}}
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-h.Margin))
		defer cancel()
	}
	b, err := lake.Open(ctx, h.Config.IngestBucket)
	if err != nil {
		return resp, h.failAudit(start, nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingestion bucket: %w", err)))
	}
	defer func() { _ = b.Close() }()
	opts := audit.Options{SourceURL: h.Config.SourceURL, Bucket: b, Lookback: h.Config.Lookback,
		Repair: h.Repair, Logger: h.Logger}
	if h.Warehouse {
		processed, err := lake.Open(ctx, h.Config.ProcessedBucket)
		if err != nil {
			return resp, h.failAudit(start, nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("processed bucket: %w", err)))
		}
		defer func() { _ = processed.Close() }()
		opts.Processed, opts.WarehouseURL, opts.WarehouseSchema = processed, h.Config.WarehouseURL, h.Config.WarehouseSchema
	}
	r, err := audit.Run(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("audit stopped %s before the function's timeout (raise its timeout): %w", h.Margin, err)
		}
		return resp, h.failAudit(start, nil, err)
	}

	found := &AuditResponse{Drift: r.Drift, Batch: r.Batch, Tables: r.DriftRows(), Summary: r.Summary(),
		Repair: h.Repair, Repaired: r.Repaired}
	for _, t := range r.Tables {
		found.Missing += t.Missing
		found.Deleted += t.Deleted
	}
	if r.Warehouse != nil {
		found.Warehouse = map[string]map[string]int64{}
		for name, t := range r.Warehouse {
			found.Warehouse[name] = map[string]int64{"missing": t.Missing, "duplicated": t.Duplicated, "stale": t.Stale}
			found.WarehouseDrift += t.Missing + t.Duplicated + t.Stale
		}
	}
	resp.Audit, resp.Note = found, found.Summary
	if r.Repaired != nil {
		resp.Batches = []string{r.Repaired.Batch}
		for t, n := range r.Repaired.Rows {
			resp.Rows[t] = n
		}
	}
	saveErr := audit.Save(ctx, b, r)

	attrs := []slog.Attr{
		slog.String(logging.KeyStage, StageAudit),
		slog.Bool("drift", r.Drift),
		slog.Int64("missing", found.Missing),
		slog.Int64("deleted", found.Deleted),
		slog.String(logging.KeyBatch, r.Batch),
		slog.String("summary", found.Summary),
		slog.Bool("repair", h.Repair),
		slog.Float64(logging.KeySeconds, time.Since(start).Seconds()),
	}
	if r.Warehouse != nil {
		attrs = append(attrs, slog.Int64("warehouse_drift", found.WarehouseDrift))
	}
	if r.Repaired != nil {
		attrs = append(attrs, slog.String("repaired_batch", r.Repaired.Batch))
	}
	if r.Drift {
		h.Logger.LogAttrs(ctx, slog.LevelWarn, MsgAuditDrift, attrs...)
	} else {
		h.Logger.LogAttrs(ctx, slog.LevelInfo, MsgAuditClean, attrs...)
	}
	if saveErr != nil {
		return resp, h.failAudit(start, found, errkind.Default(errkind.BucketWriteFailed, saveErr))
	}
	_ = h.EMF.RecordAudit(auditRun(start, found, nil))
	return resp, nil
}

func auditRun(start time.Time, found *AuditResponse, err error) emf.AuditRun {
	a := emf.AuditRun{Duration: time.Since(start), Err: err}
	if found != nil {
		a.Measured, a.Missing, a.Deleted, a.Batch, a.Tables = true, found.Missing, found.Deleted, found.Batch, found.Tables
		a.WarehouseChecked, a.Warehouse = found.Warehouse != nil, found.WarehouseDrift
		if found.Repaired != nil {
			a.Repaired = found.Repaired.Batch
		}
	}
	return a
}

// failAudit logs the audit's one ERROR line and its metrics (with the
// drift, when the audit got as far as finding it), and returns an error
// whose text carries no secret.
func (h *Handler) failAudit(start time.Time, found *AuditResponse, err error) error {
	logging.Failure(h.Logger, StageAudit, "", err)
	_ = h.EMF.RecordAudit(auditRun(start, found, err))
	return errors.New(config.Redact(fmt.Sprintf("%s failed (%s): %v", StageAudit, errkind.Of(err), err)))
}
