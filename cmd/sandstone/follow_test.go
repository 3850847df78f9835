package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

// TestFollowOutput: run --follow prints the stage runs that did something,
// and sums every stage up in a line a while.
func TestFollowOutput(t *testing.T) {
	var out, logs bytes.Buffer
	p := busyPrinter{printer{&out}}
	f := &followLog{log: slog.New(slog.NewJSONHandler(&logs, nil)), every: time.Hour, since: time.Now()}
	ctx := context.Background()
	for _, r := range []pipeline.Report{
		{Stage: pipeline.Ingest, Note: "nothing new"},
		{Stage: pipeline.Ingest, Batches: []string{"000000000007"}, Rows: map[string]int64{"sales_order": 3}},
		{Stage: pipeline.Load, Batches: []string{"000000000007"}, Rows: map[string]int64{"fact_sales_order": 3}},
	} {
		p.StageDone(ctx, r)
		f.StageDone(ctx, r)
	}
	if got := out.String(); strings.Contains(got, "nothing new") || !strings.Contains(got, "batch 000000000007") {
		t.Errorf("printed:\n%s", got)
	}
	if logs.Len() != 0 {
		t.Errorf("summed up before its time: %s", logs.String())
	}
	f.StageFailed(ctx, pipeline.Load, "r", nil) // failures alert; they are not summed
	f.every = 0
	f.StageDone(ctx, pipeline.Report{Stage: pipeline.Transform, Batches: []string{"000000000007"}, Rows: map[string]int64{"fact_sales_order": 3}})
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, logs.String())
	}
	if line["msg"] != "following the source" || line["ingested_batches"] != 1.0 || line["ingested_rows"] != 3.0 ||
		line["transformed_rows"] != 3.0 || line["loaded_rows"] != 3.0 {
		t.Errorf("summed up as %v", line)
	}
}
