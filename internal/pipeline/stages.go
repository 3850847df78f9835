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

// Open opens the buckets cfg names.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Pipeline, error) {
	in, err := lake.Open(ctx, cfg.IngestBucket)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingestion bucket: %w", err))
	}
	out, err := lake.Open(ctx, cfg.ProcessedBucket)
	if err != nil {
		_ = in.Close()
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("processed bucket: %w", err))
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Pipeline{Config: cfg, Ingest: in, Processed: out, Logger: logger}, nil
}

// Close closes the buckets.
func (p *Pipeline) Close() error {
	return errors.Join(p.Ingest.Close(), p.Processed.Close())
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
	start := time.Now()
	res, err := transform.Run(ctx, transform.Options{Ingest: p.Ingest, Processed: p.Processed,
		Logger: p.Logger, Deadline: p.Deadline})
	rep := Report{RunID: res.RunID, Rows: map[string]int64{}, Duration: time.Since(start)}
	for _, b := range res.Batches {
		rep.Batches = append(rep.Batches, b.Batch)
		for t, n := range b.Rows {
			rep.Rows[t] += n
		}
	}
	if len(res.Batches) == 0 {
		rep.Note = "nothing new"
	}
	return rep, err
}

func (p *Pipeline) load(ctx context.Context) (Report, error) {
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
