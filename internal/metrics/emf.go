package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/errkind"
)

// The CloudWatch namespace and dimension of the EMF lines.
const (
	EMFNamespace = "Sandstone"
	EMFDimension = "Stage"
)

// EMF writes CloudWatch Embedded Metric Format lines: one JSON object per
// stage run, which CloudWatch Logs turns into metrics in namespace
// "Sandstone" with dimension "Stage":
//
//	Rows (Count), Bytes (Bytes), Seconds (Seconds), Failures (Count) and,
//	when the run measured it, FreshnessSeconds (Seconds).
//
// A line also carries run_id and, for a failure, error_kind, for Logs
// Insights. Its methods are safe for concurrent use.
type EMF struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewEMF returns an EMF emitter writing to w (a Lambda's stdout).
func NewEMF(w io.Writer) *EMF {
	return &EMF{w: w, now: time.Now}
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
func (e *EMF) Record(r StageRun) error {
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
		EMFDimension: r.Stage,
		"Rows":       rows,
		"Bytes":      bytes,
		"Seconds":    r.Duration.Seconds(),
		"Failures":   failures,
		"run_id":     r.RunID,
	}
	metrics := []emfMetric{{"Rows", "Count"}, {"Bytes", "Bytes"}, {"Seconds", "Seconds"}, {"Failures", "Count"}}
	if r.Freshness > 0 {
		line["FreshnessSeconds"] = r.Freshness.Seconds()
		metrics = append(metrics, emfMetric{"FreshnessSeconds", "Seconds"})
	}
	if r.Err != nil {
		line["error_kind"] = string(errkind.Of(r.Err))
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	line["_aws"] = emfMeta{
		Timestamp: e.now().UnixMilli(),
		CloudWatchMetrics: []emfDirective{{
			Namespace:  EMFNamespace,
			Dimensions: [][]string{{EMFDimension}},
			Metrics:    metrics,
		}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("emf %s: %w", r.Stage, err)
	}
	if _, err := e.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("emf %s: write: %w", r.Stage, err)
	}
	return nil
}
