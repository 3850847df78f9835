package emf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

func emfLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(buf)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// wantAWS is the _aws member of an EMF line, decoded as JSON.
func wantAWS(ms int64, metrics ...[2]string) map[string]any {
	var defs []any
	for _, m := range metrics {
		defs = append(defs, map[string]any{"Name": m[0], "Unit": m[1]})
	}
	return map[string]any{
		"Timestamp": float64(ms),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  "Sandstone",
			"Dimensions": []any{[]any{"Stage"}},
			"Metrics":    defs,
		}},
	}
}

var baseMetrics = [][2]string{{"Rows", "Count"}, {"Bytes", "Bytes"}, {"Seconds", "Seconds"}, {"Failures", "Count"}}

func TestEMFLines(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf)
	at := time.Date(2024, 11, 15, 10, 0, 0, 123_000_000, time.UTC)
	e.now = func() time.Time { return at }

	runs := []StageRun{
		{Stage: "ingest", RunID: "r1", Duration: 2500 * time.Millisecond,
			Rows: map[string]int64{"sales_order": 20, "payment": 5}, Bytes: map[string]int64{"sales_order": 1000, "payment": 24}},
		{Stage: "load", RunID: "r1", Duration: 4 * time.Second,
			Rows: map[string]int64{"fact_sales_order": 20}, Freshness: 95 * time.Second, BehindSource: 40 * time.Second},
		{Stage: "transform", RunID: "r2", Duration: time.Second,
			Err: fmt.Errorf("transform: %w", errkind.Wrap(errkind.BadRowsRejected, errors.New("2 rows")))},
	}
	for _, r := range runs {
		if err := e.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d lines, want 3: %s", n, buf.String())
	}
	lines := emfLines(t, &buf)
	ms := at.UnixMilli()
	want := []map[string]any{
		{
			"_aws":  wantAWS(ms, baseMetrics...),
			"Stage": "ingest", "Rows": 25.0, "Bytes": 1024.0, "Seconds": 2.5, "Failures": 0.0, "run_id": "r1",
		},
		{
			"_aws":  wantAWS(ms, append(baseMetrics, [2]string{"FreshnessSeconds", "Seconds"}, [2]string{"BehindSourceSeconds", "Seconds"})...),
			"Stage": "load", "Rows": 20.0, "Bytes": 0.0, "Seconds": 4.0, "Failures": 0.0, "FreshnessSeconds": 95.0,
			"BehindSourceSeconds": 40.0, "run_id": "r1",
		},
		{
			"_aws":  wantAWS(ms, baseMetrics...),
			"Stage": "transform", "Rows": 0.0, "Bytes": 0.0, "Seconds": 1.0, "Failures": 1.0, "run_id": "r2",
			"error_kind": "bad_rows_rejected",
		},
	}
	for i := range want {
		if !reflect.DeepEqual(lines[i], want[i]) {
			got, _ := json.Marshal(lines[i])
			exp, _ := json.Marshal(want[i])
			t.Errorf("line %d:\n got %s\nwant %s", i, got, exp)
		}
	}
}

// Every metric an EMF directive names must be a top-level number.
func TestEMFMetricsPresent(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf)
	if err := e.Record(StageRun{Stage: "load", Freshness: time.Minute}); err != nil {
		t.Fatal(err)
	}
	line := emfLines(t, &buf)[0]
	aws := line["_aws"].(map[string]any)
	if ts := int64(aws["Timestamp"].(float64)); time.Since(time.UnixMilli(ts)) > time.Hour {
		t.Errorf("Timestamp %d is not now in ms", ts)
	}
	for _, d := range aws["CloudWatchMetrics"].([]any) {
		for _, m := range d.(map[string]any)["Metrics"].([]any) {
			name := m.(map[string]any)["Name"].(string)
			if _, ok := line[name].(float64); !ok {
				t.Errorf("metric %s has no numeric value", name)
			}
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

func TestEMFWriteError(t *testing.T) {
	err := New(failingWriter{}).Record(StageRun{Stage: "ingest"})
	if err == nil || !strings.Contains(err.Error(), "stdout closed") {
		t.Fatalf("Record to a failing writer: %v", err)
	}
}

// TestEMFAudit: an audit's line carries the drift totals only when the
// audit measured them, and AuditSucceeded / Failures either way.
func TestEMFAudit(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf)
	at := time.Date(2024, 11, 15, 10, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return at }
	runs := []AuditRun{
		{Duration: 3 * time.Second, Measured: true, Missing: 2, Deleted: 1, Batch: "000000000042", Repaired: "000000000043",
			Tables: map[string]map[string]int64{"payment": {"missing": 0, "deleted": 1}, "design": {"missing": 2, "deleted": 0}}},
		{Duration: time.Second, Measured: true, WarehouseChecked: true},
		{Duration: time.Second, Err: fmt.Errorf("audit: %w", errkind.Wrap(errkind.SourceUnreachable, errors.New("refused")))},
	}
	for _, r := range runs {
		if err := e.RecordAudit(r); err != nil {
			t.Fatal(err)
		}
	}
	base := [][2]string{{"AuditSucceeded", "Count"}, {"Failures", "Count"}, {"Seconds", "Seconds"}}
	drift := append(slices.Clone(base), [2]string{"DriftMissing", "Count"}, [2]string{"DriftDeleted", "Count"})
	ms := at.UnixMilli()
	want := []map[string]any{
		{
			"_aws": wantAWS(ms, drift...), "Stage": "audit", "AuditSucceeded": 1.0, "Failures": 0.0, "Seconds": 3.0,
			"DriftMissing": 2.0, "DriftDeleted": 1.0, "batch": "000000000042", "repaired_batch": "000000000043",
			"tables": map[string]any{"payment": map[string]any{"missing": 0.0, "deleted": 1.0}, "design": map[string]any{"missing": 2.0, "deleted": 0.0}},
		},
		{
			"_aws": wantAWS(ms, append(slices.Clone(drift), [2]string{"DriftWarehouse", "Count"})...), "Stage": "audit", "AuditSucceeded": 1.0, "Failures": 0.0, "Seconds": 1.0,
			"DriftMissing": 0.0, "DriftDeleted": 0.0, "DriftWarehouse": 0.0,
		},
		{
			"_aws": wantAWS(ms, base...), "Stage": "audit", "AuditSucceeded": 0.0, "Failures": 1.0, "Seconds": 1.0,
			"error_kind": "source_unreachable",
		},
	}
	lines := emfLines(t, &buf)
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(lines[i], want[i]) {
			got, _ := json.Marshal(lines[i])
			exp, _ := json.Marshal(want[i])
			t.Errorf("line %d:\n got %s\nwant %s", i, got, exp)
		}
	}
	if err := New(failingWriter{}).RecordAudit(AuditRun{}); err == nil || !strings.Contains(err.Error(), "emf audit") {
		t.Fatalf("RecordAudit to a failing writer: %v", err)
	}
}

// TestSlotLagLine: the slot's lag is a line of the ingest stage, with the
// safe size only when max_slot_wal_keep_size limits the slot.
func TestSlotLagLine(t *testing.T) {
	var buf bytes.Buffer
	e := New(&buf)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return at }
	safe := int64(3 << 20)
	if err := e.RecordSlotLag("ingest", SlotLag{Slot: "sandstone_totesys", RetainedBytes: 5 << 20, UnconfirmedBytes: 1 << 20, SafeWALBytes: &safe, WALStatus: "reserved"}); err != nil {
		t.Fatal(err)
	}
	if err := e.RecordSlotLag("ingest", SlotLag{Slot: "sandstone_totesys", RetainedBytes: 7, WALStatus: "extended"}); err != nil {
		t.Fatal(err)
	}
	lines := emfLines(t, &buf)
	want := []map[string]any{
		{"Stage": "ingest", "SlotRetainedBytes": float64(5 << 20), "SlotUnconfirmedBytes": float64(1 << 20), "SlotSafeWALBytes": float64(3 << 20),
			"slot": "sandstone_totesys", "wal_status": "reserved",
			"_aws": wantAWS(at.UnixMilli(), [2]string{"SlotRetainedBytes", "Bytes"}, [2]string{"SlotUnconfirmedBytes", "Bytes"}, [2]string{"SlotSafeWALBytes", "Bytes"})},
		{"Stage": "ingest", "SlotRetainedBytes": float64(7), "SlotUnconfirmedBytes": float64(0), "slot": "sandstone_totesys", "wal_status": "extended",
			"_aws": wantAWS(at.UnixMilli(), [2]string{"SlotRetainedBytes", "Bytes"}, [2]string{"SlotUnconfirmedBytes", "Bytes"})},
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines\n%v\nwant\n%v", lines, want)
	}
}
