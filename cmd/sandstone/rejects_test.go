package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/status"
	"github.com/sandstone-data/sandstone/internal/stage/transform"
)

// TestRejectsCommand: a row that can never load and one that waits for a
// design (committed too late for any window) are both listed, with their
// ids and reasons; the waiting one is parked, and flows once an audit
// repairs its design.
func TestRejectsCommand(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	src := sb.Config.SourceURL
	if _, err := runCLI(ctx, "seed", "--source", src, "--sales-orders", "50"); err != nil {
		t.Fatal(err)
	}
	all := []string{"--source", src, "--warehouse", sb.Config.WarehouseURL,
		"--ingest-bucket", sb.Config.IngestBucket, "--processed-bucket", sb.Config.ProcessedBucket}
	if out, err := runCLI(ctx, append([]string{"run", "--once"}, all...)...); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	pgtest.Exec(t, src, `
		INSERT INTO design VALUES (99999, '2020-01-01', 'Late', '/l', 'l', '2020-01-01');
		INSERT INTO sales_order VALUES (90001, LOCALTIMESTAMP, LOCALTIMESTAMP, 1, 1, 1, 5, 2.50, 1, 'soon', '2026-01-03', 1);
		INSERT INTO sales_order VALUES (90002, LOCALTIMESTAMP, LOCALTIMESTAMP, 99999, 1, 1, 5, 2.50, 1, '2026-01-02', '2026-01-03', 1)`)
	if out, err := runCLI(ctx, append([]string{"run", "--once"}, all...)...); err != nil || !strings.Contains(out, "rejected 2, parked 1 (sandstone rejects lists them)") {
		t.Fatalf("run (%v) does not show the rejects:\n%s", err, out)
	}
	rejects := func() (out struct {
		Rejects []transform.Reject `json:"rejects"`
		Parked  []transform.Parked `json:"parked"`
	}) {
		t.Helper()
		text, err := runCLI(ctx, "rejects", "--json", "--processed-bucket", sb.Config.ProcessedBucket)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(text), &out); err != nil {
			t.Fatalf("rejects --json: %v\n%s", err, text)
		}
		return out
	}
	got := rejects()
	byID := map[int64]transform.Reject{}
	for _, r := range got.Rejects {
		if r.ID != nil {
			byID[*r.ID] = r
		}
	}
	if bad := byID[90001]; bad.Table != "sales_order" || bad.Kind != "bad_value" || !strings.Contains(bad.Reason, "soon") || bad.Batch != "000000000002" {
		t.Errorf("the bad date: %+v", bad)
	}
	if ref := byID[90002]; ref.Kind != "missing_reference" || !strings.Contains(ref.Reason, "99999") {
		t.Errorf("the missing design: %+v", ref)
	}
	if len(got.Parked) != 1 || got.Parked[0].ID == nil || *got.Parked[0].ID != 90002 || got.Parked[0].Since != "000000000002" || got.Parked[0].SinceAt.IsZero() {
		t.Fatalf("parked: %+v", got.Parked)
	}
	text, err := runCLI(ctx, "rejects", "--processed-bucket", sb.Config.ProcessedBucket)
	if err != nil || !strings.Contains(text, "Rejected rows: 2") || !strings.Contains(text, "Parked rows (waiting for a row they refer to): 1") {
		t.Errorf("rejects text (%v):\n%s", err, text)
	}
	st := status.Gather(ctx, sb.Config, filepath.Join(t.TempDir(), "none.json"))
	if st.Rejected["sales_order"]["bad_value"] != 1 || st.Rejected["sales_order"]["missing_reference"] != 1 || st.Parked == nil || *st.Parked != 1 || st.OldestParkedSeconds <= 0 {
		t.Errorf("status: rejected %v, parked %d for %.1fs", st.Rejected, st.Parked, st.OldestParkedSeconds)
	}
	var stText strings.Builder
	_ = st.WriteText(&stText)
	if !strings.Contains(stText.String(), "sales_order      1 bad_value, 1 missing_reference") || !strings.Contains(stText.String(), "1 parked, waiting") {
		t.Errorf("status text:\n%s", stText.String())
	}

	if out, err := runCLI(ctx, "audit", "--repair", "--source", src, "--ingest-bucket", sb.Config.IngestBucket); err == nil {
		t.Fatalf("audit found no drift:\n%s", out)
	}
	if out, err := runCLI(ctx, append([]string{"run", "--once"}, all...)...); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if got := rejects(); len(got.Parked) != 0 || len(got.Rejects) != 2 {
		t.Errorf("after the design arrived: %d parked, %d rejects", len(got.Parked), len(got.Rejects))
	}
	if text, err := runCLI(ctx, "rejects", "--processed-bucket", filepath.Join(t.TempDir(), "none")); err != nil || !strings.Contains(text, "no batches yet") {
		t.Errorf("rejects of an empty bucket (%v): %s", err, text)
	}
}
