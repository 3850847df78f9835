package transform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// Options configure a run.
type Options struct {
	// Ingest is the ingestion bucket, read.
	Ingest *lake.Bucket
	// Processed is the processed bucket, written.
	Processed *lake.Bucket
	// Logger receives the run's log; slog.Default() when nil.
	Logger *slog.Logger
	// Deadline, when set, stops the run at the first batch boundary from
	// which the next batch, taking as long as the longest one so far and
	// half as long again, would end after it (lake.Fits; a Lambda's time
	// limit); zero means none. The first batch starts unless it has passed.
	Deadline time.Time
	// Stop, once closed, stops the run at the next batch boundary, the
	// batch under way written whole (lake.Stopped; a first Ctrl-C). Nil
	// never stops it.
	Stop <-chan struct{}
	// RunID names the run in the manifests and the log; a new id when
	// empty.
	RunID string
	// Progress reports the rows read per table as they go (nil: none).
	Progress *progress.Meter
	// Quiet logs each batch at Debug: for `run --follow`, whose batches
	// are many.
	Quiet bool
}

// Result tells what a run wrote.
type Result struct {
	RunID string
	// Batches lists the processed batches written, in order.
	Batches []BatchResult
	// Conflict is set when another run committed a batch first; this run
	// then stopped, its objects for that batch left unreferenced.
	Conflict bool
	// DeadlineReached is set when the run stopped at Options.Deadline with
	// batches still pending.
	DeadlineReached bool
	// Stopped is set when the run stopped at Options.Stop with batches
	// still pending.
	Stopped bool
}

// BatchResult tells what one processed batch holds.
type BatchResult struct {
	Sequence int64
	Batch    string
	// Rows counts the rows written per star table.
	Rows map[string]int64
	// Rejected counts the source rows rejected in this batch; RejectedBy
	// counts them per source table and kind (bad_value, missing_reference).
	Rejected   int64
	RejectedBy map[string]map[string]int64
	// Released counts the rows rejected earlier for a missing reference
	// that this batch let through.
	Released int64
	// Parked counts the rows still waiting for a missing reference.
	Parked  int64
	Seconds float64
}

// Total is the number of star rows the batch holds.
func (r BatchResult) Total() int64 {
	var n int64
	for _, v := range r.Rows {
		n += v
	}
	return n
}

// Run transforms every ingested batch not yet processed, in order: ingest
// batch N becomes processed batch N, starting from the state saved with
// processed batch N-1.
func Run(ctx context.Context, opts Options) (Result, error) {
	res := Result{RunID: opts.RunID}
	if res.RunID == "" {
		res.RunID = lake.NewRunID()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("stage", "transform", "run_id", res.RunID)
	if opts.Ingest == nil || opts.Processed == nil {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("transform: both the ingestion and the processed bucket are needed"))
	}

	latest, err := opts.Processed.LatestSeq(ctx)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: %w", err))
	}
	if err := checkSource(ctx, opts, latest); err != nil {
		return res, err
	}
	pending, err := opts.Ingest.SeqsAfter(ctx, latest)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: %w", err))
	}
	if len(pending) == 0 {
		log.Debug("transform found nothing new", "processed", lake.BatchID(latest))
		return res, nil
	}
	st, err := loadState(ctx, opts.Processed, latest)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: %w", err))
	}
	if st.Sequence != latest {
		return res, errkind.Wrap(errkind.Internal, fmt.Errorf("transform: the state of processed batch %s is that of batch %s",
			lake.BatchID(latest), lake.BatchID(st.Sequence)))
	}

	var longest time.Duration // the longest batch so far
	for _, seq := range pending {
		if seq != st.Sequence+1 {
			return res, errkind.Wrap(errkind.Internal, fmt.Errorf("transform: ingest batch %s is missing, so batch %s cannot be transformed",
				lake.BatchID(st.Sequence+1), lake.BatchID(seq)))
		}
		if !lake.Fits(opts.Deadline, time.Now(), longest) {
			res.DeadlineReached = true
			log.Info("transform stopped at its deadline", "next", lake.BatchID(seq), "pending", len(pending)-len(res.Batches))
			return res, nil
		}
		if lake.Stopped(opts.Stop) {
			res.Stopped = true
			log.Info("transform stopped as asked", "next", lake.BatchID(seq), "pending", len(pending)-len(res.Batches))
			return res, nil
		}
		im, sum, err := readIngested(ctx, opts.Ingest, seq)
		if err != nil {
			return res, err
		}
		b := newBatch(ctx, opts, log, res.RunID, seq, st)
		b.source = &lake.BatchRef{Sequence: seq, RunID: im.RunID, ManifestSHA256: sum}
		committed, err := b.process(im, res.RunID)
		if err != nil {
			return res, fmt.Errorf("transform batch %s: %w", lake.BatchID(seq), err)
		}
		if !committed {
			res.Conflict = true
			log.Warn("another transform run committed this batch first; this run's objects stay unreferenced",
				"batch", lake.BatchID(seq))
			return res, nil
		}
		res.Batches = append(res.Batches, b.res)
		longest = max(longest, time.Duration(b.res.Seconds*float64(time.Second)))
		log.Log(ctx, logging.Level(opts.Quiet), "transform wrote batch", "batch", b.res.Batch, "rows", b.res.Total(), "tables", b.res.Rows,
			"rejected", b.res.Rejected, "released", b.res.Released, "parked", b.res.Parked, "seconds", b.res.Seconds)
	}
	return res, nil
}

// readIngested reads ingest batch seq's manifest and its SHA-256, refusing
// one that is not that batch's.
func readIngested(ctx context.Context, ingest *lake.Bucket, seq int64) (*lake.Manifest, string, error) {
	var im lake.Manifest
	sum, err := ingest.ReadManifestSum(ctx, seq, &im)
	if err != nil {
		return nil, "", errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: ingest batch %s: %w", lake.BatchID(seq), err))
	}
	if im.Stage != "ingest" || im.Sequence != seq {
		return nil, "", errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("transform: %s holds no ingest batch %s (stage %q, sequence %d)",
			ingest.URL(), lake.BatchID(seq), im.Stage, im.Sequence))
	}
	return &im, sum, nil
}

// CheckSource reports, as an error of kind LedgerMismatch, an ingestion
// bucket that does not hold the batches the processed bucket was made from
// (as transform would refuse them); nil when they agree.
func CheckSource(ctx context.Context, in, out *lake.Bucket) error {
	latest, err := out.LatestSeq(ctx)
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("processed bucket: %w", err))
	}
	return checkSource(ctx, Options{Ingest: in, Processed: out}, latest)
}

// checkSource refuses to go on from processed batch latest unless the
// ingestion bucket holds the ingested batch it was made from, the same one
// (by its manifest's SHA-256, when the processed manifest records it): a
// wiped, rebuilt or other ingestion bucket numbers its batches from 1 again,
// and transforming them on top of this processed bucket would be wrong, or
// silently nothing. The error is of kind LedgerMismatch.
func checkSource(ctx context.Context, opts Options, latest int64) error {
	if latest == 0 {
		return nil
	}
	var pm lake.Manifest
	if err := opts.Processed.ReadManifest(ctx, latest, &pm); err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: processed batch %s: %w", lake.BatchID(latest), err))
	}
	ref := lake.BatchRef{Sequence: latest}
	if pm.Source != nil {
		ref = *pm.Source
	}
	var im lake.Manifest
	sum, err := opts.Ingest.ReadManifestSum(ctx, ref.Sequence, &im)
	var found string
	switch {
	case errors.Is(err, lake.ErrNotFound):
		found = fmt.Sprintf("the ingestion bucket has no batch %d", ref.Sequence)
	case err != nil:
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("transform: ingest batch %s: %w", lake.BatchID(ref.Sequence), err))
	case pm.Source != nil && sum != ref.ManifestSHA256:
		found = fmt.Sprintf("processed batch %s was made from ingested batch %s with manifest sha256 %s (run %s), the ingestion bucket's has %s (run %s)",
			lake.BatchID(latest), lake.BatchID(ref.Sequence), ref.ManifestSHA256, ref.RunID, sum, im.RunID)
	default:
		return nil
	}
	return errkind.Wrap(errkind.LedgerMismatch, fmt.Errorf(
		"transform: the ingestion bucket %s does not hold the batches the processed bucket %s was made from: %s. "+
			"Point --ingest-bucket at the bucket the processed bucket was made from, or rebuild the processed bucket "+
			"(and the warehouse) from this ingestion bucket into empty ones",
		opts.Ingest.URL(), opts.Processed.URL(), found))
}
