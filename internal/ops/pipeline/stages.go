package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
	"github.com/sandstone-data/sandstone/internal/stage/transform"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// The stage names.
const (
	Ingest    = "ingest"
	Transform = "transform"
	Load      = "load"
)

// Pipeline is the three stages over one configuration.
type Pipeline struct {
	Config    config.Config
	Ingest    *lake.Bucket
	Processed *lake.Bucket
	Logger    *slog.Logger
	// Deadline, when set, makes each stage stop at the batch boundary from
	// which the next batch would end after it (lake.Fits; a Lambda's time
	// limit).
	Deadline time.Time
	// Progress is where a person watches long work: when it is a
	// terminal, each stage keeps a line there with its rows, rate and time
	// left; otherwise (nil too) a progress line is logged now and then.
	Progress io.Writer
	// ProgressEvery is how often that progress line is logged;
	// progress.LogEvery when zero.
	ProgressEvery time.Duration
	// Quiet logs each batch a stage lands at Debug: for a terminal, where
	// the caller prints the stage's result (Runner.Quiet).
	Quiet bool

	// FollowWait is how long a run of the following ingest waits for a
	// change (FollowStages); DefaultFollowWait when zero.
	FollowWait time.Duration

	follower *ingest.Follower // FollowStages' ingest
}

// Open opens the buckets cfg names: both, as the CLI's run, status and
// audit need.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Pipeline, error) {
	return openBuckets(ctx, cfg, logger, ingestion|processed)
}

// OpenStage opens only the buckets stage name uses: the ingestion bucket
// for ingest, both for transform, the processed bucket for load. A Lambda
// function is given only the settings of its stage, and opening a bucket it
// was not given would fall back to a directory under its read-only working
// directory. The Pipeline it returns runs that stage only.
func OpenStage(ctx context.Context, cfg config.Config, logger *slog.Logger, name string) (*Pipeline, error) {
	if _, err := (&Pipeline{}).Stage(name); err != nil {
		return nil, err
	}
	return openBuckets(ctx, cfg, logger, uses(name))
}

// buckets is a set of the pipeline's buckets.
type buckets uint8

// The pipeline's buckets.
const (
	ingestion buckets = 1 << iota
	processed
)

// uses is the buckets stage name reads or writes.
func uses(name string) buckets {
	switch name {
	case Ingest:
		return ingestion
	case Load:
		return processed
	}
	return ingestion | processed
}

// openBuckets opens the buckets in which.
func openBuckets(ctx context.Context, cfg config.Config, logger *slog.Logger, which buckets) (*Pipeline, error) {
	if logger == nil {
		logger = slog.Default()
	}
	p := &Pipeline{Config: cfg, Logger: logger}
	if which&ingestion != 0 {
		in, err := lake.Open(ctx, cfg.IngestBucket)
		if err != nil {
			return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingestion bucket: %w", err))
		}
		p.Ingest = in
	}
	if which&processed != 0 {
		out, err := openProcessed(ctx, cfg.ProcessedBucket, which&ingestion == 0)
		if err != nil {
			_ = p.Close()
			return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("processed bucket: %w", err))
		}
		p.Processed = out
	}
	return p, nil
}

// openProcessed opens the processed bucket; for load alone (readOnly) a
// directory not there yet is not created: it has no batches, and the
// ledger check still runs.
func openProcessed(ctx context.Context, url string, readOnly bool) (*lake.Bucket, error) {
	if !readOnly {
		return lake.Open(ctx, url)
	}
	b, err := lake.OpenExisting(ctx, url)
	if errors.Is(err, lake.ErrNoBucket) {
		return lake.Open(ctx, "mem://")
	}
	return b, err
}

// Close ends the following ingest's connections (FollowStages) and closes
// the buckets that are open.
func (p *Pipeline) Close() error {
	if p.follower != nil {
		p.follower.Close()
	}
	var errs []error
	for _, b := range []*lake.Bucket{p.Ingest, p.Processed} {
		if b != nil {
			errs = append(errs, b.Close())
		}
	}
	return errors.Join(errs...)
}

// need fails when a bucket the stage uses was not opened (OpenStage for
// another stage).
func need(stage string, buckets ...*lake.Bucket) error {
	for _, b := range buckets {
		if b == nil {
			return errkind.Wrap(errkind.Internal, fmt.Errorf("%s: a bucket it uses is not open (the pipeline was opened for another stage)", stage))
		}
	}
	return nil
}

// Stage returns the named stage.
func (p *Pipeline) Stage(name string) (Stage, error) {
	switch name {
	case Ingest:
		return Stage{Name: Ingest, Run: p.ingest}, nil
	case Transform:
		return Stage{Name: Transform, Run: p.transform}, nil
	case Load:
		return Stage{Name: Load, Run: p.load}, nil
	}
	return Stage{}, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("unknown stage %q (want ingest, transform or load)", name))
}

// Stages returns ingest, transform and load, in order.
func (p *Pipeline) Stages() []Stage {
	return []Stage{{Ingest, p.ingest}, {Transform, p.transform}, {Load, p.load}}
}

// meter is the progress meter of one stage run; its log lines carry the
// stage and the run.
func (p *Pipeline) meter(stage string, run Run) *progress.Meter {
	return progress.New(stage, p.Progress, p.stageLog(stage, run), p.ProgressEvery)
}

// stageLog is the run's logger with the stage and the run id on its lines,
// for the packages that do not add them themselves (load, progress).
func (p *Pipeline) stageLog(stage string, run Run) *slog.Logger {
	return p.logger(run).With(logging.KeyStage, stage, logging.KeyRunID, run.ID)
}

// logger is the logger of a run: its own, else the pipeline's.
func (p *Pipeline) logger(run Run) *slog.Logger {
	if run.Logger != nil {
		return run.Logger
	}
	return p.Logger
}

// ingest lands batches of at most Config.MaxBatchRows rows until nothing
// is left to land, or the next batch would not finish before the deadline.
func (p *Pipeline) ingest(ctx context.Context, run Run) (Report, error) {
	if err := need(Ingest, p.Ingest); err != nil {
		return Report{}, err
	}
	start := time.Now()
	rep := Report{RunID: run.ID, Rows: map[string]int64{}}
	var longest time.Duration
	for {
		if lake.Stopped(run.Stop) {
			rep.SnapshotAt = time.Time{} // rows may be left to land
			rep.Note = stoppedNote(rep.Batches)
			return rep, nil
		}
		began := time.Now()
		res, err := ingest.Run(ctx, p.ingestOptions(run))
		rep.Duration, rep.Skew = time.Since(start), res.Skew
		if err != nil {
			return rep, err
		}
		if res.Conflict {
			rep.Note = conflictNote
			return rep, nil
		}
		rep.SnapshotAt = began // every change before it is in the bucket, once !res.More
		rep.add(res)
		longest = max(longest, time.Since(began))
		switch {
		case !res.More && len(rep.Batches) == 0:
			rep.Note = "nothing new"
			return rep, nil
		case !res.More:
			return rep, nil
		case !lake.Fits(p.Deadline, time.Now(), longest):
			rep.SnapshotAt = time.Time{} // rows are left to land
			rep.Note = "time is up; rows left for the next run"
			return rep, nil
		}
	}
}

// conflictNote is the note of an ingest that another run beat to its
// batch.
const conflictNote = "another run committed the batch first; nothing written"

// ingestOptions are the options of ingest's run.
func (p *Pipeline) ingestOptions(run Run) ingest.Options {
	return ingest.Options{SourceURL: p.Config.SourceURL, Bucket: p.Ingest,
		Lookback: p.Config.Lookback, Logger: p.logger(run), RunID: run.ID, MaxBatchRows: p.Config.MaxBatchRows,
		Progress: p.meter(Ingest, run), Quiet: p.Quiet,
		Capture: p.Config.Capture, Slot: p.Config.Slot, Publication: p.Config.Publication, Resnapshot: p.Config.Resnapshot,
		Deadline: p.Deadline, Stop: run.Stop}
}

// add counts the batch res landed, if any.
func (r *Report) add(res ingest.Result) {
	if res.Sequence == 0 {
		return
	}
	r.Batches = append(r.Batches, res.Batch)
	for t, n := range res.Rows {
		r.Rows[t] += n
	}
	if r.Bytes == nil {
		r.Bytes = map[string]int64{}
	}
	r.Bytes["all"] += res.Bytes
	if res.SourceNewest.After(r.SourceNewest) {
		r.SourceNewest = res.SourceNewest
	}
}

// DefaultFollowWait is how long a run of the following ingest
// (FollowStages) waits for a change before it ends having landed nothing,
// unless Pipeline.FollowWait says otherwise.
const DefaultFollowWait = 30 * time.Second

// FollowStages returns ingest, transform and load, in order, where ingest
// follows the source (wal capture): each of its runs lands the next batch
// of what commits, on a replication connection kept open from run to run,
// waiting up to Pipeline.FollowWait for it (Runner.Follow). Close ends the
// connection.
func (p *Pipeline) FollowStages() []Stage {
	if p.follower == nil {
		p.follower = &ingest.Follower{}
	}
	return []Stage{{Ingest, p.follow}, {Transform, p.transform}, {Load, p.load}}
}

// following reports whether the pipeline follows the source
// (FollowStages): transform and load then log each batch at Debug, as the
// batches are many.
func (p *Pipeline) following() bool { return p.follower != nil }

// follow lands the next batch of what commits on the source.
func (p *Pipeline) follow(ctx context.Context, run Run) (Report, error) {
	start := time.Now()
	res, err := p.follower.Next(ctx, p.ingestOptions(run), cmp.Or(p.FollowWait, DefaultFollowWait))
	rep := Report{RunID: run.ID, Rows: map[string]int64{}, Duration: time.Since(start)}
	rep.Skew = res.Skew
	switch {
	case err != nil:
		return rep, err
	case res.Conflict:
		rep.Note = conflictNote
		return rep, nil
	case !res.More:
		rep.SnapshotAt = start // at least what committed before it is in the bucket
	}
	rep.add(res)
	if len(rep.Batches) == 0 {
		rep.Note = "nothing new"
	} else {
		rep.Duration = res.Duration // the batch's, not the wait for it
	}
	return rep, nil
}

func (p *Pipeline) transform(ctx context.Context, run Run) (Report, error) {
	if err := need(Transform, p.Ingest, p.Processed); err != nil {
		return Report{}, err
	}
	start := time.Now()
	res, err := transform.Run(ctx, transform.Options{Ingest: p.Ingest, Processed: p.Processed,
		Logger: p.logger(run), Deadline: p.Deadline, Stop: run.Stop, RunID: run.ID,
		Progress: p.meter(Transform, run), Quiet: p.following()})
	rep := Report{RunID: res.RunID, Rows: map[string]int64{}, Duration: time.Since(start)}
	for _, b := range res.Batches {
		rep.Batches = append(rep.Batches, b.Batch)
		for t, n := range b.Rows {
			rep.Rows[t] += n
		}
		for t, kinds := range b.RejectedBy {
			for k, n := range kinds {
				rep.reject(t, k, n)
			}
		}
		rep.Released += b.Released
		rep.Parked = b.Parked
	}
	switch {
	case res.Conflict:
		rep.Note = "another run committed the next batch first; stopped"
	case res.Stopped:
		rep.Note = stoppedNote(rep.Batches)
	case res.DeadlineReached:
		rep.Note = "time is up; batches left for the next run"
	case len(res.Batches) == 0:
		rep.Note = "nothing new"
	}
	return rep, err
}

func (p *Pipeline) load(ctx context.Context, run Run) (Report, error) {
	if err := need(Load, p.Processed); err != nil {
		return Report{}, err
	}
	start := time.Now()
	if len(run.Failed) > 0 {
		// An earlier stage failed: with no batch to load, load leaves the
		// warehouse as it is (no schema created) and gives no advice; the
		// failure above says what to do.
		if seq, err := p.Processed.LatestSeq(ctx); err == nil && seq == 0 {
			return Report{RunID: run.ID, Rows: map[string]int64{}, Duration: time.Since(start),
				Note: fmt.Sprintf("nothing to load: the processed bucket %s has no batches yet, and %s failed in this cycle",
					p.processedName(), strings.Join(run.Failed, " and "))}, nil
		}
	}
	wh, err := warehouse.Open(ctx, p.Config.WarehouseURL, p.Config.WarehouseSchema)
	if err != nil {
		return Report{RunID: run.ID, Rows: map[string]int64{}, Duration: time.Since(start)}, err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	res, err := wh.Load(ctx, warehouse.Options{Processed: p.Processed, Logger: p.stageLog(Load, run),
		Deadline: p.Deadline, Stop: run.Stop, Progress: p.meter(Load, run), Quiet: p.following()})
	rep := Report{RunID: run.ID, Rows: map[string]int64{}, Duration: time.Since(start),
		LoadReport: LoadReport{Skipped: len(res.Skipped), Pending: res.Pending}}
	for _, b := range res.Batches {
		rep.Batches = append(rep.Batches, b.Batch)
		for t, n := range b.Rows {
			rep.Rows[t] += n
		}
	}
	if err != nil {
		return rep, err
	}
	switch {
	case res.Stopped:
		rep.Note = stoppedNote(rep.Batches)
	case res.Pending > 0:
		rep.Note = "time is up; batches left for the next run"
	case len(res.Batches) == 0 && len(res.Skipped) == 0:
		rep.Note = p.nothingToLoad(ctx)
		return rep, nil
	}
	if n := len(res.Batches); n > 0 {
		if last, ferr := wh.LastLoad(ctx); ferr == nil {
			rep.Freshness = last.Lag
		}
		var m lake.Manifest
		if p.Processed.ReadManifest(ctx, res.Batches[n-1].Sequence, &m) == nil {
			rep.SnapshotAt = m.SnapshotAt
		}
	}
	return rep, nil
}

// stoppedNote is the note of a stage stopped as asked (Run.Stop) after
// batches.
func stoppedNote(batches []string) string {
	if len(batches) == 0 {
		return "stopped as asked before its first batch; the work is left for the next run"
	}
	return fmt.Sprintf("stopped as asked after batch %s; the rest is left for the next run", batches[len(batches)-1])
}

// nothingToLoad says why a load found nothing: a processed bucket with no
// batches at all (a fresh setup, or the wrong bucket) is not a warehouse up
// to date.
func (p *Pipeline) nothingToLoad(ctx context.Context) string {
	name := p.processedName()
	seq, err := p.Processed.LatestSeq(ctx)
	switch {
	case err != nil:
		return fmt.Sprintf("nothing to load (the processed bucket %s could not be listed: %s)", name, config.Redact(err.Error()))
	case seq == 0:
		return fmt.Sprintf("nothing to load: the processed bucket %s has no batches yet; "+
			"run 'sandstone ingest' and 'sandstone transform' first (or 'sandstone run'), or point --processed-bucket at the bucket transform writes", name)
	}
	return fmt.Sprintf("nothing to load: the warehouse is up to date (batch %s of %s)", lake.BatchID(seq), name)
}

// processedName is the processed bucket's URL as a person reads it.
func (p *Pipeline) processedName() string {
	if n, err := lake.ResolveURL(p.Config.ProcessedBucket); err == nil {
		return n
	}
	return p.Config.ProcessedBucket
}

// Pending counts the batches waiting for transform (ingested, not yet
// processed) and for load (processed, not yet loaded).
func (p *Pipeline) Pending(ctx context.Context) (transform, load int64, err error) {
	if err := need("pending", p.Ingest, p.Processed); err != nil {
		return 0, 0, err
	}
	in, err := p.Ingest.LatestSeq(ctx)
	if err != nil {
		return 0, 0, err
	}
	out, err := p.Processed.LatestSeq(ctx)
	if err != nil {
		return 0, 0, err
	}
	wh, err := warehouse.Open(ctx, p.Config.WarehouseURL, p.Config.WarehouseSchema)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	loaded, err := wh.LoadedSeq(ctx)
	if err != nil {
		return 0, 0, err
	}
	return max(0, in-out), max(0, out-loaded), nil
}
