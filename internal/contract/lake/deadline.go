package lake

import "time"

// Fits is the deadline policy of every stage that works in batches: a
// batch started at may start when, taking as long as the longest batch so
// far and half as long again, it ends no later than deadline. A zero
// deadline is none; the first batch (longest zero) may start up to the
// deadline itself.
func Fits(deadline, at time.Time, longest time.Duration) bool {
	return deadline.IsZero() || !at.Add(longest+longest/2).After(deadline)
}

// Stopped is the stop policy of every stage that works in batches: stop
// is a graceful stop asked for (a first Ctrl-C or SIGTERM), checked at each
// batch boundary beside Fits, before the first batch too; once it is
// closed, no further batch starts. A nil stop is never asked for.
func Stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}
