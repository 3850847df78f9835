package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunWALTiny runs the bench with the poll and the wal side by side at
// a tiny size: every wal phase runs and reports its figures (none is held
// to a time).
func TestRunWALTiny(t *testing.T) {
	exe := sandstoneBinary(t)
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{
		Dir: filepath.Join(t.TempDir(), "bench"), SalesOrders: 2000, Captures: []string{"poll", "wal"},
		FreshnessChanges: -1, BoundedBatchRows: -1, Poll: 50 * time.Millisecond,
		WALFreshnessChanges: 30, WALFreshnessRate: 30, WALFollow: true, HoldBackMB: 4, BigTransactionRows: 1500,
		Executable: exe, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	w := res.WAL
	if w == nil {
		t.Fatalf("no wal figures:\n%s", progress.String())
	}
	if w.InitialSeconds <= 0 || w.InitialRatio <= 0 || w.InitialStageSeconds["load"] <= 0 {
		t.Errorf("wal initial: %+v", w)
	}
	if c := w.Incremental; c == nil || c.Changes != res.IncrementalChanges || c.Changes == 0 || c.Seconds <= 0 ||
		c.Floor.ReadRows < c.Changes || c.Floor.ReadSeconds <= 0 || c.Floor.Ratio <= 0 ||
		c.Floor.StreamSeconds <= 0 || c.Floor.StreamRatio <= 0 {
		t.Errorf("wal incremental %+v, the poll's changes %d", c, res.IncrementalChanges)
	}
	if f := w.Freshness; f == nil || !f.Follow || f.Changes < 30 || f.Measured == 0 || f.Missing != 0 || f.Rate <= 0 {
		t.Errorf("wal freshness %+v", f)
	}
	if c := w.FollowCycle; c == nil || c.Changes == 0 || c.Seconds <= 0 || c.FloorRatio <= 0 || c.StreamFloorRatio <= 0 {
		t.Errorf("wal cycle while following %+v", c)
	}
	if h := w.HoldBack; h == nil || h.WrittenMB < 4 || h.WALStatus == "" || h.FollowSeconds <= 0 || h.FollowMB >= 16 {
		t.Errorf("wal hold-back %+v", h)
	}
	if c := w.BigTransaction; c == nil || c.Changes != 1500 || c.PeakRSSMB["transform"] <= 0 {
		t.Errorf("wal big transaction %+v", c)
	}
	if c := res.BigTransaction; c == nil || c.Changes != 1500 {
		t.Errorf("poll big transaction %+v", c)
	}
	for _, s := range append(Stages, "run") {
		if w.PeakRSSMB[s] <= 0 || w.PeakRSSWhere[s] == "" {
			t.Errorf("wal peak RSS of %s: %v %v", s, w.PeakRSSMB, w.PeakRSSWhere)
		}
	}

	var js bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Captures []string       `json:"captures"`
		WAL      map[string]any `json:"wal"`
	}
	if err := json.Unmarshal(js.Bytes(), &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"initial_seconds", "initial_ratio", "incremental", "follow_cycle", "freshness", "hold_back", "big_transaction", "peak_rss_mb"} {
		if _, ok := obj.WAL[k]; !ok {
			t.Errorf("the JSON's wal has no %q:\n%s", k, js.String())
		}
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wal initial pipeline", "PG decodes the slot", "wal freshness (run --capture wal --follow", "wal hold-back", "wal: incremental cycle",
		"wal cycle while following", "wal: held back while following", "incremental ("} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
}
