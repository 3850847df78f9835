// Package ingest is Sandstone's first stage: it reads every source row
// version that is new since the last run from the totesys database and lands
// it in the ingestion bucket, one Parquet object per changed table and a
// manifest written last.
//
// # Exactly once
//
// Each run reads all eleven tables in one read-only REPEATABLE READ
// transaction, so a batch is one consistent snapshot of the source. A run
// reads the rows whose last_updated lies after the previous batch's snapshot
// time minus the lookback (or every row, the first time), and drops those
// already landed: the state of each batch remembers the (id, last_updated)
// of every version it landed within the lookback window. So
//
//   - rows that share a last_updated with rows landed earlier still land,
//     once: they are told apart by id;
//   - a row that commits late (PostgreSQL stamps CURRENT_TIMESTAMP at
//     transaction start) is caught by the next run as long as it commits
//     within the lookback of its timestamp, and is not landed twice;
//   - nothing committed is held back: every visible version lands now.
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
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
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
}

// Result tells what a run landed.
type Result struct {
	// Sequence and Batch name the batch written; 0 and "" when nothing
	// changed or another run committed first.
	Sequence int64
	Batch    string
	RunID    string
	// Rows counts the versions landed per table.
	Rows     map[string]int64
	Bytes    int64
	Duration time.Duration
	// Conflict is set when a concurrent run committed the same batch first;
	// this run then wrote nothing visible.
	Conflict bool
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
	// Recent are the versions landed whose last_updated lies within the
	// lookback of SnapshotAt, as [id, last_updated in µs] pairs.
	Recent [][2]int64 `json:"recent"`
}

type version struct {
	id int32
	us int64
}

// Run lands every source row version that is new since the last run.
func Run(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	res := Result{RunID: newRunID(), Rows: map[string]int64{}}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("stage", "ingest", "run_id", res.RunID)
	if opts.Lookback <= 0 {
		opts.Lookback = config.DefaultLookback
	}
	if opts.SourceURL == "" {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no source URL"))
	}
	if opts.Bucket == nil {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("ingest: no ingestion bucket"))
	}

	prevSeq, prev, err := LoadState(ctx, opts.Bucket)
	if err != nil {
		return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", err))
	}

	conn, err := pgx.Connect(ctx, opts.SourceURL)
	if err != nil {
		return res, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: connect to source: %s", config.Redact(err.Error())))
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return res, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: begin snapshot: %w", err))
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var snapshotAt time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&snapshotAt); err != nil {
		return res, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: snapshot: %w", err))
	}
	snapshotAt = snapshotAt.UTC()

	seq := prevSeq + 1
	next := State{SnapshotAt: snapshotAt, Tables: map[string]*TableState{}}
	cutoff := snapshotAt.Add(-opts.Lookback).UnixMicro()
	var objects []lake.Object
	var newest time.Time
	for _, table := range totesys.Tables {
		tw, err := readTable(ctx, tx, opts.Bucket, table, prev, opts.Lookback, cutoff, start, seq, res.RunID, log)
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
		ts := &TableState{}
		if p := prev.Tables[table.Name]; p != nil {
			ts.Watermark, ts.LandedAt, ts.Batch = p.Watermark, p.LandedAt, p.Batch
			for _, v := range p.Recent {
				if v[1] > cutoff {
					ts.Recent = append(ts.Recent, v)
				}
			}
		}
		if tw.rows > 0 {
			ts.Watermark = maxTime(ts.Watermark, tw.to)
			ts.LandedAt, ts.Batch = start.UTC(), lake.BatchID(seq)
			newest = maxTime(newest, tw.to)
			for _, v := range tw.landed {
				ts.Recent = append(ts.Recent, [2]int64{int64(v.id), v.us})
			}
		}
		next.Tables[table.Name] = ts
	}
	_ = tx.Rollback(ctx)

	if len(objects) == 0 {
		res.Duration = time.Since(start)
		log.Info("ingest found nothing new", "seconds", res.Duration.Seconds())
		return res, nil
	}
	for _, obj := range objects {
		res.Rows[obj.Table] = obj.Rows
		res.Bytes += obj.Bytes
	}

	stateKey := lake.StateKey(seq, res.RunID)
	if err := putState(ctx, opts.Bucket, stateKey, next); err != nil {
		return res, errkind.Wrap(errkind.BucketWriteFailed, fmt.Errorf("ingest: %w", err))
	}
	m := lake.Manifest{
		Version: 1, Stage: "ingest", Batch: lake.BatchID(seq), Sequence: seq, RunID: res.RunID,
		CreatedAt: time.Now().UTC(), SnapshotAt: snapshotAt, SourceNewest: newest,
		Tables: objects, StateKey: stateKey,
	}
	if err := opts.Bucket.PutManifest(ctx, seq, m); err != nil {
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
		"bytes", res.Bytes, "seconds", res.Duration.Seconds())
	return res, nil
}

// tableWriter streams one table's new versions into its object.
type tableWriter struct {
	table    string
	w        *lake.ParquetWriter[any]
	columns  []lake.Column
	rows     int64
	from, to time.Time
	// fromUs and toUs are from and to as µs since the epoch, while reading.
	fromUs, toUs int64
	landed       []version
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
		Watermark: &lake.Range{From: t.from, To: t.to}, Columns: t.columns}, nil
}

// readTable selects table's candidate rows and writes the new versions.
func readTable(ctx context.Context, tx pgx.Tx, b *lake.Bucket, table totesys.Table, prev State,
	lookback time.Duration, cutoff int64, now time.Time, seq int64, runID string, log *slog.Logger) (*tableWriter, error) {
	cols, err := describe(ctx, tx, table.Name)
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("describe: %w", err))
	}
	if len(cols) == 0 {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("table %s not found in the source", table.Name))
	}
	keyIdx, luIdx := -1, -1
	group := orderedGroup{Group: parquet.Group{}}
	for i, c := range cols {
		if !slices.Contains(table.Columns, c.Name) {
			log.Warn("source has a column the pipeline does not know; it is carried along", "table", table.Name, "column", c.Name)
		}
		switch c.Name {
		case table.Key:
			keyIdx = i
		case totesys.LastUpdated:
			luIdx = i
		}
		group.Group[c.Name] = c.node()
		group.names = append(group.names, c.Name)
	}
	for _, name := range table.Columns {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.Name == name }) {
			return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("column %s.%s not found in the source", table.Name, name))
		}
	}
	if cols[keyIdx].kind != kInt32 || cols[luIdx].kind != kTimestamp {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("table %s: %s must be an integer and %s a timestamp", table.Name, table.Key, totesys.LastUpdated))
	}
	schema := parquet.NewSchema(table.Name, group)
	tw := &tableWriter{table: table.Name}
	exprs := make([]string, len(cols))
	for i := range cols {
		leaf, _ := schema.Lookup(cols[i].Name)
		cols[i].leaf = leaf.ColumnIndex
		exprs[i] = cols[i].selectExpr()
		tw.columns = append(tw.columns, lake.Column{Name: cols[i].Name, Type: cols[i].typeName()})
	}

	sql := "SELECT " + strings.Join(exprs, ", ") + " FROM " + pgx.Identifier{table.Name}.Sanitize()
	args := []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}
	seen := map[version]struct{}{}
	if ps := prev.Tables[table.Name]; !prev.SnapshotAt.IsZero() {
		sql += " WHERE " + pgx.Identifier{totesys.LastUpdated}.Sanitize() + " > $1"
		args = append(args, prev.SnapshotAt.Add(-lookback).UTC())
		if ps != nil {
			for _, v := range ps.Recent {
				seen[version{int32(v[0]), v[1]}] = struct{}{} // #nosec G115 -- ids are int4
			}
		}
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	defer rows.Close()
	// The rows are decoded column by column into chunks of values, which a
	// goroutine of their own encodes, compresses and writes while the next
	// rows are read: no row is ever assembled.
	var cw *chunkWriter
	var ch *chunk
	defer func() {
		if cw != nil {
			_ = cw.close()
		}
	}()
	for rows.Next() {
		raw := rows.RawValues()
		id, ok1 := int32Of(raw[keyIdx])
		lu, ok2 := microsOf(raw[luIdx])
		if !ok1 || !ok2 {
			return tw, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("row without %s or %s", table.Key, totesys.LastUpdated))
		}
		v := version{id, lu}
		if len(seen) > 0 {
			if _, dup := seen[v]; dup {
				continue
			}
		}
		if tw.w == nil {
			key := lake.DataKey(table.Name, now, seq, runID, "parquet")
			if tw.w, err = lake.NewParquetWriter[any](ctx, b, key, schema); err != nil {
				return tw, errkind.Wrap(errkind.BucketWriteFailed, err)
			}
			cw = startChunkWriter(tw.w, len(cols))
			ch = cw.next()
			tw.fromUs, tw.toUs = lu, lu
		}
		for i := range cols {
			c := &cols[i]
			val, err := c.decode(raw[i], &ch.arena)
			if err != nil {
				return tw, errkind.Wrap(errkind.SourceSchemaMismatch, err)
			}
			ch.cols[c.leaf] = append(ch.cols[c.leaf], val)
		}
		ch.rows++
		tw.rows++
		tw.fromUs, tw.toUs = min(tw.fromUs, lu), max(tw.toUs, lu)
		if lu > cutoff {
			tw.landed = append(tw.landed, v)
		}
		if ch.rows == chunkRows {
			sent := cw.send(ch)
			ch = nil // the writer's now
			if !sent {
				break // the writer failed: close says why
			}
			ch = cw.next()
		}
	}
	if err := rows.Err(); err != nil {
		return tw, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	if cw != nil {
		if ch != nil && ch.rows > 0 {
			cw.send(ch)
		}
		err, cw = cw.close(), nil
		if err != nil {
			return tw, errkind.Wrap(errkind.BucketWriteFailed, err)
		}
	}
	tw.from, tw.to = time.UnixMicro(tw.fromUs).UTC(), time.UnixMicro(tw.toUs).UTC()
	return tw, nil
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
	data, err := b.Get(ctx, m.StateKey)
	if err != nil {
		return 0, State{}, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, State{}, fmt.Errorf("state %s: %w", m.StateKey, err)
	}
	var st State
	if err := json.NewDecoder(zr).Decode(&st); err != nil {
		return 0, State{}, fmt.Errorf("state %s: %w", m.StateKey, err)
	}
	if st.Tables == nil {
		st.Tables = map[string]*TableState{}
	}
	return seq, st, nil
}

func putState(ctx context.Context, b *lake.Bucket, key string, st State) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(st); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return b.Put(ctx, key, buf.Bytes())
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
