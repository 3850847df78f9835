package pipeline

import "time"

// CaughtUp is the snapshot the stage runs in reports have brought the
// warehouse up to (it holds every source change made before it): load's,
// the snapshot of the newest batch it loaded; or, when nothing is left
// waiting for transform or load (drained), ingest's, the snapshot it read,
// when that is newer, since a quiet source is no lag. Zero when no report
// tells.
func CaughtUp(reports []Report, drained bool) time.Time {
	var to time.Time
	for _, r := range reports {
		if (r.Stage == Load || r.Stage == Ingest && drained) && r.SnapshotAt.After(to) {
			to = r.SnapshotAt
		}
	}
	return to
}
