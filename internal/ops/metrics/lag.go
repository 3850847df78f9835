package metrics

import (
	"time"

	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// CaughtUp records that the warehouse holds every source change made
// before t (the newest such snapshot is kept).
func (m *Metrics) CaughtUp(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.After(m.caughtUpTo) {
		m.caughtUpTo = t
		m.caughtUp.Set(float64(t.UnixNano()) / 1e9)
	}
}

// BehindSource is how far the warehouse is behind the source: the age of
// the newest snapshot given to CaughtUp, or the time since New when there
// was none. A quiet source keeps it small (every cycle catches up); a
// pipeline that stops keeps it growing.
func (m *Metrics) BehindSource() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	since := m.caughtUpTo
	if since.IsZero() {
		since = m.started
	}
	return warehouse.BehindSource(since, m.now())
}

// SourceChanged records the newest last_updated ingested: when the source
// last changed. Zero is ignored.
func (m *Metrics) SourceChanged(t time.Time) {
	if !t.IsZero() {
		m.lastChange.Set(float64(t.UnixNano()) / 1e9)
	}
}

// SetBuildInfo sets sandstone_build_info to 1 with the build's labels.
func (m *Metrics) SetBuildInfo(version, commit, goVersion string) {
	m.buildInfo.WithLabelValues(version, commit, goVersion).Set(1)
}
