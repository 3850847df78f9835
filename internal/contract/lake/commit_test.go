package lake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// TestCommit: the state is saved under state/ and named by the manifest,
// which is created last and exclusively; a second run's commit of the same
// batch reports false and leaves the first's manifest as it was.
func TestCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := memBucket(t)
	type state struct{ N int }
	first := &Manifest{Stage: "ingest", Sequence: 3, RunID: "a"}
	if ok, err := b.Commit(ctx, first, state{N: 1}); !ok || err != nil {
		t.Fatalf("commit: %v, %v", ok, err)
	}
	if first.StateKey != StateKey(3, "a") || first.CreatedAt.IsZero() {
		t.Fatalf("state key %q, created at %v", first.StateKey, first.CreatedAt)
	}
	var m Manifest
	var st state
	if err := b.ReadManifest(ctx, 3, &m); err != nil || m.StateKey != first.StateKey || m.RunID != "a" {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	if err := b.ReadState(ctx, m.StateKey, &st); err != nil || st.N != 1 {
		t.Fatalf("state %+v, %v", st, err)
	}
	second := &Manifest{Stage: "ingest", Sequence: 3, RunID: "b"}
	if ok, err := b.Commit(ctx, second, state{N: 2}); ok || err != nil {
		t.Fatalf("second commit: %v, %v; want false, no error", ok, err)
	}
	if err := b.ReadManifest(ctx, 3, &m); err != nil || m.RunID != "a" {
		t.Fatalf("manifest after the second commit %+v, %v", m, err)
	}
	// No state: none saved, none named.
	inline := &Manifest{Sequence: 4, RunID: "c"}
	if ok, err := b.Commit(ctx, inline, nil); !ok || err != nil || inline.StateKey != "" {
		t.Fatalf("commit without state: %v, %v, state key %q", ok, err, inline.StateKey)
	}
	if _, err := b.Get(ctx, StateKey(4, "c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a state saved for a commit without one: %v", err)
	}
	// A state that does not encode is the code's fault.
	if _, err := b.Commit(ctx, &Manifest{Sequence: 5, RunID: "d"}, func() {}); errkind.Of(err) != errkind.Internal {
		t.Fatalf("unencodable state: %v (kind %s), want kind internal", err, errkind.Of(err))
	}
}

func TestFits(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		deadline time.Time
		longest  time.Duration
		want     bool
	}{
		{time.Time{}, time.Hour, true},                    // no deadline
		{at.Add(time.Second), 0, true},                    // the first batch starts before the deadline
		{at, 0, true},                                     // ... or at it
		{at.Add(-time.Second), 0, false},                  // not after it
		{at.Add(90 * time.Second), time.Minute, true},     // a minute, and half again, fits
		{at.Add(89 * time.Second), time.Minute, false},    // ... with no second to spare
		{at.Add(10 * time.Minute), 5 * time.Minute, true}, // 7.5 minutes of 10
	} {
		if got := Fits(tc.deadline, at, tc.longest); got != tc.want {
			t.Errorf("Fits(%v, longest %s) = %v, want %v", tc.deadline.Sub(at), tc.longest, got, tc.want)
		}
	}
}

// memBucket is an empty in-memory bucket, closed when the test ends.
func memBucket(t *testing.T) *Bucket {
	t.Helper()
	b, err := Open(context.Background(), "mem://")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
