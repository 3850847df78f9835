package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFollow: the later stages run after each run of the first that
// landed a batch, and are told its reports; a failing first stage is told
// and tried again after the interval; Stop ends it all, and Follow
// returns nil.
func TestFollow(t *testing.T) {
	var mu sync.Mutex
	var leads, downstream int
	stop := make(chan struct{})
	first := Stage{Name: "ingest", Run: func(ctx context.Context, run Run) (Report, error) {
		mu.Lock()
		leads++
		n := leads
		mu.Unlock()
		switch {
		case n == 2:
			return Report{}, errors.New("source down")
		case n <= 4:
			return Report{Batches: []string{"b"}, Rows: map[string]int64{"t": 1}}, nil
		}
		<-run.Stop // waits for a change that never comes
		return Report{Note: "nothing new"}, nil
	}}
	rest := Stage{Name: "load", Run: func(context.Context, Run) (Report, error) {
		mu.Lock()
		downstream++
		mu.Unlock()
		return Report{Rows: map[string]int64{}}, nil
	}}
	r := &Runner{Stages: []Stage{first, rest}, Stop: stop, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	var told []Report
	var errs []error
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(context.Background(), 20*time.Millisecond, func(reps []Report, err error) {
			told = append(told, reps...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := leads
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the first stage ran %d times, want 5", n)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Follow stopped with %v", err)
	}
	var ingested int
	for _, rep := range told {
		if rep.Stage == "ingest" {
			ingested += len(rep.Batches)
		}
	}
	if ingested != 3 || downstream == 0 {
		t.Errorf("told of %d ingested batches (want 3), the later stages ran %d times", ingested, downstream)
	}
	if len(errs) == 0 || !strings.Contains(errors.Join(errs...).Error(), "ingest: source down") {
		t.Errorf("the first stage's failure was not told: %v", errs)
	}
}

// TestFollowRefuses: no interval, no stage.
func TestFollowRefuses(t *testing.T) {
	if err := (&Runner{Stages: []Stage{{Name: "x"}}}).Follow(context.Background(), 0, nil); err == nil {
		t.Error("a zero interval was taken")
	}
	if err := (&Runner{}).Follow(context.Background(), time.Second, nil); err == nil {
		t.Error("no stage was taken")
	}
}

// TestFollowEndsWithItsContext: without Stop, ctx's end stops the first
// stage's wait at once.
func TestFollowEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	var once sync.Once
	first := Stage{Name: "ingest", Run: func(ctx context.Context, run Run) (Report, error) {
		once.Do(func() { close(waiting) })
		select {
		case <-run.Stop:
			return Report{}, nil
		case <-time.After(time.Minute):
			return Report{}, errors.New("waited a minute")
		}
	}}
	r := &Runner{Stages: []Stage{first}, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() { done <- r.Follow(ctx, time.Hour, nil) }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not end with its context")
	}
}
