package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/ingest"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/transform"
	"github.com/sandstone-data/sandstone/internal/warehouse"
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
	// Deadline, when set, makes transform and load stop at a batch
	// boundary once it has passed (a Lambda's time limit).
	Deadline time.Time
}

// Open opens the buckets cfg names: both, as the CLI's run, status and
// audit need.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Pipeline, error) {
	return openBuckets(ctx, cfg, logger, true, true)
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
	return openBuckets(ctx, cfg, logger, name != Load, name != Ingest)
}

func openBuckets(ctx context.Context, cfg config.Config, logger *slog.Logger, ingestion, processed bool) (*Pipeline, error) {
	if logger == nil {
		logger = slog.Default()
	}
	p := &Pipeline{Config: cfg, Logger: logger}
	if ingestion {
		in, err := lake.Open(ctx, cfg.IngestBucket)
		if err != nil {
			return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingestion bucket: %w", err))
		}
		p.Ingest = in
	}
	if processed {
		out, err := lake.Open(ctx, cfg.ProcessedBucket)
		if err != nil {
			_ = p.Close()
			return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("processed bucket: %w", err))
		}
		p.Processed = out
	}
	return p, nil
}

// Close closes the buckets that are open.
func (p *Pipeline) Close() error {
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

func (p *Pipeline) ingest(ctx context.Context) (Report, error) {
	if err := need(Ingest, p.Ingest); err != nil {
		return Report{}, err
	}
	res, err := ingest.Run(ctx, ingest.Options{SourceURL: p.Config.SourceURL, Bucket: p.Ingest,
		Lookback: p.Config.Lookback, Logger: p.Logger})
	rep := Report{RunID: res.RunID, Rows: res.Rows, Duration: res.Duration, Skew: res.Skew}
	switch {
	case res.Conflict:
		rep.Note = "another run committed the batch first"
	case res.Sequence == 0:
		rep.Note = "nothing new"
	default:
		rep.Batches = []string{res.Batch}
		rep.Bytes = map[string]int64{"all": res.Bytes}
	}
	return rep, err
}

func (p *Pipeline) transform(ctx context.Context) (Report, error) {
	if err := need(Transform, p.Ingest, p.Processed); err != nil {
		return Report{}, err
	}
	start := time.Now()
	res, err := transform.Run(ctx, transform.Options{Ingest: p.Ingest, Processed: p.Processed,
		Logger: p.Logger, Deadline: p.Deadline})
	rep := Report{RunID: res.RunID, Rows: map[string]int64{}, Duration: time.Since(start)}
	for _, b := range res.Batches {
		rep.Batches = append(rep.Batches, b.Batch)
		for t, n := range b.Rows {
			rep.Rows[t] += n
		}
		for t, n := range b.RejectedBy {
			if rep.Rejected == nil {
				rep.Rejected = map[string]int64{}
			}
			rep.Rejected[t] += n
		}
		rep.Parked = b.Parked
	}
	if len(res.Batches) == 0 {
		rep.Note = "nothing new"
	}
	return rep, err
}

func (p *Pipeline) load(ctx context.Context) (Report, error) {
	if err := need(Load, p.Processed); err != nil {
		return Report{}, err
	}
	start := time.Now()
	res, err := warehouse.Load(ctx, warehouse.Options{URL: p.Config.WarehouseURL, Schema: p.Config.WarehouseSchema,
		Processed: p.Processed, Logger: p.Logger, Deadline: p.Deadline})
	rep := Report{Rows: map[string]int64{}, Duration: time.Since(start)}
	for _, b := range res.Batches {
		rep.Batches = append(rep.Batches, b.Batch)
		for t, n := range b.Rows {
			rep.Rows[t] += n
		}
	}
	if err != nil {
		return rep, err
	}
	if len(res.Batches) == 0 {
		rep.Note = "nothing new"
		return rep, nil
	}
	last, ferr := warehouse.LastLoad(ctx, p.Config.WarehouseURL, p.Config.WarehouseSchema)
	if ferr == nil {
		rep.Freshness = last.Lag
	}
	return rep, nil
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
	loaded, err := warehouse.LoadedSeq(ctx, p.Config.WarehouseURL, p.Config.WarehouseSchema)
	if err != nil {
		return 0, 0, err
	}
	return max(0, in-out), max(0, out-loaded), nil
}
