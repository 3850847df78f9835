// Package pipeline runs Sandstone's stages in order (ingest, transform,
// load), once or on a schedule, retrying a failing stage with backoff and
// telling observers (metrics, alerts) what happened.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/logging"
)

// Report is what one run of one stage did.
type Report struct {
	Stage   string
	RunID   string
	Batches []string
	// Rows and Bytes count what the stage wrote, per table.
	Rows     map[string]int64
	Bytes    map[string]int64
	Duration time.Duration
	// Freshness is set by load: the age of the newest source change when
	// it arrived in the warehouse.
	Freshness time.Duration
	// Skew is set by ingest: per table, how far its last_updated runs
	// ahead of or behind the source's clock beyond the lookback.
	Skew map[string]time.Duration
	// Rejected counts, per source table, the rows transform set aside;
	// Parked the rows waiting for a missing reference after it (transform).
	Rejected map[string]int64
	Parked   int64
	// Note is a short human remark (e.g. "nothing new").
	Note string
}

// Total is the number of rows the stage wrote.
func (r Report) Total() int64 {
	var n int64
	for _, v := range r.Rows {
		n += v
	}
	return n
}

// Stage is one step of the pipeline.
type Stage struct {
	Name string
	Run  func(ctx context.Context) (Report, error)
}

// Observer is told the outcome of every stage run.
type Observer interface {
	StageDone(ctx context.Context, r Report)
	StageFailed(ctx context.Context, stage, runID string, err error)
}

// Runner runs stages in order with retries.
type Runner struct {
	Stages []Stage
	// Retries is how many times a failing stage is tried again in a cycle.
	Retries int
	// Backoff is the wait before the first retry; it doubles each time.
	Backoff   time.Duration
	Logger    *slog.Logger
	Observers []Observer
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Cycle runs every stage once, in order. A stage that still fails after its
// retries is reported and the cycle goes on with the next stage (which does
// whatever work is already waiting for it); the error names every stage that
// failed. When ctx ends, the stage under way finishes (a stage is short and
// commits batch by batch) and no further stage starts.
func (r *Runner) Cycle(ctx context.Context) ([]Report, error) {
	var reports []Report
	var errs []error
	for _, s := range r.Stages {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not started: %w", s.Name, ctx.Err()))
			break
		}
		rep, err := r.runStage(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		reports = append(reports, rep)
	}
	return reports, errors.Join(errs...)
}

func (r *Runner) runStage(ctx context.Context, s Stage) (Report, error) {
	delay := r.Backoff
	for attempt := 0; ; attempt++ {
		r.logger().Info("stage started", "stage", s.Name, "attempt", attempt+1)
		rep, err := s.Run(context.WithoutCancel(ctx))
		rep.Stage = s.Name
		if err == nil {
			r.logger().Info("stage finished", "stage", s.Name, "run_id", rep.RunID, "batches", rep.Batches,
				"rows", rep.Total(), "tables", rep.Rows, "bytes", rep.Bytes, "seconds", rep.Duration.Seconds())
			for _, o := range r.Observers {
				o.StageDone(ctx, rep)
			}
			return rep, nil
		}
		if attempt >= r.Retries || ctx.Err() != nil {
			logging.Failure(r.logger(), s.Name, rep.RunID, err)
			for _, o := range r.Observers {
				o.StageFailed(ctx, s.Name, rep.RunID, err)
			}
			return rep, err
		}
		r.logger().Warn("stage failed; retrying", "stage", s.Name, "attempt", attempt+1,
			"retry_in", delay.String(), "error_kind", string(errkind.Of(err)), "error", err.Error())
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// Loop runs a cycle now and then every interval until ctx ends; it returns
// nil when stopped by ctx. Failed cycles do not stop it.
func (r *Runner) Loop(ctx context.Context, interval time.Duration, each func([]Report, error)) error {
	if interval <= 0 {
		return errors.New("pipeline: interval must be positive")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		reports, err := r.Cycle(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if each != nil {
			each(reports, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
