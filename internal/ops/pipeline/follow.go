package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Follow runs the first stage over and over, each run landing what came
// (FollowStages' ingest, which waits for it), and beside it the other
// stages, in order, each time the first has landed a batch: a batch is
// transformed and loaded while the next lands, and the batches landed
// meanwhile go in the next pass. The other stages also run every interval
// (work landed by others: an audit's repair), and a first stage that still
// fails after its retries is tried again after interval. each, when set,
// is told every pass's reports, the first stage's runs since the pass
// before them, and its errors. Follow returns once ctx ends or Stop is
// closed and the stage runs under way have ended; nil when stopped so.
// Without Stop, ctx's end is Stop's.
func (r *Runner) Follow(ctx context.Context, interval time.Duration, each func([]Report, error)) error {
	if interval <= 0 {
		return errors.New("pipeline: interval must be positive")
	}
	if len(r.Stages) == 0 {
		return errors.New("pipeline: no stage to follow with")
	}
	if r.Stop == nil {
		// The first stage waits for changes: ctx's end stops it as Stop
		// would, not after its wait.
		stopped := *r
		stopped.Stop = ctx.Done()
		r = &stopped
	}
	f := &follow{r: r, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go f.lead(ctx, interval)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var ended bool
		select {
		case <-f.wake:
		case <-t.C:
		case <-f.done:
			ended = true
		}
		reports, err := f.take()
		var failed []string
		if err != nil {
			failed = []string{r.Stages[0].Name}
		}
		if !ended && !r.stopping(ctx) {
			rest, rerr := r.cycle(ctx, r.Stages[1:], failed)
			reports, err = append(reports, rest...), errors.Join(err, rerr)
		}
		if each != nil && (len(reports) > 0 || err != nil) {
			each(reports, err)
		}
		if ended {
			return nil
		}
	}
}

// follow is the state that Follow's two goroutines share.
type follow struct {
	r    *Runner
	mu   sync.Mutex
	runs []Report // the first stage's runs not yet told
	err  error    // and their errors
	wake chan struct{}
	done chan struct{} // closed once the first stage stops for good
}

// lead runs the first stage until ctx ends or Stop is closed.
func (f *follow) lead(ctx context.Context, interval time.Duration) {
	defer close(f.done)
	first := f.r.Stages[0]
	for !f.r.stopping(ctx) {
		rep, err := f.r.run(ctx, first, nil)
		f.mu.Lock()
		if err != nil {
			f.err = errors.Join(f.err, named(first.Name, err))
		} else {
			f.runs = append(f.runs, rep)
		}
		f.mu.Unlock()
		if err != nil || len(rep.Batches) > 0 {
			select {
			case f.wake <- struct{}{}:
			default: // a pass is due already
			}
		}
		if err != nil {
			select {
			case <-ctx.Done():
			case <-f.r.Stop:
			case <-time.After(interval):
			}
		}
	}
}

// take returns the first stage's runs and errors not yet told.
func (f *follow) take() ([]Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	runs, err := f.runs, f.err
	f.runs, f.err = nil, nil
	return runs, err
}
