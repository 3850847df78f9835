package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSlotLag: the slot's gauges say what it holds back; the safe size is
// there only while max_slot_wal_keep_size limits the slot; the names lint.
func TestSlotLag(t *testing.T) {
	m := New(Options{})
	safe := int64(3 << 20)
	m.SlotLag("sandstone_totesys", 5<<20, 1<<20, &safe)
	got := scrape(t, serve(t, m))
	for series, want := range map[string]float64{
		`sandstone_slot_retained_wal_bytes{slot="sandstone_totesys"}`:    5 << 20,
		`sandstone_slot_unconfirmed_wal_bytes{slot="sandstone_totesys"}`: 1 << 20,
		`sandstone_slot_safe_wal_bytes{slot="sandstone_totesys"}`:        3 << 20,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry(), "sandstone_slot_retained_wal_bytes", "sandstone_slot_unconfirmed_wal_bytes", "sandstone_slot_safe_wal_bytes")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	m.SlotLag("sandstone_totesys", 6<<20, 0, nil)
	if n := testutil.CollectAndCount(m.slot.safe); n != 0 {
		t.Errorf("%d safe sizes without a limit", n)
	}
	if v := testutil.ToFloat64(m.slot.retained.WithLabelValues("sandstone_totesys")); v != 6<<20 {
		t.Errorf("retained %v after the second reading", v)
	}
}
