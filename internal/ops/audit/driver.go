package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// Stage is the stage an audit's log lines, metrics and alerts name.
const Stage = "audit"

// The messages of an audit's one result line: INFO when everything agrees,
// WARN (with drift=true) when not. Drift is a finding, not a failure: only
// a failure logs an ERROR line.
const (
	MsgClean = "audit found no drift"
	MsgDrift = "audit found drift"
)

// Observer is told each audit's outcome: the report of an audit that ran
// to its end, whatever it found, or the failure of one that did not.
type Observer interface {
	AuditDone(ctx context.Context, r Report)
	AuditFailed(ctx context.Context, err error)
}

// Driver runs audits the one way `sandstone audit`, `sandstone run`'s
// periodic audit and the Lambda audit function all do: it logs one result
// line (MsgClean or MsgDrift) or the failure's one ERROR line, saves the
// report in the ingestion bucket, where `sandstone status` finds it, and
// tells its observers (metrics, alerts). A report that cannot be saved is a
// WARN line, not a failure: the finding stands, and has been logged,
// measured and alerted all the same.
type Driver struct {
	Logger *slog.Logger
	// Quiet logs the result line at Debug: for a terminal, where the
	// printed report says it.
	Quiet     bool
	Observers []Observer
}

func (d *Driver) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// Audit opens the buckets cfg names and audits cfg.SourceURL against the
// ingestion bucket; also the warehouse against the processed bucket when
// cfg.WarehouseURL is set; with cfg.AuditRepair it repairs what it finds.
// The buckets are opened for reading only (a file bucket's directory is
// never created) unless the repair writes to the ingestion bucket; an
// ingestion bucket whose directory does not exist yet holds no batches, and
// keeps no report. A bucket that cannot be opened is config_invalid.
func (d *Driver) Audit(ctx context.Context, cfg config.Config) (Report, error) {
	opts := Options{SourceURL: cfg.SourceURL, Lookback: cfg.Lookback, Repair: cfg.AuditRepair,
		WarehouseURL: cfg.WarehouseURL, WarehouseSchema: cfg.WarehouseSchema}
	in, keep, err := openBucket(ctx, cfg.IngestBucket, cfg.AuditRepair)
	if err != nil {
		return Report{}, d.fail(ctx, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingestion bucket: %w", err)))
	}
	defer func() { _ = in.Close() }()
	opts.Bucket = in
	if cfg.WarehouseURL != "" {
		out, _, err := openBucket(ctx, cfg.ProcessedBucket, false)
		if err != nil {
			return Report{}, d.fail(ctx, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("processed bucket: %w", err)))
		}
		defer func() { _ = out.Close() }()
		opts.Processed = out
	}
	if !keep {
		d.logger().Info("the ingestion bucket has no batches yet; the audit report is not kept",
			logging.KeyStage, Stage, "bucket", cfg.IngestBucket)
	}
	return d.run(ctx, opts, keep)
}

// Run audits with opts, whose buckets the caller has opened (sandstone
// run's), and reports it as Audit does.
func (d *Driver) Run(ctx context.Context, opts Options) (Report, error) {
	return d.run(ctx, opts, true)
}

func (d *Driver) run(ctx context.Context, opts Options, keep bool) (Report, error) {
	if opts.Logger == nil {
		opts.Logger = d.logger()
	}
	r, err := Run(ctx, opts)
	if err != nil {
		// A context ended with a cause of its own (the Lambda's deadline)
		// says why the audit stopped.
		if cause := context.Cause(ctx); ctx.Err() != nil && !errors.Is(cause, ctx.Err()) {
			err = fmt.Errorf("%v: %w", cause, err)
		}
		return r, d.fail(ctx, err)
	}
	if keep {
		if err := Save(ctx, opts.Bucket, r); err != nil {
			d.logger().Warn("the audit report could not be saved; what the audit found stands", logging.KeyStage, Stage,
				logging.KeyErrorKind, string(errkind.BucketWriteFailed), logging.KeyError, err.Error())
		}
	}
	d.result(ctx, r, opts.Repair)
	for _, o := range d.Observers {
		o.AuditDone(ctx, r)
	}
	return r, nil
}

// result logs the audit's one result line.
func (d *Driver) result(ctx context.Context, r Report, repair bool) {
	missing, deleted := r.SourceDrift()
	attrs := []slog.Attr{
		slog.String(logging.KeyStage, Stage),
		slog.Bool("drift", r.Drift),
		slog.Int64(KindMissing, missing),
		slog.Int64(KindDeleted, deleted),
		slog.String(logging.KeyBatch, r.Batch),
		slog.String("summary", r.Summary()),
		slog.Bool("repair", repair),
		slog.Float64(logging.KeySeconds, r.Seconds),
	}
	if r.Warehouse != nil {
		attrs = append(attrs, slog.Int64("warehouse_drift", r.WarehouseDrift()))
	}
	if r.Repaired != nil {
		attrs = append(attrs, slog.String("repaired_batch", r.Repaired.Batch))
	}
	level, msg := slog.LevelInfo, MsgClean
	if r.Drift {
		level, msg = slog.LevelWarn, MsgDrift
	}
	if d.Quiet {
		level = slog.LevelDebug
	}
	d.logger().LogAttrs(ctx, level, msg, attrs...)
}

// fail logs the failure's one ERROR line, tells the observers and returns
// err.
func (d *Driver) fail(ctx context.Context, err error) error {
	logging.Failure(d.logger(), Stage, "", err)
	for _, o := range d.Observers {
		o.AuditFailed(ctx, err)
	}
	return err
}

// openBucket opens a bucket for an audit: for reading only unless write. A
// directory that does not exist yet holds no batches: the audit then reads
// an empty stand-in, and keep is false (there is nowhere to keep a report).
func openBucket(ctx context.Context, url string, write bool) (b *lake.Bucket, keep bool, err error) {
	if write {
		b, err = lake.Open(ctx, url)
		return b, err == nil, err
	}
	b, err = lake.OpenExisting(ctx, url)
	if errors.Is(err, lake.ErrNoBucket) {
		b, err = lake.Open(ctx, "mem://")
		return b, false, err
	}
	return b, err == nil, err
}
