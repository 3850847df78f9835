package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// A replication slot streams to one consumer at a time. Another one (a
// second pipeline on the slot, a run still under way, a killed run whose
// WAL sender holds the slot until wal_sender_timeout passes) makes a run
// fail with errkind.CaptureSlotBusy, which `sandstone run` retries; two
// runs that read the same changes race for one manifest, so they never
// land twice.

// slotBusy marks err, what the server answered when the run asked for the
// slot, as errkind.CaptureSlotBusy when it says another consumer holds the
// slot (object_in_use: streaming from, or dropping, an active slot;
// duplicate_object: creating a slot another run has just created), else
// as kind; what says what the run asked. nil stays nil.
func slotBusy(kind errkind.Kind, slot, what string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42710") {
		return errkind.Wrap(errkind.CaptureSlotBusy, fmt.Errorf("%s slot %s: %w: another consumer holds it "+
			"(a killed one until wal_sender_timeout passes); sandstone run tries again", what, slot, err))
	}
	return errkind.Wrap(kind, fmt.Errorf("%s slot %s: %w", what, slot, err))
}

// movedOn is err, unless the lake has a batch past the one this run
// started from: another consumer landed it, and may have moved the slot
// on, meanwhile, so what looked like a gap (or a slot to start again) is
// a race the run lost, errkind.CaptureSlotBusy: the next run goes on from
// the lake's new end.
func (c *capture) movedOn(ctx context.Context, err error) error {
	latest, lerr := c.opts.Bucket.LatestSeq(ctx)
	if lerr != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", lerr))
	}
	if latest == c.prevSeq {
		return err
	}
	return errkind.Wrap(errkind.CaptureSlotBusy, fmt.Errorf("slot %s: another consumer landed batch %s while this run started from batch %s: sandstone run tries again",
		c.opts.Slot, lake.BatchID(latest), lake.BatchID(c.prevSeq)))
}
