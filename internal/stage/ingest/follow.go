package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// followPause is how long a Follower waits, when the slot had nothing for
// it, before it asks again.
const followPause = 100 * time.Millisecond

// Follower lands what commits on the source batch after batch, on one
// replication connection that stays open between its batches (wal capture
// only): `sandstone run --follow`. Each batch lands and is confirmed as a
// run of Run would land and confirm it. An error, a conflict, a cut or a
// lake that moved under it closes the connection, and the next call starts
// again from the lake, as a new run does. A Follower is not safe for use
// by two goroutines at once.
type Follower struct {
	c *capture
	s *stream
	// beat is when the last heartbeat was written, landed when the last
	// batch landed.
	beat, landed time.Time
}

// Next lands the next batch: it waits up to wait for a change, and returns
// having landed nothing (Result.Sequence 0) when none came, or when
// opts.Stop was closed. The first call, and the first after a failure,
// connects, runs the preflight and, on a lake that does not go on from the
// slot, lands the slot's snapshot, as Run does.
func (f *Follower) Next(ctx context.Context, opts Options, wait time.Duration) (res Result, err error) {
	opts, err = opts.check()
	res = Result{RunID: opts.RunID, Rows: map[string]int64{}, Skew: map[string]time.Duration{}}
	switch {
	case err != nil:
		return res, err
	case opts.Capture != config.CaptureWAL:
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: following the source needs log-based capture (--capture wal)"))
	}
	log := opts.Logger.With("stage", "ingest", "run_id", res.RunID)
	defer func() {
		if err != nil || res.Conflict || f.s != nil && f.s.cut != 0 {
			f.Close()
		}
	}()
	if f.c == nil {
		c, starting, err := openCapture(ctx, opts, log)
		if err != nil {
			return res, err
		}
		if starting { // the next call streams, on a connection of its own
			defer c.close()
			return c.snapshot(ctx, res)
		}
		f.c = c
		if f.s, err = c.newStream(ctx); err != nil {
			return res, err
		}
		f.beat = time.Now()
	} else if err := f.resume(ctx, opts, log); err != nil {
		return res, err
	}
	for end := time.Now().Add(wait); ; {
		if time.Since(f.beat) >= statusEvery {
			f.c.heartbeat(ctx)
			f.beat = time.Now()
		}
		f.c.start = time.Now() // the batch's: it names its objects and times it
		if err := f.c.bound(ctx, f.s); err != nil {
			return res, err
		}
		// An empty batch that lets the slot go past WAL it holds back
		// lands at most every statusEvery.
		f.s.release = time.Since(f.landed) >= statusEvery
		r, err := f.land(ctx, res)
		if r.Sequence != 0 {
			f.landed = time.Now()
		}
		if err != nil || r.Sequence != 0 || r.Conflict || !time.Now().Before(end) || lake.Stopped(opts.Stop) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-opts.Stop:
			return r, nil
		case <-time.After(followPause):
		}
	}
}

// resume goes on with the stream under way, once it has checked that the
// lake still ends where the stream's last batch did.
func (f *Follower) resume(ctx context.Context, opts Options, log *slog.Logger) error {
	f.c.opts, f.c.log, f.s.log = opts, log, log
	if err := f.c.reload(ctx); err != nil {
		return err
	}
	if f.c.last == nil || f.c.last.Capture == nil || f.c.last.Capture.End != f.s.capture.Start {
		return errkind.Wrap(errkind.CaptureGap, fmt.Errorf("ingest: the lake's last batch is not the one this run landed last (it ends at %s): "+
			"another ingest wrote to the bucket; the next run goes on from the lake", f.s.capture.Start))
	}
	return nil
}

// land lands the stream's batch, leaving the replication under way.
func (f *Follower) land(ctx context.Context, res Result) (Result, error) {
	return f.c.streamBatch(ctx, f.s, res, false)
}

// Close ends the Follower's connections; the next call of Next starts
// again from the lake.
func (f *Follower) Close() {
	if f.c != nil {
		f.c.close()
	}
	f.c, f.s = nil, nil
}
