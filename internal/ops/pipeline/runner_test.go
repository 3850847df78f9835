package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

type recorder struct {
	mu     sync.Mutex
	done   []string
	failed []string
}

func (r *recorder) StageDone(_ context.Context, rep Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = append(r.done, rep.Stage)
}

func (r *recorder) StageFailed(_ context.Context, stage, _ string, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, stage)
}

// flaky fails its first n runs.
func flaky(name string, n int, calls *int) Stage {
	return Stage{Name: name, Run: func(context.Context, Run) (Report, error) {
		*calls++
		if *calls <= n {
			return Report{RunID: "r"}, errkind.Wrap(errkind.SourceUnreachable, errors.New("down"))
		}
		return Report{Rows: map[string]int64{"t": 2, "u": 3}}, nil
	}}
}

func TestCycleRetriesAndGoesOn(t *testing.T) {
	var a, b, c int
	var logs bytes.Buffer
	rec := &recorder{}
	r := &Runner{
		Stages:    []Stage{flaky("ingest", 1, &a), flaky("transform", 10, &b), flaky("load", 0, &c)},
		Retries:   2,
		Backoff:   time.Millisecond,
		Logger:    slog.New(slog.NewJSONHandler(&logs, nil)),
		Observers: []Observer{rec},
	}
	reports, err := r.Cycle(context.Background())
	if err == nil || !strings.Contains(err.Error(), "transform: down") {
		t.Fatalf("cycle error %v, want transform's", err)
	}
	if a != 2 || b != 3 || c != 1 {
		t.Fatalf("calls ingest=%d transform=%d load=%d, want 2, 3 (1 + 2 retries), 1", a, b, c)
	}
	if len(reports) != 2 || reports[0].Stage != "ingest" || reports[1].Stage != "load" || reports[1].Total() != 5 {
		t.Fatalf("reports %+v", reports)
	}
	if strings.Join(rec.done, ",") != "ingest,load" || strings.Join(rec.failed, ",") != "transform" {
		t.Fatalf("observed done=%v failed=%v", rec.done, rec.failed)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 1 || !strings.Contains(logs.String(), `"error_kind":"source_unreachable"`) {
		t.Fatalf("want exactly one ERROR line with the kind, got %d:\n%s", n, logs.String())
	}
}

func TestLoopStopsCleanly(t *testing.T) {
	var n int
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{Stages: []Stage{{Name: "s", Run: func(context.Context, Run) (Report, error) {
		n++
		if n == 3 {
			cancel()
		}
		return Report{}, nil
	}}}}
	cycles := 0
	if err := r.Loop(ctx, time.Millisecond, func([]Report, error) { cycles++ }); err != nil {
		t.Fatal(err)
	}
	if n != 3 || cycles != 3 {
		t.Fatalf("stage ran %d times over %d reported cycles, want 3 and 3 (the stopped cycle reported too)", n, cycles)
	}
	if err := r.Loop(context.Background(), 0, nil); err == nil {
		t.Fatal("a zero interval was accepted")
	}
}

func TestStopLetsTheStageUnderWayFinish(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran []string
	r := &Runner{Stages: []Stage{
		{Name: "ingest", Run: func(sctx context.Context, _ Run) (Report, error) {
			cancel() // SIGTERM arrives mid-stage
			ran = append(ran, "ingest")
			return Report{}, sctx.Err()
		}},
		{Name: "transform", Run: func(context.Context, Run) (Report, error) {
			ran = append(ran, "transform")
			return Report{}, nil
		}},
	}}
	_, err := r.Cycle(ctx)
	if strings.Join(ran, ",") != "ingest" || err == nil || !strings.Contains(err.Error(), "transform: not started") {
		t.Fatalf("ran %v, error %v: want ingest to finish and transform not to start", ran, err)
	}
}
