package pipeline

import (
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// TestBehindSource: load's snapshot counts; ingest's only once nothing
// waits; the newest wins; nothing known is no lag, and a snapshot ahead of
// the clock is none either.
func TestBehindSource(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	loaded, read := now.Add(-time.Hour), now.Add(-time.Minute)
	reports := []Report{{Stage: Ingest, SnapshotAt: read}, {Stage: Transform, SnapshotAt: now}, {Stage: Load, SnapshotAt: loaded}}
	for _, c := range []struct {
		reports []Report
		drained bool
		want    time.Duration
	}{
		{reports, false, time.Hour},
		{reports, true, time.Minute},
		{reports[:1], false, 0},
		{reports[:2], false, 0},
		{nil, true, 0},
		{[]Report{{Stage: Load, SnapshotAt: now.Add(time.Second)}}, false, 0},
	} {
		if got := warehouse.BehindSource(CaughtUp(c.reports, c.drained), now); got != c.want {
			t.Errorf("%d reports, drained %v: %s behind, want %s", len(c.reports), c.drained, got, c.want)
		}
	}
}
