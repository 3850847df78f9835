package lambdafn

import (
	"context"
	"fmt"
	"time"

	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/ops/metrics/emf"
)

// The messages of the audit stage's one result line (audit.Driver's): INFO
// when the source and the ingestion bucket agree, WARN (with drift=true)
// when they do not. Drift is a finding, not a failure: only a failure logs
// an ERROR line.
const (
	MsgAuditClean = audit.MsgClean
	MsgAuditDrift = audit.MsgDrift
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

// audit runs sandstone audit through audit.Driver, the one audit path: its
// result line, its report saved under audits/ in the ingestion bucket, and
// an EMF line of what it found.
func (h *Handler) audit(ctx context.Context) (Response, error) {
	resp := Response{Stage: StageAudit, Batches: []string{}, Rows: map[string]int64{}}
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		stop := stageDeadline(dl, time.Now(), h.Margin)
		ctx, cancel = context.WithDeadlineCause(ctx, stop,
			fmt.Errorf("audit stopped %s before the function's timeout (raise its timeout)", dl.Sub(stop).Round(time.Millisecond)))
		defer cancel()
	}
	cfg := h.Config
	if !h.Warehouse {
		cfg.WarehouseURL = "" // the audit checks the warehouse only when given it
	}
	d := &audit.Driver{Logger: h.Logger, Observers: []audit.Observer{emfAudit{h.EMF, time.Now()}}}
	r, err := d.Audit(ctx, cfg)
	if err != nil {
		return resp, failed(StageAudit, err)
	}
	found := &AuditResponse{Drift: r.Drift, Batch: r.Batch, Tables: r.DriftRows(), Summary: r.Summary(),
		Repair: cfg.AuditRepair, Repaired: r.Repaired}
	found.Missing, found.Deleted = r.SourceDrift()
	if r.Warehouse != nil {
		found.Warehouse = map[string]map[string]int64{}
		for name, t := range r.Warehouse {
			found.Warehouse[name] = map[string]int64{"missing": t.Missing, "duplicated": t.Duplicated, "stale": t.Stale}
		}
		found.WarehouseDrift = r.WarehouseDrift()
	}
	resp.Audit, resp.Note = found, found.Summary
	if r.Repaired != nil {
		resp.Batches = []string{r.Repaired.Batch}
		for t, n := range r.Repaired.Rows {
			resp.Rows[t] = n
		}
	}
	return resp, nil
}

// emfAudit writes the EMF line of an audit that began at start.
type emfAudit struct {
	w     *emf.Writer
	start time.Time
}

func (o emfAudit) AuditDone(_ context.Context, r audit.Report) {
	_ = o.w.RecordAudit(auditRun(o.start, &r, nil))
}

func (o emfAudit) AuditFailed(_ context.Context, err error) {
	_ = o.w.RecordAudit(auditRun(o.start, nil, err))
}

// auditRun is the EMF record of an audit: with its findings when it ran to
// its end (r not nil).
func auditRun(start time.Time, r *audit.Report, err error) emf.AuditRun {
	a := emf.AuditRun{Duration: time.Since(start), Err: err}
	if r != nil {
		a.Measured, a.Batch, a.Tables = true, r.Batch, r.DriftRows()
		a.Missing, a.Deleted = r.SourceDrift()
		a.WarehouseChecked, a.Warehouse = r.Warehouse != nil, r.WarehouseDrift()
		if r.Repaired != nil {
			a.Repaired = r.Repaired.Batch
		}
	}
	return a
}
