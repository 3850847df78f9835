// Package ingest is Sandstone's first stage: it reads every source row
// version that is new since the last run from the totesys database and lands
// it in the ingestion bucket, one Parquet object per changed table and a
// manifest written last.
//
// # Exactly once
//
// Each run reads all eleven tables in one read-only REPEATABLE READ
// transaction, so a batch is one consistent snapshot of the source. The
// session's time zone is UTC, so timestamptz columns read as UTC.
//
// A table's window starts at the earlier of the previous snapshot's time and
// the newest last_updated already landed for the table, less the lookback
// (every row, the first time): the clock that stamps last_updated is the
// application's, not the database's, and may run behind it (a writer in
// another time zone, history loaded in order) or ahead. The run drops the
// versions already landed: each table's state remembers the (id,
// last_updated) of every landed version above a bound (Since) at or below
// the next window's start, so
//
//   - rows that share a last_updated with rows landed earlier still land,
//     once: they are told apart by id;
//   - a row that commits late (PostgreSQL stamps CURRENT_TIMESTAMP at
//     transaction start) is caught by the next run as long as it commits
//     within the lookback of its timestamp, and is not landed twice;
//   - a window never reaches below Since, so a raised lookback widens the
//     window as the runs go on and never lands a version twice;
//   - nothing committed is held back: every visible version lands now.
//
// What no timestamp can see (a commit later than the lookback, a delete, an
// update that keeps last_updated) is what `sandstone audit` finds.
//
// # Bounded batches
//
// With Options.MaxBatchRows a batch lands at most that many versions, over
// all its tables: the tables in order (referenced before referencing), each
// in last_updated order, until the bound; the rest is the next run's, and
// Result.More says there is some. The same rules make it exactly once:
// the next window starts below the newest stamp landed, and skips the
// versions of it that landed (versions that share a stamp may be split
// between two batches, never lost or repeated); a table the batch did not
// reach keeps its state, with the snapshot it was read in
// (TableState.SnapshotAt). Each batch is still one snapshot, and a table
// is read only once every table before it has landed all it had in that
// snapshot, so a batch never holds a row whose references land later.
//
// A last_updated of 'infinity', or past the year 9999, lands as it is
// (math.MaxInt64 µs; transform rejects the row) and moves no watermark.
// When a table's newest stamps run behind the previous snapshot, or ahead of
// this one, by more than the lookback, the run warns once and reports the
// skew (Result.Skew, TableState.Skew).
//
// Batches are numbered; the manifest of batch N is created exclusively, so
// of two runs racing for N only one commits, and the other's objects stay
// invisible orphans (readers only follow manifests), as do the objects of a
// run that fails after some of its tables landed. The state lives in the
// bucket, so a fresh process or a Lambda resumes from it.
//
// # Speed
//
// Rows come off the wire in PostgreSQL's binary form and are decoded
// straight into Parquet values, column by column, in chunks that another
// goroutine encodes, compresses and writes while the next chunk is read;
// each table's object is committed as soon as the table is read, so memory
// holds one table's buffers at a time whatever the size of the source.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
	"github.com/sandstone-data/sandstone/internal/progress"
	"github.com/sandstone-data/sandstone/internal/totesys"
)

// Options configure a run.
type Options struct {
	SourceURL string
	Bucket    *lake.Bucket
	// Lookback is how long after its last_updated a row may still commit
	// and be caught; config.DefaultLookback when zero.
	Lookback time.Duration
	Logger   *slog.Logger
	// RunID names the run in the manifest and the log; a new id when empty.
	RunID string
	// Progress reports the rows read per table as they go (nil: none).
	Progress *progress.Meter
	// MaxBatchRows bounds the rows the batch lands, over all its tables
	// (config.DefaultMaxBatchRows is the CLI's and the Lambda's); zero
	// means no bound. What does not fit is left, in last_updated order,
	// to the next run, and Result.More says so.
	MaxBatchRows int64
}

// Result tells what a run landed.
type Result struct {
	// Skew is, per table, how far its newest last_updated runs ahead of
	// (positive) or behind (negative) the source's clock beyond the
	// lookback; zero when within it.
	Skew map[string]time.Duration
	// Sequence and Batch name the batch written; 0 and "" when nothing
	// changed or another run committed first.
	Sequence int64
	Batch    string
	RunID    string
	// SourceNewest is the newest last_updated landed (zero when nothing
	// landed).
	SourceNewest time.Time
	// Rows counts the versions landed per table.
	Rows     map[string]int64
	Bytes    int64
	Duration time.Duration
	// Conflict is set when a concurrent run committed the same batch first;
	// this run then wrote nothing visible.
	Conflict bool
	// More is set when the batch stopped at Options.MaxBatchRows with
	// versions still to land: the next run goes on from there.
	More bool
}

// Total is the number of rows landed.
func (r Result) Total() int64 {
	var n int64
	for _, v := range r.Rows {
		n += v
	}
	return n
}

// State is ingest's progress, saved with every batch.
type State struct {
	// SnapshotAt is the source's clock when the batch's snapshot was taken.
	SnapshotAt time.Time `json:"snapshot_at"`
	// Tables holds each table's progress.
	Tables map[string]*TableState `json:"tables"`
}

// TableState is one table's progress.
type TableState struct {
	// Watermark is the newest last_updated landed.
	Watermark time.Time `json:"watermark"`
	// LandedAt and Batch tell when and in which batch rows last landed.
	LandedAt time.Time `json:"landed_at,omitzero"`
	Batch    string    `json:"batch,omitempty"`
	// Since bounds Recent: it holds every version landed whose last_updated
	// lies after Since. Zero in states written before it existed (Recent
	// then covers SnapshotAt less the lookback).
	Since time.Time `json:"since,omitzero"`
	// Recent are the versions landed whose last_updated lies after Since,
	// as [id, last_updated in µs] pairs.
	Recent [][2]int64 `json:"recent"`
	// Skew is how far the table's newest last_updated ran ahead of
	// (positive) or behind (negative) the source's clock beyond the
	// lookback when rows last landed; zero when within it.
	Skew time.Duration `json:"skew_ns,omitempty"`
	// SnapshotAt, when set, is the source's clock at the snapshot the
	// table was last read in, older than the state's: a batch that
	// reached its bound before the table kept the table's state as it was.
	// Zero means the state's SnapshotAt.
	SnapshotAt time.Time `json:"snapshot_at,omitzero"`
}

// snapshotOf is the source's clock at the snapshot table was last read in.
func (s State) snapshotOf(table string) time.Time {
	if ts := s.Tables[table]; ts != nil && !ts.SnapshotAt.IsZero() {
		return ts.SnapshotAt
	}
	return s.SnapshotAt
}

type version struct {
	id int32
	us int64
}

// Run lands every source row version that is new since the last run.
func Run(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	res := Result{RunID: opts.RunID, Rows: map[string]int64{}, Skew: map[string]time.Duration{}}
	if res.RunID == "" {
		res.RunID = lake.NewRunID()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("stage", "ingest", "run_id", res.RunID)
	if opts.Lookback == 0 {
		opts.Lookback = config.DefaultLookback
	}
	switch {
	case opts.Lookback < 0:
		return res, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingest: lookback %s: want a positive duration such as 10m", opts.Lookback))
	case opts.SourceURL == "":
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no source URL"))
	case opts.Bucket == nil:
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no ingestion bucket"))
	}

	prevSeq, prev, err := LoadState(ctx, opts.Bucket)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", err))
	}

	tx, snapshotAt, closeSource, err := OpenSnapshot(ctx, opts.SourceURL)
	if err != nil {
		return res, err
	}
	defer closeSource()

	seq := prevSeq + 1
	next := State{SnapshotAt: snapshotAt, Tables: map[string]*TableState{}}
	var objects []lake.Object
	var newest time.Time
	budget := batchBudget{left: opts.MaxBatchRows, bounded: opts.MaxBatchRows > 0}
	for _, table := range totesys.Tables {
		r := tableRun{table: table, prev: prev.Tables[table.Name], prevSnapshot: prev.snapshotOf(table.Name),
			snapshotAt: snapshotAt, lookback: opts.Lookback, now: start, seq: seq, runID: res.RunID, limit: budget.left,
			progress: opts.Progress}
		if budget.spent() {
			// Not read in this snapshot: its state stays as it was, with
			// the snapshot it was read in.
			next.Tables[table.Name] = r.unread()
			res.Skew[table.Name] = next.Tables[table.Name].Skew
			res.More = true
			continue
		}
		tw, err := r.read(ctx, tx, opts.Bucket, log)
		if err == nil && tw.rows > 0 {
			// Committed at once, so that one table's encoder and buffers
			// are held at a time. Should the run fail later, the object
			// stays unreferenced, as those of a run that loses the race
			// for its batch do.
			obj, cerr := tw.commit()
			if cerr != nil {
				err = errkind.Wrap(errkind.BucketWriteFailed, cerr)
			}
			objects = append(objects, obj)
		}
		if err != nil {
			if tw != nil {
				tw.abort()
			}
			return res, fmt.Errorf("ingest %s: %w", table.Name, err)
		}
		ts := r.nextState(tw, lake.BatchID(seq))
		r.reportSkew(ts, log)
		res.Skew[table.Name] = ts.Skew
		if tw.rows > 0 && tw.watermark != nil {
			newest = maxTime(newest, tw.watermark.To)
		}
		next.Tables[table.Name] = ts
		budget.take(tw.rows)
		res.More = res.More || tw.partial
	}
	closeSource()

	if len(objects) == 0 {
		res.Duration = time.Since(start)
		log.Info("ingest found nothing new", "seconds", res.Duration.Seconds())
		return res, nil
	}
	m := lake.Manifest{SnapshotAt: snapshotAt, SourceNewest: newest, Tables: objects}
	res.SourceNewest = newest
	return commit(ctx, opts.Bucket, seq, m, next, res, start, log)
}

// commit saves the batch's state and creates its manifest, last. A
// manifest created first by another run leaves this run's objects
// unreferenced, and the result says so (Conflict).
func commit(ctx context.Context, b *lake.Bucket, seq int64, m lake.Manifest, next State, res Result, start time.Time, log *slog.Logger) (Result, error) {
	for _, obj := range m.Tables {
		res.Rows[obj.Table] = obj.Rows
		res.Bytes += obj.Bytes
	}
	m.Version, m.Stage, m.Batch, m.Sequence, m.RunID = 1, "ingest", lake.BatchID(seq), seq, res.RunID
	m.StateKey = lake.StateKey(seq, res.RunID)
	if err := putState(ctx, b, m.StateKey, next); err != nil {
		return res, errkind.Wrap(errkind.BucketWriteFailed, fmt.Errorf("ingest: %w", err))
	}
	m.CreatedAt = time.Now().UTC()
	if err := b.PutManifest(ctx, seq, m); err != nil {
		if lake.IsExists(err) {
			res.Conflict = true
			res.Rows = map[string]int64{}
			res.Duration = time.Since(start)
			log.Warn("another ingest run committed this batch first; this run's objects stay unreferenced",
				"batch", lake.BatchID(seq))
			return res, nil
		}
		return res, errkind.Wrap(errkind.BucketWriteFailed, fmt.Errorf("ingest: %w", err))
	}
	res.Sequence, res.Batch = seq, lake.BatchID(seq)
	res.Duration = time.Since(start)
	log.Info("ingest landed batch", "batch", res.Batch, "rows", res.Total(), "tables", res.Rows,
		"bytes", res.Bytes, "repair", m.Repair, "seconds", res.Duration.Seconds())
	return res, nil
}

// OpenSnapshot connects to the source in UTC and begins a read-only
// REPEATABLE READ transaction, returning it with the source's clock at its
// start. close ends both and may be called more than once.
func OpenSnapshot(ctx context.Context, url string) (tx pgx.Tx, at time.Time, close func(), err error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, at, nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingest: source URL: %s", config.Redact(err.Error())))
	}
	// timestamptz columns are then read, and now() is taken, in UTC.
	cfg.RuntimeParams["timezone"] = "UTC"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, at, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: connect to source: %s", config.Redact(config.ConnectHint(cfg, err).Error())))
	}
	tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		err = tx.QueryRow(ctx, "SELECT now()").Scan(&at)
	}
	closed := false
	close = func() {
		if !closed {
			closed = true
			if tx != nil {
				_ = tx.Rollback(context.Background())
			}
			_ = conn.Close(context.Background())
		}
	}
	if err != nil {
		close()
		return nil, at, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: begin snapshot: %w", err))
	}
	return tx, at.UTC(), close, nil
}

// tableWriter streams one table's new versions into its object.
type tableWriter struct {
	table   string
	w       *lake.ParquetWriter[any]
	columns []lake.Column
	rows    int64
	// watermark is the range of the rows' last_updated that a time can
	// hold (years 1 to 9999); nil when the table landed none such.
	watermark *lake.Range
	landed    landedSet
	// partial is set when the read stopped at the batch's bound with
	// versions still to land.
	partial bool
	// count tells a person watching the rows as they are read.
	count *progress.Counter
}

func (t *tableWriter) abort() {
	if t.w != nil {
		t.w.Abort()
		t.w = nil
	}
}

func (t *tableWriter) commit() (lake.Object, error) {
	key := t.w.Key()
	size, sum, err := t.w.Close()
	t.w = nil // nothing left to abort; the encoder can go
	if err != nil {
		return lake.Object{}, err
	}
	return lake.Object{Table: t.table, Key: key, Rows: t.rows, Bytes: size, SHA256: sum,
		Watermark: t.watermark, Columns: t.columns}, nil
}

// Repair is what an audit found that the watermark cannot land.
type Repair struct {
	// Seq is the batch the audit compared with: the repair lands only on
	// top of it, so that nothing that landed since is landed twice.
	Seq int64
	// Missing are, per table, the ids whose current source version never
	// landed.
	Missing map[string][]int32
	// Deleted are, per table, the ids gone from the source.
	Deleted map[string][]int32
}

// LandRepair lands, from tx (a snapshot from OpenSnapshot taken at
// snapshotAt, the one the audit read), the current version of every missing
// row and a tombstone for every deleted id, as one batch whose manifest is
// marked as a repair. Ingest's state carries over unchanged: the repaired
// versions lie below every window. It refuses when a batch landed after
// rep.Seq, since the audit is then out of date.
func LandRepair(ctx context.Context, tx pgx.Tx, snapshotAt time.Time, b *lake.Bucket, rep Repair, logger *slog.Logger) (Result, error) {
	start := time.Now()
	res := Result{RunID: lake.NewRunID(), Rows: map[string]int64{}}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("stage", "ingest", "run_id", res.RunID)
	seq, prev, err := LoadState(ctx, b)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("repair: %w", err))
	}
	if seq != rep.Seq {
		return res, errkind.Wrap(errkind.Internal, fmt.Errorf("repair: batch %s landed after the audit of batch %s: audit again",
			lake.BatchID(seq), lake.BatchID(rep.Seq)))
	}
	m := lake.Manifest{Repair: true, SnapshotAt: snapshotAt}
	for _, table := range totesys.Tables {
		ids := rep.Missing[table.Name]
		if len(ids) == 0 {
			continue
		}
		r := tableRun{table: table, only: ids, now: start, seq: seq + 1, runID: res.RunID}
		tw, err := r.read(ctx, tx, b, log)
		if err == nil && tw.rows > 0 {
			var obj lake.Object
			if obj, err = tw.commit(); err != nil {
				err = errkind.Wrap(errkind.BucketWriteFailed, err)
			}
			m.Tables = append(m.Tables, obj)
		}
		if err != nil {
			if tw != nil {
				tw.abort()
			}
			return res, fmt.Errorf("repair %s: %w", table.Name, err)
		}
	}
	for table, ids := range rep.Deleted {
		if len(ids) > 0 {
			if m.Deleted == nil {
				m.Deleted = map[string][]int32{}
			}
			m.Deleted[table] = ids
		}
	}
	if len(m.Tables) == 0 && len(m.Deleted) == 0 {
		res.Duration = time.Since(start)
		return res, nil
	}
	return commit(ctx, b, seq+1, m, prev, res, start, log)
}

// tableRun is one table's part of a run: where its window starts and
// which versions it has landed already.
type tableRun struct {
	table        totesys.Table
	prev         *TableState // nil when the table never landed a row
	prevSnapshot time.Time   // zero on the first run
	snapshotAt   time.Time
	lookback     time.Duration
	now          time.Time
	seq          int64
	runID        string
	// only, when set, reads these ids alone, whatever their stamps (a
	// repair).
	only []int32
	// limit, when positive, is the most versions the read may land: it
	// then reads in last_updated order and stops there (see read).
	limit int64
	// progress, when set, is told the rows as they are read.
	progress *progress.Meter
}

// NextWindow is where the next run's read of table starts (exclusive),
// given this state; ok is false when the next run reads every row. A version
// stamped after it is still to be landed by the next run.
func (s State) NextWindow(table string, lookback time.Duration) (start time.Time, ok bool) {
	r := tableRun{prev: s.Tables[table], prevSnapshot: s.snapshotOf(table), lookback: lookback}
	return r.windowStart()
}

// ReadVersions streams the (key, last_updated in µs) of every row of table
// in tx whose key lies in [from, to) to fn, in no order.
func ReadVersions(ctx context.Context, tx pgx.Tx, table totesys.Table, from, to int64, fn func(id int32, us int64)) error {
	key := pgx.Identifier{table.Key}.Sanitize()
	sql := "SELECT " + key + "::int4, " + pgx.Identifier{totesys.LastUpdated}.Sanitize() +
		"::timestamp FROM " + pgx.Identifier{table.Name}.Sanitize() + " WHERE " + key + " >= $1::int8 AND " + key + " < $2::int8"
	rows, err := tx.Query(ctx, sql, pgx.QueryResultFormats{pgx.BinaryFormatCode}, from, to)
	if err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read %s: %w", table.Name, err))
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		id, ok1 := int32Of(raw[0])
		us, ok2 := microsOf(raw[1])
		if !ok1 || !ok2 {
			return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("%s: a row without %s or %s", table.Name, table.Key, totesys.LastUpdated))
		}
		fn(id, us)
	}
	if err := rows.Err(); err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read %s: %w", table.Name, err))
	}
	return nil
}

// windowStart is where the table's read starts (exclusive); ok is false
// when every row is read: the first run, or a table that never landed one.
func (r *tableRun) windowStart() (start time.Time, ok bool) {
	if r.prevSnapshot.IsZero() || r.prev == nil || (r.prev.Watermark.IsZero() && len(r.prev.Recent) == 0) {
		return time.Time{}, false
	}
	start = minTime(r.prevSnapshot, r.prev.Watermark).Add(-r.lookback)
	since := r.prev.Since
	if since.IsZero() {
		since = r.prevSnapshot.Add(-r.lookback)
	}
	return maxTime(start, since), true
}

// nextSince is the bound of the next run's window, given the newest
// last_updated landed so far: versions at or below it need not be kept.
func (r *tableRun) nextSince(watermark time.Time) time.Time {
	return minTime(r.snapshotAt, watermark).Add(-r.lookback)
}

// read selects the table's candidate rows and writes the new versions:
// every one (see selection), or, with a limit, the first ones in
// last_updated order up to it. Versions that share a last_updated may then
// be split between this batch and the next: the next run's window starts
// below the newest stamp landed, and skips the versions of it that landed
// (see nextState), so each lands once.
func (r *tableRun) read(ctx context.Context, tx pgx.Tx, b *lake.Bucket, log *slog.Logger) (*tableWriter, error) {
	src, err := describeTable(ctx, tx, r.table, log)
	if err != nil {
		return nil, err
	}
	tw := &tableWriter{table: r.table.Name, columns: src.manifestColumns()}
	count := r.progress.Table(r.table.Name, r.expected(ctx, tx))
	defer count.Done()
	tw.count = count
	sel := r.selection(src)
	tw.landed.floor = r.nextSince(sel.watermark).UnixMicro()
	rows, err := tx.Query(ctx, sel.sql, sel.args...)
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	defer rows.Close()
	return tw, r.stream(ctx, rows, src, sel, tw, b)
}

// selection is the query of a table's candidate rows.
type selection struct {
	sql  string
	args []any
	// seen are the versions in the window that landed already: skipped.
	seen map[version]struct{}
	// watermark is the newest last_updated landed before this run.
	watermark time.Time
}

// selection builds the query of the table's candidate rows: the ids of a
// repair, or those stamped after the window's start (every row the first
// time), in last_updated order when the read is limited.
func (r *tableRun) selection(src *sourceTable) selection {
	sel := selection{
		sql:  "SELECT " + src.selectList() + " FROM " + pgx.Identifier{r.table.Name}.Sanitize(),
		args: []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}},
		seen: map[version]struct{}{},
	}
	if r.only != nil {
		sel.sql += " WHERE " + pgx.Identifier{r.table.Key}.Sanitize() + " = ANY($1)"
		sel.args = append(sel.args, r.only)
		return sel
	}
	if start, ok := r.windowStart(); ok {
		sel.sql += " WHERE " + pgx.Identifier{totesys.LastUpdated}.Sanitize() + " > $1"
		sel.args = append(sel.args, start)
		for _, v := range r.prev.Recent {
			if v[1] > start.UnixMicro() {
				sel.seen[version{int32(v[0]), v[1]}] = struct{}{} // #nosec G115 -- ids are int4
			}
		}
		sel.watermark = r.prev.Watermark
	}
	if r.limit > 0 {
		// One row past the limit, and past the versions that are skipped,
		// tells whether the table has more.
		sel.sql += fmt.Sprintf(" ORDER BY %s LIMIT %d", pgx.Identifier{totesys.LastUpdated}.Sanitize(),
			r.limit+int64(len(sel.seen))+1)
	}
	return sel
}

// stream writes the new versions among rows to the table's object, which
// it creates at the first one: the rows are decoded column by column into
// chunks of values, which a goroutine of their own encodes, compresses and
// writes while the next rows are read; no row is ever assembled.
func (r *tableRun) stream(ctx context.Context, rows pgx.Rows, src *sourceTable, sel selection, tw *tableWriter, b *lake.Bucket) (err error) {
	var cw *chunkWriter
	var ch *chunk
	defer func() {
		if cw != nil {
			_ = cw.close()
		}
	}()
	cols := src.cols
	watermark := sel.watermark
	fromUs, toUs := int64(math.MaxInt64), int64(math.MinInt64)
	for rows.Next() {
		raw := rows.RawValues()
		id, ok1 := int32Of(raw[src.key])
		lu, ok2 := microsOf(raw[src.lastUpdated])
		if !ok1 || !ok2 {
			return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("row without %s or %s", r.table.Key, totesys.LastUpdated))
		}
		v := version{id, lu}
		if _, dup := sel.seen[v]; dup {
			continue
		}
		if r.limit > 0 && tw.rows == r.limit {
			tw.partial = true // a version beyond the limit: the next run's
			break
		}
		if tw.w == nil {
			key := lake.DataKey(r.table.Name, r.now, r.seq, r.runID, "parquet")
			if tw.w, err = lake.NewParquetWriter[any](ctx, b, key, src.schema); err != nil {
				return errkind.Wrap(errkind.BucketWriteFailed, err)
			}
			cw = startChunkWriter(tw.w, len(cols))
			ch = cw.next()
		}
		for i := range cols {
			c := &cols[i]
			val, err := c.decode(raw[i], &ch.arena)
			if err != nil {
				return errkind.Wrap(errkind.SourceSchemaMismatch, err)
			}
			ch.cols[c.leaf] = append(ch.cols[c.leaf], val)
		}
		ch.rows++
		tw.rows++
		if representable(lu) {
			fromUs, toUs = min(fromUs, lu), max(toUs, lu)
			if lu > watermark.UnixMicro() || watermark.IsZero() {
				watermark = time.UnixMicro(lu).UTC()
				tw.landed.raise(r.nextSince(watermark).UnixMicro())
			}
		}
		tw.landed.add(v)
		if ch.rows == chunkRows {
			tw.count.Add(chunkRows)
			sent := cw.send(ch)
			ch = nil // the writer's now
			if !sent {
				break // the writer failed: close says why
			}
			ch = cw.next()
		}
	}
	if err := rows.Err(); err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	if cw != nil {
		if ch != nil && ch.rows > 0 {
			cw.send(ch)
		}
		err, cw = cw.close(), nil
		if err != nil {
			return errkind.Wrap(errkind.BucketWriteFailed, err)
		}
	}
	if fromUs <= toUs {
		tw.watermark = &lake.Range{From: time.UnixMicro(fromUs).UTC(), To: time.UnixMicro(toUs).UTC()}
	}
	return nil
}

// expected is the number of rows a person may expect the read to land,
// for its progress: on a table's first read, PostgreSQL's estimate of its
// rows (within the limit); otherwise unknown (0), as only the changes are
// read.
func (r *tableRun) expected(ctx context.Context, tx pgx.Tx) int64 {
	if r.progress == nil || r.prev != nil || r.only != nil {
		return 0
	}
	var n int64
	if tx.QueryRow(ctx, "SELECT greatest(reltuples, 0)::bigint FROM pg_catalog.pg_class WHERE oid = to_regclass($1)",
		pgx.Identifier{r.table.Name}.Sanitize()).Scan(&n) != nil {
		return 0
	}
	if r.limit > 0 {
		n = min(n, r.limit)
	}
	return n
}

// unread is the state of a table the batch did not read, having reached
// its bound before it: the previous state, with the snapshot it was read in.
func (r *tableRun) unread() *TableState {
	ts := &TableState{}
	if r.prev != nil {
		*ts = *r.prev
	}
	ts.SnapshotAt = r.prevSnapshot
	return ts
}

// batchBudget is what is left of a batch's bound as its tables are read.
type batchBudget struct {
	left    int64
	bounded bool
}

// spent reports whether the batch has reached its bound.
func (b *batchBudget) spent() bool { return b.bounded && b.left <= 0 }

// take counts n versions landed against the bound.
func (b *batchBudget) take(n int64) {
	if b.bounded {
		b.left -= n
	}
}

// nextState is the table's state after the run: its watermark, and the
// landed versions the next window needs to tell apart.
func (r *tableRun) nextState(tw *tableWriter, batch string) *TableState {
	ts := &TableState{}
	start, windowed := r.windowStart()
	if r.prev != nil {
		ts.Watermark, ts.LandedAt, ts.Batch, ts.Skew = r.prev.Watermark, r.prev.LandedAt, r.prev.Batch, r.prev.Skew
	}
	if tw.rows > 0 {
		ts.LandedAt, ts.Batch = r.now.UTC(), batch
		if tw.watermark != nil {
			ts.Watermark = maxTime(ts.Watermark, tw.watermark.To)
			if !tw.partial { // else the newest stamp landed is not the table's newest
				ts.Skew = r.skew(tw.watermark.To)
			}
		}
	}
	if ts.Watermark.IsZero() && tw.rows == 0 && (r.prev == nil || len(r.prev.Recent) == 0) {
		return ts // nothing landed yet: the next run reads every row
	}
	// The versions above the window read now were all seen; those at or
	// below it were not, so Recent covers no lower than the window.
	ts.Since = r.nextSince(ts.Watermark)
	if windowed {
		ts.Since = maxTime(ts.Since, start)
	}
	floor := ts.Since.UnixMicro()
	if r.prev != nil {
		for _, v := range r.prev.Recent {
			if v[1] > floor {
				ts.Recent = append(ts.Recent, v)
			}
		}
	}
	for _, v := range tw.landed.versions {
		if v.us > floor {
			ts.Recent = append(ts.Recent, [2]int64{int64(v.id), v.us})
		}
	}
	return ts
}

// skew is how far newest, the newest last_updated landed, lies ahead of this
// snapshot or behind the previous one, beyond the lookback; zero within it.
func (r *tableRun) skew(newest time.Time) time.Duration {
	if ahead := newest.Sub(r.snapshotAt); ahead > r.lookback {
		return ahead
	}
	if r.prevSnapshot.IsZero() {
		return 0 // a first load says nothing of the clock
	}
	if behind := r.prevSnapshot.Sub(newest); behind > r.lookback {
		return -behind
	}
	return 0
}

// reportSkew warns when the table's timestamps start running ahead of or
// behind the source's clock by more than the lookback, and says when they
// are back within it: once each, not every run.
func (r *tableRun) reportSkew(ts *TableState, log *slog.Logger) {
	var was time.Duration
	if r.prev != nil {
		was = r.prev.Skew
	}
	switch {
	case ts.Skew != 0 && (was == 0 || (was > 0) != (ts.Skew > 0)):
		dir := "behind"
		if ts.Skew > 0 {
			dir = "ahead of"
		}
		log.Warn(fmt.Sprintf("%s.last_updated runs %s %s the source's clock, more than the lookback (%s): "+
			"the window follows the table's own stamps, but rows that commit later than the lookback after their stamp are caught only by sandstone audit",
			r.table.Name, ts.Skew.Abs().Round(time.Second), dir, r.lookback), "table", r.table.Name, "skew_seconds", ts.Skew.Seconds())
	case ts.Skew == 0 && was != 0:
		log.Info(r.table.Name+".last_updated is back within the lookback of the source's clock", "table", r.table.Name)
	}
}

// landedSet collects the versions a table landed whose last_updated lies
// above floor, a bound that only rises: memory holds the versions within the
// lookback of the newest stamp, not the whole table.
type landedSet struct {
	floor    int64
	versions []version
	pruned   int // len(versions) after the last prune
}

func (s *landedSet) add(v version) {
	if v.us > s.floor {
		s.versions = append(s.versions, v)
	}
}

// raise lifts the floor, dropping the versions below it now and then.
func (s *landedSet) raise(floor int64) {
	if floor <= s.floor {
		return
	}
	s.floor = floor
	if len(s.versions) < 2*s.pruned+1024 {
		return
	}
	kept := s.versions[:0]
	for _, v := range s.versions {
		if v.us > floor {
			kept = append(kept, v)
		}
	}
	s.versions = kept
	s.pruned = len(kept)
}

// representable reports whether µs since the epoch is a time that JSON,
// Parquet readers and the warehouse all hold: years 1 to 9999.
func representable(us int64) bool { return us >= minMicros && us <= maxMicros }

var (
	minMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxMicros = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() - 1
)

// LoadState returns the newest batch's sequence and ingest state (zero
// values for an empty bucket).
func LoadState(ctx context.Context, b *lake.Bucket) (int64, State, error) {
	seq, err := b.LatestSeq(ctx)
	if err != nil || seq == 0 {
		return seq, State{Tables: map[string]*TableState{}}, err
	}
	var m lake.Manifest
	if err := b.ReadManifest(ctx, seq, &m); err != nil {
		return 0, State{}, err
	}
	var st State
	if err := b.ReadState(ctx, m.StateKey, &st); err != nil {
		return 0, State{}, err
	}
	if st.Tables == nil {
		st.Tables = map[string]*TableState{}
	}
	return seq, st, nil
}

func putState(ctx context.Context, b *lake.Bucket, key string, st State) error {
	data, err := lake.EncodeState(st)
	if err != nil {
		return err
	}
	return b.Put(ctx, key, data)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
