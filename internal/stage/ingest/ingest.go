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
// # Log-based capture
//
// With Options.Capture set to config.CaptureWAL, a run reads a logical
// replication slot instead (capture.go): the first creates the slot and
// lands, from the snapshot it exports, what the poll would land (all
// of it, the first time); later runs land the whole transactions committed
// since the lake's last batch (stream.go), each version with its
// operation, commit LSN and commit time, deletes as tombstones, and
// confirm the slot once the batch's manifest is written. docs/design.md
// gives the argument that each version lands once.
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
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
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
	// Quiet logs each landed batch at Debug: for a terminal, where the
	// caller prints the result and an INFO line would say it twice.
	Quiet bool
	// MaxBatchRows bounds the rows the batch lands, over all its tables
	// (config.DefaultMaxBatchRows is the CLI's and the Lambda's); zero
	// means no bound. What does not fit is left, in last_updated order,
	// to the next run, and Result.More says so.
	MaxBatchRows int64
	// ScanAdviceRows is the size from which a table every run reads whole
	// is worth an index on last_updated, and said so; 100,000 when zero.
	ScanAdviceRows int64
	// Capture is how the source is read: config.CapturePoll (by
	// last_updated; the default when empty) or config.CaptureWAL (from
	// the write-ahead log, through a logical replication slot).
	Capture string
	// Slot is wal capture's replication slot;
	// config.DefaultSlot(SourceURL) when empty.
	Slot string
	// Publication is the publication wal capture reads;
	// config.DefaultPublication when empty.
	Publication string
	// Resnapshot has wal capture start again from a new slot and its
	// snapshot, as after a gap (errkind.CaptureGap): it lands what changed
	// since the lake's last batch, as the poll would.
	Resnapshot bool
	// Deadline and Stop end wal capture's landing of a slot's snapshot
	// between two of its batches (lake.Fits, lake.Stopped), with More set:
	// the next run goes on from a new slot. Zero and nil never do.
	Deadline time.Time
	Stop     <-chan struct{}

	// afterLand, when set, runs once a streamed batch's manifest is
	// committed and before the slot is confirmed; an error stops the run
	// there, unconfirmed (tests of a crash at that point).
	afterLand func() error
	// quietBytes is the WAL a run that lands no change lets the slot hold
	// back before it lands an empty batch (see quietBytes); the constant
	// when zero. Tests on a server that other tests write to raise it.
	quietBytes int64
}

// check fills in the defaults and refuses options that cannot work.
func (o Options) check() (Options, error) {
	if o.RunID == "" {
		o.RunID = lake.NewRunID()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Lookback == 0 {
		o.Lookback = config.DefaultLookback
	}
	o.quietBytes = cmp.Or(o.quietBytes, quietBytes)
	o.Capture = cmp.Or(o.Capture, config.DefaultCapture)
	o.Slot = cmp.Or(o.Slot, config.DefaultSlot(o.SourceURL))
	o.Publication = cmp.Or(o.Publication, config.DefaultPublication)
	for _, c := range []struct {
		name, value string
		check       func(string) error
	}{{"capture", o.Capture, config.CheckCapture}, {"slot", o.Slot, config.CheckSlot}, {"publication", o.Publication, config.CheckPublication}} {
		if err := c.check(c.value); err != nil {
			return o, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingest: %s %q: %w", c.name, c.value, err))
		}
	}
	switch {
	case o.Lookback < 0:
		return o, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("ingest: lookback %s: want a positive duration such as 10m", o.Lookback))
	case o.SourceURL == "":
		return o, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no source URL"))
	case o.Bucket == nil:
		return o, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no ingestion bucket"))
	}
	return o, nil
}

func (o Options) scanAdviceRows() int64 {
	if o.ScanAdviceRows > 0 {
		return o.ScanAdviceRows
	}
	return scanAdviceRows
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
	// Tombstones counts, per table, the tombstones a repair landed (what
	// the audit found deleted less what the batches since recorded).
	Tombstones map[string]int
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
	// Gone are, per table, the ids the lake records as deleted (the
	// tombstones of earlier batches) that have not come back: capture
	// tells load when one does (Manifest.Revived).
	Gone map[string][]int32 `json:"gone,omitempty"`
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
	// Spilled are ranges of capture batches whose versions stamped after
	// Since are not in Recent, but in the lake (see spill): wal capture
	// keeps none, so that its memory and its state stay small whatever a
	// transaction changes. A poll that takes over reads them back.
	Spilled []Spill `json:"spilled,omitempty"`
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

// Spill is a range of batches, From to To, of which the table's versions
// stamped after its state's Since are not in Recent; none is stamped after
// Newest.
type Spill struct {
	From   int64     `json:"from"`
	To     int64     `json:"to"`
	Newest time.Time `json:"newest"`
}

// snapshotOf is the source's clock at the snapshot table was last read in.
func (s State) snapshotOf(table string) time.Time {
	if ts := s.Tables[table]; ts != nil && !ts.SnapshotAt.IsZero() {
		return ts.SnapshotAt
	}
	return s.SnapshotAt
}

// version is one landed version of a row: its key and its last_updated,
// in µs.
type version struct {
	id int32
	us int64
}

// Run lands every source row version that is new since the last run: the
// poll reads them (poll.go) and the landing writes the batch (landing.go).
func Run(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	opts, err := opts.check()
	res := Result{RunID: opts.RunID, Rows: map[string]int64{}, Skew: map[string]time.Duration{}}
	if err != nil {
		return res, err
	}
	log := opts.Logger.With("stage", "ingest", "run_id", res.RunID)
	if opts.Capture == config.CaptureWAL {
		return runCapture(ctx, opts, log, res)
	}
	prevSeq, prev, err := LoadState(ctx, opts.Bucket)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", err))
	}
	if last, err := lastRead(ctx, opts.Bucket, prevSeq); err == nil && last != nil && last.Capture != nil {
		log.Warn("the poll takes over from log-based capture, from the lake's state; the replication slot still holds WAL back on the source until it is dropped",
			"slot", last.Capture.Slot, "drop", "SELECT pg_drop_replication_slot("+quoteLiteral(last.Capture.Slot)+")")
	}
	p, err := openPoll(ctx, opts, prevSeq, prev, log)
	if err != nil {
		return res, err
	}
	defer p.close()
	l := &landing{bucket: opts.Bucket, seq: prevSeq + 1, runID: res.RunID, now: start, log: log, progress: opts.Progress, quiet: opts.Quiet}
	return l.land(ctx, p, res)
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
		return nil, at, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("begin snapshot: %w", err))
	}
	return tx, at.UTC(), close, nil
}

// connectSource connects to the source at url in UTC: timestamptz columns
// are then read, and now() is taken, in UTC.
func connectSource(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("source URL: %s", config.Redact(err.Error())))
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, config.ConnectFailure(config.Source, url, cfg, err)
	}
	return conn, nil
}

// openTx connects to the source in UTC and begins a read-only REPEATABLE
// READ transaction: in the snapshot another one exported, when snapshot
// names it. close ends both and may be called more than once.
func openTx(ctx context.Context, url, snapshot string) (tx pgx.Tx, close func(), err error) {
	conn, err := connectSource(ctx, url)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("begin snapshot: %w", err))
	}
	return tx, close, nil
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
	return readVersions(ctx, tx, table, key+" >= $1::int8 AND "+key+" < $2::int8", fn, from, to)
}

// readVersions streams the (key, last_updated in µs) of the rows of table
// in tx that where (an SQL condition on args) selects to fn, in no order.
func readVersions(ctx context.Context, tx pgx.Tx, table totesys.Table, where string, fn func(id int32, us int64), args ...any) error {
	sql := "SELECT " + pgx.Identifier{table.Key}.Sanitize() + "::int4, " + pgx.Identifier{totesys.LastUpdated}.Sanitize() +
		"::timestamp FROM " + pgx.Identifier{table.Name}.Sanitize() + " WHERE " + where
	rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}, args...)...)
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

// gone is the ids recorded as deleted, was, with the tombstones deleted
// added.
func gone(was, deleted map[string][]int32) map[string][]int32 {
	out := map[string][]int32{}
	for t, ids := range was {
		out[t] = slices.Clone(ids)
	}
	for t, ids := range deleted {
		out[t] = slices.Compact(slices.Sorted(slices.Values(append(out[t], ids...))))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
