package lambdafn

import (
	"testing"
	"time"
)

func TestStageDeadlineLeavesTimeForABatch(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		timeout, want time.Duration // the invocation's time, and the stage's
	}{
		{600 * time.Second, 585 * time.Second}, // the margin
		{60 * time.Second, 45 * time.Second},
		{40 * time.Second, 30 * time.Second}, // a quarter
		{10 * time.Second, 7500 * time.Millisecond},
	} {
		if got := stageDeadline(now.Add(tc.timeout), now, 15*time.Second).Sub(now); got != tc.want {
			t.Errorf("with %s left the stage has %s, want %s", tc.timeout, got, tc.want)
		}
	}
}
