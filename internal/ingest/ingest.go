// Package ingest is Sandstone's first stage: it reads every source row
// version that is new since the last run from the totesys database and lands
// it in the ingestion bucket, one Parquet object per changed table and a
// manifest written last.
//
// # Exactly once
//
// Each run reads all eleven tables in one read-only REPEATABLE READ
// snapshot, so a batch is one consistent snapshot of the source, even when
// it is read over several connections (see readAhead). The sessions' time
// zone is UTC, so timestamptz columns read as UTC.
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
// holds one table's buffers at a time whatever the size of the source (a
// caught-up run, reading ahead, a few tables' at once).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// More is set when the batch stopped at its bound with versions still
	// to land.
	More bool `json:"more,omitempty"`
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
	// as [id, last_updated in µs] pairs (packed in the JSON: see Versions).
	Recent Versions `json:"recent"`
	// Skew is how far the table's newest last_updated ran ahead of
	// (positive) or behind (negative) the source's clock beyond the
	// lookback when rows last landed; zero when within it.
	Skew time.Duration `json:"skew_ns,omitempty"`
	// SnapshotAt, when set, is the source's clock at the snapshot the
	// table was last read in, older than the state's: a batch that
	// reached its bound before the table kept the table's state as it was.
	// Zero means the state's SnapshotAt.
	SnapshotAt time.Time `json:"snapshot_at,omitzero"`
	// Unindexed, when set, is the table's size (the planner's estimate):
	// it has no index on last_updated, so every run reads all of it.
	Unindexed int64 `json:"unindexed_rows,omitempty"`
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
	whole := unindexed(ctx, tx, log)
	runs := make([]*tableRun, len(totesys.Tables))
	for i, table := range totesys.Tables {
		runs[i] = &tableRun{table: table, prev: prev.Tables[table.Name], prevSnapshot: prev.snapshotOf(table.Name),
			snapshotAt: snapshotAt, lookback: opts.Lookback, now: start, seq: seq, runID: res.RunID, limit: budget.left,
			progress: opts.Progress}
	}
	var ahead []landing
	if prevSeq > 0 && !prev.More && whole != nil && len(whole) == 0 {
		// Caught up, every big table indexed: see readAhead.
		if ahead, err = readAhead(ctx, tx, opts.SourceURL, runs, budget, opts.Bucket, log); err != nil {
			return res, err
		}
	}
	var advise []string // tables newly read whole
	for i, r := range runs {
		var l landing
		if i < len(ahead) && ahead[i].tw != nil {
			if ahead[i].stands(budget) {
				l = ahead[i]
			} else {
				// Read whole ahead, it is more than the bound has left:
				// the next batch's, as is every table after it.
				budget.left = 0
			}
		}
		r.limit = budget.left
		if budget.spent() {
			// Not read in this snapshot: its state stays as it was, with
			// the snapshot it was read in.
			next.Tables[r.table.Name] = r.unread()
			res.Skew[r.table.Name] = next.Tables[r.table.Name].Skew
			res.More = true
			continue
		}
		if l.tw == nil {
			if l, err = r.land(ctx, tx, opts.Bucket, log); err != nil {
				return res, err
			}
		}
		tw := l.tw
		if tw.rows > 0 {
			objects = append(objects, l.obj)
		}
		ts := r.nextState(tw, lake.BatchID(seq))
		r.reportSkew(ts, log)
		if r.adviseIndex(ts, whole) {
			advise = append(advise, r.table.Name)
		}
		res.Skew[r.table.Name] = ts.Skew
		if tw.rows > 0 && tw.watermark != nil {
			newest = maxTime(newest, tw.watermark.To)
		}
		next.Tables[r.table.Name] = ts
		budget.take(tw.rows)
		res.More = res.More || tw.partial
	}
	next.More = res.More
	closeSource()

	if len(objects) == 0 {
		res.Duration = time.Since(start)
		log.Info("ingest found nothing new", "seconds", res.Duration.Seconds())
		return res, nil
	}
	m := lake.Manifest{SnapshotAt: snapshotAt, SourceNewest: newest, Tables: objects}
	res.SourceNewest = newest
	res, err = commit(ctx, opts.Bucket, seq, m, next, res, start, log)
	if err == nil && !res.Conflict {
		adviseIndexes(log, advise, next)
	}
	return res, err
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
	if tx, close, err = openTx(ctx, url, ""); err != nil {
		return nil, at, nil, err
	}
	if err = tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		close()
		return nil, at, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: begin snapshot: %w", err))
	}
	return tx, at.UTC(), close, nil
}

// openTx connects to the source in UTC and begins a read-only REPEATABLE
// READ transaction: in the snapshot another one exported, when snapshot
// names it. close ends both and may be called more than once.
func openTx(ctx context.Context, url, snapshot string) (tx pgx.Tx, close func(), err error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingest: source URL: %s", config.Redact(err.Error())))
	}
	// timestamptz columns are then read, and now() is taken, in UTC.
	cfg.RuntimeParams["timezone"] = "UTC"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: connect to source: %s", config.Redact(config.ConnectHint(cfg, err).Error())))
	}
	tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil && snapshot != "" {
		// The simple protocol has the driver quote the name as a literal.
		_, err = tx.Exec(ctx, "SET TRANSACTION SNAPSHOT $1", pgx.QueryExecModeSimpleProtocol, snapshot)
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
		return nil, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: begin snapshot: %w", err))
	}
	return tx, close, nil
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
