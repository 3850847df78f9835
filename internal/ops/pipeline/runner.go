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
	"strings"
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
// (a new one when empty), the logger for its lines (the pipeline's when
// nil) and the graceful stop it checks at each batch boundary (Runner.Stop;
// lake.Stopped).
type Run struct {
	ID     string
	Logger *slog.Logger
	// Failed names the stages that failed earlier in the cycle: a stage
	// with nothing waiting for it then has nothing to do and no advice to
	// give.
	Failed []string
	Stop   <-chan struct{}
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
	// Stop, when set, is a graceful stop (a first Ctrl-C or SIGTERM): once
	// it is closed, the stage under way says so at once, lands or commits
	// the batch under way and starts no other, and no retry, stage or cycle
	// starts. The stages then work under ctx itself, whose end (a second
	// Ctrl-C) abandons the batch under way at once: nothing of it is
	// visible, as after kill -9. Without it (a Lambda), a stage works under
	// context.WithoutCancel(ctx), to its end or its Pipeline.Deadline; ctx's
	// end only starts no further retry or stage.
	Stop <-chan struct{}
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
// commits batch by batch) and no further stage starts; when Stop is closed,
// the stage under way stops after its batch under way and no further stage
// starts, which is no failure.
func (r *Runner) Cycle(ctx context.Context) ([]Report, error) {
	return r.cycle(ctx, r.Stages, nil)
}

// cycle runs stages once, in order, as Cycle does; failed names the stages
// that failed before them.
func (r *Runner) cycle(ctx context.Context, stages []Stage, failed []string) ([]Report, error) {
	var reports []Report
	var errs []error
	for i, s := range stages {
		if lake.Stopped(r.Stop) && ctx.Err() == nil {
			r.logger().Info("stopped as asked; the stages left are not started", "not_started", names(stages[i:]))
			break
		}
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not started: %w", s.Name, ctx.Err()))
			break
		}
		rep, err := r.run(ctx, s, slices.Clone(failed))
		if err != nil {
			failed = append(failed, s.Name)
			errs = append(errs, named(s.Name, err))
			if r.stopping(ctx) {
				break
			}
			continue
		}
		reports = append(reports, rep)
	}
	return reports, errors.Join(errs...)
}

// Run runs one stage, trying again up to Retries times: the one path every
// stage run takes, from the CLI, from a cycle and from a Lambda function. It
// logs the start, the end or the failure's one ERROR line (with stage,
// run_id and error_kind), and tells the observers. A stage that Stop
// stopped ends without error, and a stop while a failed stage waits for
// its retry returns its error untried; a stage that ctx stopped at once
// (with Stop set) ends with an error that is no failure: it is logged as a
// warning and told to no observer.
func (r *Runner) Run(ctx context.Context, s Stage) (Report, error) {
	return r.run(ctx, s, nil)
}

// run is Run, telling the stage which stages failed before it in the
// cycle (Run.Failed).
func (r *Runner) run(ctx context.Context, s Stage, failed []string) (Report, error) {
	work := ctx
	if r.Stop == nil {
		work = context.WithoutCancel(ctx)
	}
	delay := r.Backoff
	for attempt := 0; ; attempt++ {
		id := lake.NewRunID()
		log := r.logger().With(logging.KeyStage, s.Name, logging.KeyRunID, id)
		log.Log(ctx, r.level(), "stage started", "attempt", attempt+1)
		heard := r.announce(log, s.Name)
		rep, err := s.Run(work, Run{ID: id, Logger: r.logger(), Stop: r.Stop, Failed: failed})
		heard()
		rep.Stage, rep.RunID = s.Name, id
		if err == nil {
			log.Log(ctx, r.level(), "stage finished", "batches", rep.Batches, "rows", rep.Total(), "tables", rep.Rows,
				"rejected", rep.Rejects(), "seconds", rep.Duration.Seconds())
			for _, o := range r.Observers {
				o.StageDone(ctx, rep)
			}
			return rep, nil
		}
		if r.Stop != nil && ctx.Err() != nil {
			log.Warn(s.Name+" stopped at once; the batch under way was abandoned and nothing of it is kept", logging.KeyError, err.Error())
			return rep, fmt.Errorf("stopped at once (%w); the batch under way was abandoned and nothing of it is kept", context.Cause(ctx))
		}
		// A permanent failure (a login refused, a database missing) is not
		// retried: trying again cannot mend it.
		if attempt >= r.Retries || r.stopping(ctx) || errkind.Permanent(err) {
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
		case <-r.Stop: // no retry; the next run tries again
			return rep, err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// announce logs, at once, that Stop was heard while stage runs; the
// function it returns ends the watch once the stage has returned.
func (r *Runner) announce(log *slog.Logger, stage string) (done func()) {
	if r.Stop == nil {
		return func() {}
	}
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case <-r.Stop:
			log.Warn(stage + ": stopping after the batch under way, which lands or commits whole; no other batch or stage starts " +
				"(Ctrl-C again stops at once, abandoning that batch)")
		case <-quit:
		}
	}()
	return func() { close(quit); <-ended }
}

// stopping reports whether nothing more may start: ctx ended or Stop was
// closed.
func (r *Runner) stopping(ctx context.Context) bool {
	return ctx.Err() != nil || lake.Stopped(r.Stop)
}

// names are the stages' names.
func names(stages []Stage) []string {
	n := make([]string, len(stages))
	for i, s := range stages {
		n[i] = s.Name
	}
	return n
}

// level is the level of the start and end lines: Debug when a printer
// already tells each result (Quiet), Info otherwise.
func (r *Runner) level() slog.Level { return logging.Level(r.Quiet) }

// Loop runs a cycle now and then every interval until ctx ends or Stop is
// closed; it returns nil when stopped so. Failed cycles do not stop it.
// each, when set, is told every cycle's outcome, the one stopped during
// too.
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
		if r.stopping(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.Stop:
			return nil
		case <-t.C:
		}
	}
}

// named is err with the stage's name before it, once: a stage's own error
// may already start with it ("ingest: connect to source …").
func named(stage string, err error) error {
	if strings.HasPrefix(err.Error(), stage+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", stage, err)
}
