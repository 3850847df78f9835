package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

// followEvery is how often run --follow logs what it did.
const followEvery = time.Minute

// checkFollow refuses a --follow that cannot work.
func (rf *runFlags) checkFollow() error {
	switch {
	case !rf.follow:
		return nil
	case rf.Capture != config.CaptureWAL:
		return errors.New("--follow needs --capture wal: the poll reads the source in cycles (--interval)")
	case rf.once:
		return errors.New("--follow and --once exclude each other: --once runs one cycle")
	}
	return nil
}

// followWith makes runner follow the source: ingest keeps its replication
// connection open, each stage's start and end are logged at Debug, the
// results that did something are printed, and a line every followEvery
// sums them up.
func followWith(runner *pipeline.Runner, p *pipeline.Pipeline, out io.Writer, log *slog.Logger) {
	runner.Stages, runner.Quiet, p.Quiet = p.FollowStages(), true, true
	runner.Observers = append(runner.Observers[:1], busyPrinter{printer{out}}, &followLog{log: log, every: followEvery, since: time.Now()})
}

// busyPrinter prints the results of the stage runs that did something.
type busyPrinter struct{ printer }

func (p busyPrinter) StageDone(ctx context.Context, r pipeline.Report) {
	if len(r.Batches) > 0 || r.Rejects() > 0 {
		p.printer.StageDone(ctx, r)
	}
}

// followLog sums up the stage runs and logs the sums every followEvery.
type followLog struct {
	log   *slog.Logger
	every time.Duration
	mu    sync.Mutex
	since time.Time
	sum   map[string][2]int64 // batches and rows by stage
}

func (f *followLog) StageDone(ctx context.Context, r pipeline.Report) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sum == nil {
		f.sum = map[string][2]int64{}
	}
	s := f.sum[r.Stage]
	f.sum[r.Stage] = [2]int64{s[0] + int64(len(r.Batches)), s[1] + r.Total()}
	if time.Since(f.since) < f.every {
		return
	}
	f.log.Log(ctx, slog.LevelInfo, "following the source", "seconds", time.Since(f.since).Round(time.Second).Seconds(),
		"ingested_batches", f.sum[pipeline.Ingest][0], "ingested_rows", f.sum[pipeline.Ingest][1],
		"transformed_rows", f.sum[pipeline.Transform][1], "loaded_batches", f.sum[pipeline.Load][0], "loaded_rows", f.sum[pipeline.Load][1])
	f.since, f.sum = time.Now(), nil
}

func (f *followLog) StageFailed(context.Context, string, string, error) {}
