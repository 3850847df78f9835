package metrics

import "github.com/prometheus/client_golang/prometheus"

// slotGauges are the gauges of wal capture's replication slot, by slot.
type slotGauges struct {
	retained, unconfirmed, safe *prometheus.GaugeVec
}

func newSlotGauges() slotGauges {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"slot"})
	}
	return slotGauges{
		retained: gauge("sandstone_slot_retained_wal_bytes",
			"WAL the replication slot of --capture wal holds back on the source's disk (from its restart_lsn; alert on this)."),
		unconfirmed: gauge("sandstone_slot_unconfirmed_wal_bytes",
			"WAL written on the source since the position capture last confirmed to the slot."),
		safe: gauge("sandstone_slot_safe_wal_bytes",
			"WAL that may still be written before max_slot_wal_keep_size invalidates the slot; absent when there is no such limit."),
	}
}

func (s slotGauges) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.retained, s.unconfirmed, s.safe}
}

// SlotLag records how far wal capture's replication slot holds the source
// back: the WAL it retains, the WAL past what capture confirmed, and, when
// max_slot_wal_keep_size limits it (safe not nil), how much more WAL may
// be written before the slot is invalidated.
func (m *Metrics) SlotLag(slot string, retained, unconfirmed int64, safe *int64) {
	m.slot.retained.WithLabelValues(slot).Set(float64(retained))
	m.slot.unconfirmed.WithLabelValues(slot).Set(float64(unconfirmed))
	if safe == nil {
		m.slot.safe.DeleteLabelValues(slot)
		return
	}
	m.slot.safe.WithLabelValues(slot).Set(float64(*safe))
}
