package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// AuditTable is one source table in the audit's report: the fields of
// `sandstone audit --json` the benchmark keeps.
type AuditTable struct {
	SourceRows int64 `json:"source_rows"`
	Landed     int64 `json:"landed_versions"`
	Missing    int64 `json:"missing"`
	Pending    int64 `json:"pending"`
	Deleted    int64 `json:"deleted"`
}

// auditReport is what the benchmark reads of `sandstone audit --json`.
type auditReport struct {
	Batch   string                `json:"batch"`
	Drift   bool                  `json:"drift"`
	Seconds float64               `json:"seconds"`
	Tables  map[string]AuditTable `json:"tables"`
}

// auditRun is one run of `sandstone audit --json`.
type auditRun struct {
	StageRun
	report auditReport
}

// audit runs `sandstone audit --json` as a child, as the stages run. Exit
// status 1 (drift) with a report is a finding, not a failure: the caller
// tells it.
func (c children) audit(ctx context.Context) (auditRun, error) {
	var stdout bytes.Buffer
	run, err := c.run(ctx, "audit", &stdout, "audit", "--json")
	a := auditRun{StageRun: run}
	var exit *exec.ExitError
	if drift := errors.As(err, &exit) && run.ExitCode == 1; err != nil && !drift {
		return a, fmt.Errorf("audit: %w", err)
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &a.report); jerr != nil || a.report.Tables == nil {
		return a, fmt.Errorf("audit (exit status %d): its --json output: %v\n%s", run.ExitCode, errors.Join(jerr, err), tail(stdout.String(), 2000))
	}
	return a, nil
}

// setAudit records an audit run.
func (r *Result) setAudit(a auditRun) {
	r.AuditSeconds = a.Duration.Seconds()
	r.AuditPeakRSSMB = float64(a.PeakRSS) / (1 << 20)
	r.AuditExitCode = a.ExitCode
	r.AuditDrift = a.ExitCode != 0 || a.report.Drift
	r.AuditBatch = a.report.Batch
	r.AuditTables = a.report.Tables
	r.AuditSourceRows, r.AuditLandedVersions = 0, 0
	r.AuditMissing, r.AuditPending, r.AuditDeleted = 0, 0, 0
	for _, t := range a.report.Tables {
		r.AuditSourceRows += t.SourceRows
		r.AuditLandedVersions += t.Landed
		r.AuditMissing += t.Missing
		r.AuditPending += t.Pending
		r.AuditDeleted += t.Deleted
	}
	r.AuditSourceCPUSeconds = a.SourceCPU.Seconds()
	if s := r.StageSeconds["ingest"]; s > 0 {
		r.AuditIngestRatio = r.AuditSeconds / s
	}
}

// auditDrift tells the drift the audit found, table by table ("" when
// none).
func (r Result) auditDrift() string {
	if !r.AuditDrift {
		return ""
	}
	names := make([]string, 0, len(r.AuditTables))
	for name, t := range r.AuditTables {
		if t.Missing > 0 || t.Deleted > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names)+1)
	for _, name := range names {
		t := r.AuditTables[name]
		parts = append(parts, fmt.Sprintf("%s %d missing, %d deleted", name, t.Missing, t.Deleted))
	}
	if len(parts) == 0 {
		parts = append(parts, "the report says drift")
	}
	return fmt.Sprintf("exit status %d: %s", r.AuditExitCode, strings.Join(parts, "; "))
}
