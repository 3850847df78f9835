// Package bench measures Sandstone on one machine, on throwaway servers,
// side by side with the fastest copy PostgreSQL itself can make: the
// initial full pipeline (throughput, time per stage, peak memory of each
// stage), an incremental cycle after 1% of the source changed, an audit
// of the source against the two ingested batches, the freshness of
// `sandstone run` while the simulator writes, and the baseline (COPY out
// of the source, COPY into the warehouse, nothing in between).
//
// Every stage runs as a child process of the sandstone binary (the same
// `ingest`, `transform`, `load`, `audit` and `run` commands a user runs),
// so its time and its peak resident memory are its own.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// Defaults of Options.
const (
	DefaultDir               = "./sandstone-data/bench"
	DefaultSalesOrders       = 1_000_000
	DefaultChangeFraction    = 0.01
	DefaultFreshnessChanges  = 100
	DefaultFreshnessInterval = 5 * time.Second
	DefaultFreshnessTimeout  = 5 * time.Minute
	DefaultPoll              = 200 * time.Millisecond
	// DefaultBoundedBatchRows is the bound of the initial load in bounded
	// batches: the CLI's and the Lambda's default.
	DefaultBoundedBatchRows = config.DefaultMaxBatchRows
	// BaselineSchema is the warehouse schema the baseline copies into.
	BaselineSchema = "baseline"
	// The wal phases' defaults: `sandstone run --capture wal --interval
	// 1s` while 1,000 sales orders are updated at 100 a second; 64 MB
	// written outside the publication; a transaction of a million rows.
	DefaultWALFreshnessInterval = time.Second
	DefaultWALFreshnessChanges  = 1000
	DefaultWALFreshnessRate     = 100
	DefaultHoldBackMB           = 64
	DefaultBigTransactionRows   = 1_000_000
)

// Stages are the pipeline's stages, in order.
var Stages = []string{"ingest", "transform", "load"}

// Options shape a benchmark.
type Options struct {
	// Dir holds the servers and buckets; whatever it held is removed first.
	Dir string
	// SalesOrders is the scale of the seeded source.
	SalesOrders int
	// RandomSeed makes the seeded data.
	RandomSeed int64
	// ChangeFraction of the sales orders and payments change before the
	// incremental cycle.
	ChangeFraction float64
	// FreshnessChanges is how many source changes the freshness phase
	// measures (a negative number skips the phase); FreshnessInterval is `sandstone run`'s interval;
	// FreshnessTimeout bounds the phase; Poll is how often the warehouse is
	// looked at for the changes.
	FreshnessChanges  int
	FreshnessInterval time.Duration
	FreshnessTimeout  time.Duration
	Poll              time.Duration
	// IndexedCycle measures a second incremental cycle after an index on
	// last_updated is built in every source table.
	IndexedCycle bool
	// BoundedBatchRows is the bound of the initial load in bounded batches
	// (a negative number skips the phase).
	BoundedBatchRows int64
	// Captures are the capture modes measured side by side on one source
	// (config.CapturePoll, config.CaptureWAL; the poll alone when empty).
	// With the wal, the source runs with wal_level=logical and the wal
	// pipeline has buckets and a warehouse database of its own.
	Captures []string
	// The wal freshness phase: `sandstone run --capture wal` at
	// WALFreshnessInterval while WALFreshnessChanges sales orders are
	// updated at WALFreshnessRate a second (a negative number of changes
	// skips it).
	WALFreshnessInterval time.Duration
	WALFreshnessChanges  int
	WALFreshnessRate     float64
	// WALFollow runs the wal freshness phase's `sandstone run` with
	// --follow: the replication connection kept open, each batch
	// transformed and loaded while the next lands.
	WALFollow bool
	// HoldBackMB is the WAL written outside the publication before the
	// wal hold-back phase's ingest (a negative number skips the phase).
	HoldBackMB int
	// BigTransactionRows is how many sales orders one transaction changes
	// before the big-transaction cycle, run with the wal, of every capture
	// measured (a negative number skips it).
	BigTransactionRows int
	// Executable is the sandstone binary the stages run as (the running
	// one when empty).
	Executable string
	// ProfileDir, when set, receives a CPU and an allocation profile
	// (pprof) of every stage run.
	ProfileDir string
	// Keep leaves the servers running and the files in Dir; otherwise
	// everything is removed at the end.
	Keep bool
	// Progress receives a line per step (nothing when nil).
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.SalesOrders == 0 {
		o.SalesOrders = DefaultSalesOrders
	}
	if o.RandomSeed == 0 {
		o.RandomSeed = synth.DefaultRandomSeed
	}
	if o.ChangeFraction == 0 {
		o.ChangeFraction = DefaultChangeFraction
	}
	if o.FreshnessChanges == 0 {
		o.FreshnessChanges = DefaultFreshnessChanges
	}
	if o.FreshnessInterval == 0 {
		o.FreshnessInterval = DefaultFreshnessInterval
	}
	if o.FreshnessTimeout == 0 {
		o.FreshnessTimeout = DefaultFreshnessTimeout
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.BoundedBatchRows == 0 {
		o.BoundedBatchRows = DefaultBoundedBatchRows
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if err := o.walDefaults(); err != nil {
		return err
	}
	switch {
	case o.SalesOrders < 0:
		return fmt.Errorf("bench: sales orders must be positive, not %d", o.SalesOrders)
	case o.ChangeFraction < 0 || o.ChangeFraction > 1:
		return fmt.Errorf("bench: the change fraction must be between 0 and 1, not %v", o.ChangeFraction)
	case o.FreshnessInterval < 0 || o.FreshnessTimeout < 0 || o.Poll < 0:
		return errors.New("bench: the freshness settings must be positive")
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find the sandstone binary: %w", err)
		}
		o.Executable = exe
	}
	if o.ProfileDir != "" {
		abs, err := filepath.Abs(o.ProfileDir)
		if err != nil {
			return fmt.Errorf("bench: profile dir: %w", err)
		}
		o.ProfileDir = abs
		if err := os.MkdirAll(abs, 0o750); err != nil {
			return fmt.Errorf("bench: profile dir: %w", err)
		}
	}
	return nil
}

// Run runs the benchmark: it starts the servers, seeds the source, times
// the baseline, the initial pipeline, an incremental cycle, an audit and
// the freshness of `sandstone run`, and returns the figures.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	if err := opts.defaults(); err != nil {
		return res, err
	}
	began := time.Now()
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(opts.Progress, format+"\n", args...) }

	say("Starting throwaway PostgreSQL servers in %s ...", opts.Dir)
	var sbOpts sandbox.Options
	if opts.has(config.CaptureWAL) {
		sbOpts.SourceSettings = logicalSettings()
	}
	sb, err := sandbox.StartWith(ctx, opts.Dir, sbOpts)
	if err != nil {
		return res, err
	}
	defer func() {
		if opts.Keep {
			say("Kept %s; the servers are still running. Query the warehouse with:\n  psql %q", sb.Dir, sb.Config.WarehouseURL)
			return
		}
		err = errors.Join(err, sb.Stop(), sandbox.Clean(sb.Dir))
	}()
	var sourceDir string
	if sb.Source != nil {
		sourceDir = sb.Source.Dir
	}
	childrenOf := func(cfg config.Config) children { return newChildren(opts.Executable, cfg, opts.ProfileDir, sourceDir) }
	r := &run{opts: opts, cfg: sb.Config, dir: sb.Dir, say: say, c: childrenOf(sb.Config), poll: opts.has(config.CapturePoll),
		res: Result{SalesOrders: opts.SalesOrders, Captures: opts.Captures, Machine: describeMachine(ctx, sb.Config.SourceURL)}}
	if opts.has(config.CaptureWAL) {
		if r.wal, err = newWALRun(ctx, sb.Config, sb.Warehouse.CreateDatabase, sb.Dir, childrenOf, say); err != nil {
			return res, err
		}
		r.res.WAL = r.wal.res
	}
	for _, phase := range []func(context.Context) error{r.seed, r.baseline, r.initial, r.walInitial, r.bounded, r.incremental,
		r.audit, r.floor, r.indexed, r.freshness, r.walFreshness, r.walFollowCycle, r.walHoldBack, r.bigTransaction} {
		if err := phase(ctx); err != nil {
			return r.res, err
		}
	}
	r.res.TotalSeconds = time.Since(began).Seconds()
	r.res.Targets = evaluate(r.res)
	return r.res, nil
}

// run is one benchmark under way: its settings, its servers and what it
// has measured so far. Its phases run in order.
type run struct {
	opts Options
	cfg  config.Config
	dir  string
	say  func(format string, args ...any)
	c    children
	res  Result
	// poll is whether the poll is measured; wal is the wal pipeline, nil
	// when it is not.
	poll bool
	wal  *walRun
	// serials are the fact tables' serial ids before the incremental load,
	// for the floor.
	serials map[string]int64
}

func (r *run) seed(ctx context.Context) error {
	r.say("Seeding a totesys source with %d sales orders ...", r.opts.SalesOrders)
	t0 := time.Now()
	seeded, err := synth.Seed(ctx, r.cfg.SourceURL, synth.SeedOptions{SalesOrders: r.opts.SalesOrders, RandomSeed: r.opts.RandomSeed})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.res.SourceTables, r.res.SourceRows = seeded, seeded.Total()
	if err := vacuum(ctx, r.cfg.SourceURL); err != nil {
		return err
	}
	r.res.SeedSeconds = time.Since(t0).Seconds()
	r.say("  %d source rows in %.1fs (seeded and vacuumed)", r.res.SourceRows, r.res.SeedSeconds)
	return nil
}

func (r *run) baseline(ctx context.Context) error {
	r.say("Baseline: COPY every source table out and into the warehouse (schema %s) ...", BaselineSchema)
	names := make([]string, len(totesys.Tables))
	for i, t := range totesys.Tables {
		names[i] = t.Name
	}
	copied, err := Baseline(ctx, r.cfg.SourceURL, r.cfg.WarehouseURL, BaselineSchema, names)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.res.BaselineRows, r.res.BaselineSeconds = copied.Total(), copied.Duration.Seconds()
	r.say("  %d rows in %.2fs", r.res.BaselineRows, r.res.BaselineSeconds)
	// Dropped once measured, so that the pipeline does not pay for
	// autovacuum visiting the copy's fresh rows, nor for its dirty buffers.
	if err := withConn(ctx, r.cfg.WarehouseURL, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{BaselineSchema}.Sanitize()+" CASCADE")
		return err
	}); err != nil {
		return fmt.Errorf("bench: drop the baseline: %w", err)
	}
	checkpoint(ctx, r.cfg.WarehouseURL)
	return nil
}

func (r *run) initial(ctx context.Context) error {
	if !r.poll {
		return nil
	}
	r.say("Initial pipeline: ingest, transform, load into an empty warehouse, in one batch ...")
	initial, err := cycle(ctx, r.c.with(config.EnvMaxBatchRows+"=0"), "initial", r.say)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res := &r.res
	res.PipelineSeconds, res.StageSeconds, res.PeakRSSMB = initial.split()
	res.IngestSourceCPUSeconds = initial[0].SourceCPU.Seconds()
	if res.PipelineSeconds > 0 {
		res.RowsPerSecond = float64(res.SourceRows) / res.PipelineSeconds
	}
	if res.BaselineSeconds > 0 {
		res.Ratio = res.PipelineSeconds / res.BaselineSeconds
	}
	err = withWarehouse(ctx, r.cfg.WarehouseURL, r.cfg.WarehouseSchema, func(wh *warehouse.Warehouse) (err error) {
		res.WarehouseRows, err = wh.Counts(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func (r *run) bounded(ctx context.Context) error {
	if !r.poll {
		return nil
	}
	if r.opts.BoundedBatchRows <= 0 {
		return nil
	}
	r.say("Initial load in bounded batches of %d rows (schema %s) ...", r.opts.BoundedBatchRows, BoundedSchema)
	bounded, err := boundedRun{c: r.c, dir: r.dir, bound: r.opts.BoundedBatchRows, warehouse: r.cfg.WarehouseURL,
		source: r.res.SourceRows}.run(ctx, r.say)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.res.setBounded(r.opts.BoundedBatchRows, bounded)
	if !bounded.Equal {
		r.say("  THE BOUNDED LOAD MADE ANOTHER WAREHOUSE (%v differ): this is a bug", bounded.Differs)
	}
	return nil
}

// incremental changes ChangeFraction of the source, then runs the cycle
// of each capture measured, the poll's first.
func (r *run) incremental(ctx context.Context) (err error) {
	var walSerials map[string]int64
	if r.wal != nil {
		if walSerials, err = r.wal.beforeChange(ctx); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, r.wal.dropFloor(ctx)) }()
	}
	var changes int64
	if r.poll {
		var c Cycle
		c, r.serials, err = r.changeAndCycle(ctx, "incremental")
		r.res.setIncremental(c)
		changes = c.Changes
	} else {
		changes, err = r.change(ctx, "incremental")
	}
	if err != nil {
		return err
	}
	if r.wal == nil {
		return nil
	}
	return r.wal.incremental(ctx, walSerials, changes)
}

// change changes ChangeFraction of the sales orders and payments before
// the phase's cycle, and returns the rows changed.
func (r *run) change(ctx context.Context, phase string) (int64, error) {
	r.say("Changing %.3g%% of the sales orders and payments ...", r.opts.ChangeFraction*100)
	changed, err := synth.ChangeFraction(ctx, r.cfg.SourceURL, r.opts.ChangeFraction)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	r.say("  %d rows changed; %s cycle ...", changed.Total(), phase)
	return changed.Total(), nil
}

// changeAndCycle changes ChangeFraction of the sales orders and payments,
// then runs the three stages as children, and then measures the cycle's
// floor. It returns the cycle and the fact tables' serial ids before it.
func (r *run) changeAndCycle(ctx context.Context, phase string) (Cycle, map[string]int64, error) {
	w, err := windowsOf(ctx, r.cfg.IngestBucket, cmp.Or(r.cfg.Lookback, config.DefaultLookback))
	if err != nil {
		return Cycle{}, nil, err
	}
	serials, err := maxSerials(ctx, r.cfg.WarehouseURL, r.cfg.WarehouseSchema)
	if err != nil {
		return Cycle{}, nil, err
	}
	changes, err := r.change(ctx, phase)
	if err != nil {
		return Cycle{}, nil, err
	}
	c := Cycle{Changes: changes, RowsPerSecond: map[string]float64{}}
	runs, err := cycle(ctx, r.c, phase, r.say)
	if err != nil {
		return c, nil, fmt.Errorf("bench: %w", err)
	}
	c.set(runs)
	if c.LoadBatchSeconds, err = loadBatchSeconds(ctx, r.cfg.WarehouseURL, r.cfg.WarehouseSchema); err != nil {
		return c, nil, err
	}
	f := &c.Floor
	if f.ReadSeconds, f.ReadRows, err = measureReadFloor(ctx, r.cfg.SourceURL, w); err != nil {
		return c, nil, err
	}
	if f.WriteSeconds, err = measureWriteFloor(ctx, r.cfg.WarehouseURL, r.cfg.WarehouseSchema, serials); err != nil {
		return c, nil, err
	}
	f.Ratio = c.Seconds / f.seconds()
	r.say("  floor: PostgreSQL alone reads the window (%d rows) in %.2fs and writes the fact rows in %.2fs: the cycle is %.2fx that",
		f.ReadRows, f.ReadSeconds, f.WriteSeconds, f.Ratio)
	return c, serials, nil
}

// indexed gives every source table the index on last_updated that ingest
// advises (totesys ships none), then measures another incremental cycle:
// what the cycle costs when ingest reads the changed rows alone.
func (r *run) indexed(ctx context.Context) error {
	if !r.opts.IndexedCycle || !r.poll {
		return nil
	}
	r.say("Indexed source: an index on last_updated in every source table, as ingest advises ...")
	t0 := time.Now()
	err := withConn(ctx, r.cfg.SourceURL, func(conn *pgx.Conn) error {
		for _, t := range totesys.Tables {
			if _, err := conn.Exec(ctx, "CREATE INDEX ON "+pgx.Identifier{t.Name}.Sanitize()+" ("+pgx.Identifier{totesys.LastUpdated}.Sanitize()+")"); err != nil {
				return fmt.Errorf("index %s: %w", t.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.res.SourceIndexSeconds = time.Since(t0).Seconds()
	r.say("  built in %.1fs", r.res.SourceIndexSeconds)
	c, _, err := r.changeAndCycle(ctx, "indexed")
	r.res.Indexed = &c
	return err
}

func (r *run) audit(ctx context.Context) error {
	if !r.poll {
		return nil
	}
	r.say("Audit: sandstone audit --json, the source against the two ingested batches ...")
	a, err := r.c.audit(ctx)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res := &r.res
	res.setAudit(a)
	r.say("  %-9s %7.2fs  peak RSS %6.1f MB: %d source rows and %d landed versions read, %d pending; %.2fx the initial ingest's %.2fs",
		"audit", res.AuditSeconds, res.AuditPeakRSSMB, res.AuditSourceRows, res.AuditLandedVersions, res.AuditPending,
		res.AuditIngestRatio, res.StageSeconds["ingest"])
	if res.AuditDrift {
		r.say("  AUDIT FOUND DRIFT IN A CLEAN PIPELINE (%s): this is a bug", res.auditDrift())
	}
	return nil
}

func (r *run) floor(ctx context.Context) error {
	if !r.poll {
		return nil
	}
	r.say("Floor: the incremental load's fact rows written again by COPY alone, keys and foreign keys checked by PostgreSQL ...")
	res := &r.res
	var err error
	if res.FloorSeconds, res.FloorRows, err = measureFloor(ctx, r.cfg.WarehouseURL, r.cfg.WarehouseSchema, r.serials); err != nil {
		return err
	}
	res.setFloor()
	r.say("  %d rows in %.2fs (%.0f rows/s); load took %.2fs (%.2fs in its batch): %.2fx the floor",
		res.FloorRows, res.FloorSeconds, res.FloorRowsPerSecond, res.IncrementalStageSeconds["load"],
		res.IncrementalLoadBatchSeconds, res.LoadFloorRatio)
	return nil
}

func (r *run) freshness(ctx context.Context) error {
	if !r.poll {
		return nil
	}
	if r.opts.FreshnessChanges <= 0 {
		return nil
	}
	r.say("Freshness: sandstone run --interval %s while the simulator writes %d changes ...",
		r.opts.FreshnessInterval, r.opts.FreshnessChanges)
	f, err := measureFreshness(ctx, r.c, freshnessPlan{
		sourceURL: r.cfg.SourceURL, warehouseURL: r.cfg.WarehouseURL, schema: r.cfg.WarehouseSchema,
		changes: r.opts.FreshnessChanges, interval: r.opts.FreshnessInterval, poll: r.opts.Poll,
		timeout: r.opts.FreshnessTimeout, logPath: filepath.Join(r.dir, "run.log"),
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.res.setFreshness(f, r.opts.FreshnessInterval)
	r.say("  %d changes, %d seen in the warehouse: p50 %.2fs, p95 %.2fs", f.Changes, len(f.Delays),
		r.res.FreshnessP50Seconds, r.res.FreshnessP95Seconds)
	return nil
}

// cycleRuns are the stage runs of one cycle.
type cycleRuns []StageRun

// split returns the cycle's total seconds, and the seconds and peak RSS
// (MB) of each stage.
func (runs cycleRuns) split() (total float64, seconds, rssMB map[string]float64) {
	seconds, rssMB = map[string]float64{}, map[string]float64{}
	for _, r := range runs {
		total += r.Duration.Seconds()
		seconds[r.Stage] = r.Duration.Seconds()
		rssMB[r.Stage] = float64(r.PeakRSS) / (1 << 20)
	}
	return total, seconds, rssMB
}

// cycle runs ingest, transform and load, each as a child process.
func cycle(ctx context.Context, c children, phase string, say func(string, ...any)) (cycleRuns, error) {
	var runs cycleRuns
	for _, s := range Stages {
		r, err := c.stage(ctx, phase, s)
		if err != nil {
			return runs, err
		}
		say("  %-9s %7.2fs  peak RSS %6.1f MB", s, r.Duration.Seconds(), float64(r.PeakRSS)/(1<<20))
		runs = append(runs, r)
	}
	return runs, nil
}

// vacuum vacuums and analyzes the seeded source, so that neither the
// pipeline nor the baseline, whichever reads first, pays for setting the
// hint bits of a freshly loaded table (a live source has long been
// vacuumed).
func vacuum(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("bench: vacuum the source: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
		return fmt.Errorf("bench: vacuum the source: %w", err)
	}
	return nil
}

// checkpoint asks the warehouse server to write out what the baseline
// left in its buffers, so that the pipeline does not pay for it. It is
// best effort.
func checkpoint(ctx context.Context, url string) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	_, _ = conn.Exec(ctx, "CHECKPOINT")
}
