// Package pipeline runs Sandstone's stages in order (ingest, transform,
// load), once or on a schedule, retrying a failing stage with backoff and
// telling observers (metrics, alerts) what happened.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// Stage is one step of the pipeline.
type Stage struct {
	Name string
	Run  func(ctx context.Context, run Run) (Report, error)
}

// Run is one run of a stage: the id that its manifests and log lines carry
// (a new one when empty) and the logger for its lines (the pipeline's when
// nil).
type Run struct {
	ID     string
	Logger *slog.Logger
	// Failed names the stages that failed earlier in the cycle: a stage
	// with nothing waiting for it then has nothing to do and no advice to
	// give.
	Failed []string
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
	// Quiet logs each stage's start and end at Debug: for a terminal, where
	// an observer prints the result and a log line would say it twice.
	Quiet bool
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
	var failed []string
	for _, s := range r.Stages {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not started: %w", s.Name, ctx.Err()))
			break
		}
		rep, err := r.Run(ctx, s.after(failed))
		if err != nil {
			failed = append(failed, s.Name)
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

// after is s told which stages failed before it in the cycle (Run.Failed).
func (s Stage) after(failed []string) Stage {
	if len(failed) == 0 {
		return s
	}
	run, failed := s.Run, slices.Clone(failed)
	s.Run = func(ctx context.Context, r Run) (Report, error) {
		r.Failed = failed
		return run(ctx, r)
	}
	return s
}

// Run runs one stage, trying again up to Retries times: the one path every
// stage run takes, from the CLI, from a cycle and from a Lambda function. It
// logs the start, the end or the failure's one ERROR line (with stage,
// run_id and error_kind), and tells the observers.
func (r *Runner) Run(ctx context.Context, s Stage) (Report, error) {
	delay := r.Backoff
	for attempt := 0; ; attempt++ {
		id := lake.NewRunID()
		log := r.logger().With(logging.KeyStage, s.Name, logging.KeyRunID, id)
		log.Log(ctx, r.level(), "stage started", "attempt", attempt+1)
		rep, err := s.Run(context.WithoutCancel(ctx), Run{ID: id, Logger: r.logger()})
		rep.Stage, rep.RunID = s.Name, id
		if err == nil {
			log.Log(ctx, r.level(), "stage finished", "batches", rep.Batches, "rows", rep.Total(), "tables", rep.Rows,
				"rejected", rep.Rejects(), "seconds", rep.Duration.Seconds())
			for _, o := range r.Observers {
				o.StageDone(ctx, rep)
			}
			return rep, nil
		}
		// A permanent failure (a login refused, a database missing) is not
		// retried: trying again cannot mend it.
		if attempt >= r.Retries || ctx.Err() != nil || errkind.Permanent(err) {
			logging.Failure(r.logger(), s.Name, id, err)
			for _, o := range r.Observers {
				o.StageFailed(ctx, s.Name, id, err)
			}
			return rep, err
		}
		log.Warn("stage failed; retrying", "attempt", attempt+1,
			"retry_in", delay.String(), logging.KeyErrorKind, string(errkind.Of(err)), logging.KeyError, err.Error())
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// level is the level of the start and end lines: Debug when a printer
// already tells each result (Quiet), Info otherwise.
func (r *Runner) level() slog.Level {
	if r.Quiet {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// Loop runs a cycle now and then every interval until ctx ends; it returns
// nil when stopped by ctx. Failed cycles do not stop it. each, when set, is
// told every cycle's outcome, the one ctx ended during too.
func (r *Runner) Loop(ctx context.Context, interval time.Duration, each func([]Report, error)) error {
	if interval <= 0 {
		return errors.New("pipeline: interval must be positive")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		reports, err := r.Cycle(ctx)
		if each != nil {
			each(reports, err) // the last cycle too: its outcome is kept
		}
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
