package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// A reader reads one batch of new versions from the source and hands each
// table's rows to the landing: the poll of every table's last_updated
// window (poll.go) for Run, the ids an audit found for LandRepair; a
// log-based capture would be another.
type reader interface {
	// read lands the batch's tables through l, in order (referenced before
	// referencing), and returns what it read.
	read(ctx context.Context, l *landing) (batchRead, error)
}

// batchRead is what a reader read for a batch.
type batchRead struct {
	// manifest lists the tables landed, with what the reader knows of the
	// batch (its snapshot, its newest stamp, a repair's tombstones); the
	// landing fills in the rest as it commits.
	manifest lake.Manifest
	// state is what the next batch resumes from.
	state State
	// skew, more and advise are the poll's: see Result.Skew, Result.More
	// and adviseIndexes.
	skew   map[string]time.Duration
	more   bool
	advise []string
}

// rowStream is one table's new versions as a reader hands them to the
// landing: rows of the columns of a sourceTable, in its order, each value
// in PostgreSQL's binary form (what a query of its select list returns,
// and what logical replication sends in binary mode). Err tells why Next
// stopped early.
type rowStream interface {
	Next() bool
	RawValues() [][]byte
	Err() error
}

// landing writes one batch to the ingestion bucket: each table's rows as
// one Parquet object, then the state and the manifest (lake.Commit).
type landing struct {
	bucket *lake.Bucket
	seq    int64
	runID  string
	// now is when the run started: it names the objects (lake.DataKey)
	// and times the run.
	now      time.Time
	log      *slog.Logger
	progress *progress.Meter // told the rows as they land (nil: none)
	quiet    bool            // the landed line at Debug (Options.Quiet)
}

// land has r read a batch and commits what it read; a batch with no rows
// and no tombstones commits nothing.
func (l *landing) land(ctx context.Context, r reader, res Result) (Result, error) {
	b, err := r.read(ctx, l)
	if b.skew != nil {
		res.Skew = b.skew
	}
	res.More = b.more
	if err != nil {
		return res, err
	}
	if len(b.manifest.Tables) == 0 && len(b.manifest.Deleted) == 0 {
		res.Duration = time.Since(l.now)
		l.log.Log(ctx, l.level(), "ingest found nothing new", "seconds", res.Duration.Seconds())
		return res, nil
	}
	res.SourceNewest = b.manifest.SourceNewest
	res, err = l.commit(ctx, b.manifest, b.state, res)
	if err == nil && !res.Conflict {
		adviseIndexes(l.log, b.advise, b.state)
	}
	return res, err
}

// commit saves the batch's state and creates its manifest, last. A
// manifest created first by another run leaves this run's objects
// unreferenced, and the result says so (Conflict).
func (l *landing) commit(ctx context.Context, m lake.Manifest, next State, res Result) (Result, error) {
	for _, obj := range m.Tables {
		res.Rows[obj.Table] = obj.Rows
		res.Bytes += obj.Bytes
	}
	m.Version, m.Stage, m.Batch, m.Sequence, m.RunID = 1, "ingest", lake.BatchID(l.seq), l.seq, l.runID
	committed, err := l.bucket.Commit(ctx, &m, next)
	res.Duration = time.Since(l.now)
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	if !committed {
		res.Conflict = true
		res.Rows = map[string]int64{}
		l.log.Warn("another ingest run committed this batch first; this run's objects stay unreferenced",
			"batch", m.Batch)
		return res, nil
	}
	res.Sequence, res.Batch = l.seq, m.Batch
	l.log.Log(ctx, l.level(), "ingest landed batch", "batch", res.Batch, "rows", res.Total(), "tables", res.Rows,
		"bytes", res.Bytes, "repair", m.Repair, "seconds", res.Duration.Seconds())
	return res, nil
}

// level is the level of the run's result lines: Debug when quiet.
func (l *landing) level() slog.Level {
	if l.quiet {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// write streams a table's rows into its object, which it creates at the
// first row: the rows are decoded column by column into chunks of values,
// which a goroutine of their own encodes, compresses and writes while the
// next rows are read; no row is ever assembled. expected is the rows a
// person may expect (0: unknown). The object is left to the reader to
// commit, or abort, with the tableWriter, returned even with an error.
func (l *landing) write(ctx context.Context, table string, src *sourceTable, rows rowStream, expected int64) (tw *tableWriter, err error) {
	tw = &tableWriter{table: table, columns: src.manifestColumns()}
	count := l.progress.Table(table, expected)
	defer count.Done()
	var cw *chunkWriter
	var ch *chunk
	defer func() {
		if cw != nil {
			_ = cw.close()
		}
	}()
	fromUs, toUs := int64(math.MaxInt64), int64(math.MinInt64)
	for rows.Next() {
		raw := rows.RawValues()
		if tw.w == nil {
			key := lake.DataKey(table, l.now, l.seq, l.runID, "parquet")
			if tw.w, err = lake.NewParquetWriter[any](ctx, l.bucket, key, src.schema); err != nil {
				return tw, errkind.Wrap(errkind.BucketWriteFailed, err)
			}
			cw = startChunkWriter(tw.w, len(src.cols))
			ch = cw.next()
		}
		for i := range src.cols {
			c := &src.cols[i]
			val, err := c.decode(raw[i], &ch.arena)
			if err != nil {
				return tw, errkind.Wrap(errkind.SourceSchemaMismatch, err)
			}
			ch.cols[c.leaf] = append(ch.cols[c.leaf], val)
		}
		ch.rows++
		tw.rows++
		if lu, ok := microsOf(raw[src.lastUpdated]); ok && representable(lu) {
			fromUs, toUs = min(fromUs, lu), max(toUs, lu)
		}
		if ch.rows == chunkRows {
			count.Add(chunkRows)
			sent := cw.send(ch)
			ch = nil // the writer's now
			if !sent {
				break // the writer failed: close says why
			}
			ch = cw.next()
		}
	}
	if err := rows.Err(); err != nil {
		return tw, errkind.Default(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
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
	if fromUs <= toUs {
		tw.watermark = &lake.Range{From: time.UnixMicro(fromUs).UTC(), To: time.UnixMicro(toUs).UTC()}
	}
	return tw, nil
}

// tableWriter is one table's object as the landing writes it.
type tableWriter struct {
	table   string
	w       *lake.ParquetWriter[any] // nil until the first row, and once closed
	columns []lake.Column
	rows    int64
	// watermark is the range of the rows' last_updated that a time can
	// hold (years 1 to 9999); nil when the table landed none such.
	watermark *lake.Range
}

func (t *tableWriter) abort() {
	if t.w != nil {
		t.w.Abort()
		t.w = nil
	}
}

// commit finishes the object, which holds rows, and describes it for the
// manifest.
func (t *tableWriter) commit() (lake.Object, error) {
	key := t.w.Key()
	size, sum, err := t.w.Close()
	t.w = nil // nothing left to abort; the encoder can go
	if err != nil {
		return lake.Object{}, errkind.Wrap(errkind.BucketWriteFailed, err)
	}
	return lake.Object{Table: t.table, Key: key, Rows: t.rows, Bytes: size, SHA256: sum,
		Watermark: t.watermark, Columns: t.columns}, nil
}
