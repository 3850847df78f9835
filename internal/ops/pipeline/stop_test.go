package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
)

// TestStopAfterTheBatchUnderWay: a stop asked for mid-stage is said at
// once, naming the stage; the stage is told it (Run.Stop), works under a
// context that the stop does not end, ends without error, and no further
// stage starts.
func TestStopAfterTheBatchUnderWay(t *testing.T) {
	var logs lambdatest.SyncBuffer
	stop := make(chan struct{})
	var ran []string
	rec := &recorder{}
	r := &Runner{Stop: stop, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Observers: []Observer{rec}, Stages: []Stage{
		{Name: "ingest", Run: func(ctx context.Context, run Run) (Report, error) {
			ran = append(ran, "ingest")
			close(stop) // Ctrl-C mid-batch
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logs.String(), "ingest: stopping after the batch under way") && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // said while the batch is still under way
			}
			if ctx.Err() != nil || run.Stop == nil {
				t.Errorf("the stage's context ended (%v) or it was not given the stop", ctx.Err())
			}
			return Report{Note: stoppedNote([]string{"000001"})}, nil
		}},
		{Name: "transform", Run: func(context.Context, Run) (Report, error) {
			ran = append(ran, "transform")
			return Report{}, nil
		}},
	}}
	reports, err := r.Cycle(context.Background())
	if err != nil || strings.Join(ran, ",") != "ingest" || len(reports) != 1 || strings.Join(rec.done, ",") != "ingest" {
		t.Fatalf("ran %v, reports %d, done %v, error %v: want ingest to end cleanly and transform not to start", ran, len(reports), rec.done, err)
	}
	if !strings.Contains(logs.String(), "ingest: stopping after the batch under way") || !strings.Contains(logs.String(), "not_started=[transform]") {
		t.Errorf("log:\n%s", logs.String())
	}
	if !strings.Contains(reports[0].Note, "stopped as asked after batch 000001") {
		t.Errorf("note %q", reports[0].Note)
	}
	if err := r.Loop(context.Background(), time.Hour, nil); err != nil {
		t.Errorf("a loop once stopped: %v", err)
	}
}

// TestSecondStopAbandonsTheBatch: with a stop, the stage works under ctx
// itself: its end (a second Ctrl-C) reaches the stage's I/O at once, and
// the error says so without being a failure told to the observers.
func TestSecondStopAbandonsTheBatch(t *testing.T) {
	stop := make(chan struct{})
	ctx, abort := context.WithCancelCause(context.Background())
	rec := &recorder{}
	var logs lambdatest.SyncBuffer
	r := &Runner{Stop: stop, Retries: 3, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Observers: []Observer{rec}}
	_, err := r.Run(ctx, Stage{Name: "load", Run: func(sctx context.Context, _ Run) (Report, error) {
		close(stop)
		abort(errors.New("a second SIGINT"))
		<-sctx.Done() // the batch's I/O sees it
		return Report{}, sctx.Err()
	}})
	if err == nil || !strings.Contains(err.Error(), "stopped at once (a second SIGINT)") {
		t.Fatalf("error %v", err)
	}
	if len(rec.failed) != 0 || strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("an interrupt told as a failure: failed %v\n%s", rec.failed, logs.String())
	}
}

// TestStopDuringBackoff: a stop asked for while a failed stage waits to be
// tried again starts no retry and returns the stage's error.
func TestStopDuringBackoff(t *testing.T) {
	stop := make(chan struct{})
	calls := 0
	r := &Runner{Stop: stop, Retries: 3, Backoff: time.Hour, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	go func() { time.Sleep(50 * time.Millisecond); close(stop) }()
	_, err := r.Run(context.Background(), Stage{Name: "ingest", Run: func(context.Context, Run) (Report, error) {
		calls++
		return Report{}, errors.New("source down")
	}})
	if err == nil || err.Error() != "source down" || calls != 1 {
		t.Fatalf("calls %d, error %v", calls, err)
	}
}
