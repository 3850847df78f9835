package warehouse

import "time"

// BehindSource is how far the warehouse is behind the source at now, when
// it holds every source change made before caughtUpTo (the snapshot of the
// newest batch loaded, see pipeline.CaughtUp): `sandstone run`'s alert and
// gauge, the load function's metric and `sandstone status` all count it so. Never
// negative; zero when caughtUpTo is (not known).
func BehindSource(caughtUpTo, now time.Time) time.Duration {
	if caughtUpTo.IsZero() {
		return 0
	}
	return max(0, now.Sub(caughtUpTo))
}
