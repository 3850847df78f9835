package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
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
	// stamp, when set, are the capture columns of every row a reader
	// hands to write: the rows of a slot's snapshot (see captureValues).
	stamp [][]byte
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
	if len(b.manifest.Tables) == 0 && len(b.manifest.Deleted) == 0 && !b.manifest.Capture.Moves() {
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
func (l *landing) level() slog.Level { return logging.Level(l.quiet) }

// write streams a table's rows into its object (see sink). expected is
// the rows a person may expect (0: unknown). The object is left to the
// reader to commit, or abort, with the tableWriter, returned even with an
// error.
func (l *landing) write(ctx context.Context, table totesys.Table, src *sourceTable, rows rowStream, expected int64) (*tableWriter, error) {
	if l.stamp != nil {
		var err error
		if src, err = src.withCapture(table); err != nil {
			return &tableWriter{table: table.Name}, err
		}
	}
	s := l.sink(ctx, table.Name, src, expected)
	var stamped [][]byte // the row and the stamp, one buffer for every row
	for rows.Next() {
		raw := rows.RawValues()
		if l.stamp != nil {
			stamped = append(append(stamped[:0], raw...), l.stamp...)
			raw = stamped
		}
		if err := s.add(raw); err != nil {
			s.close()
			return s.tw, err
		}
	}
	if err := rows.Err(); err != nil {
		s.close()
		return s.tw, errkind.Default(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	return s.tw, s.close()
}

// sink takes one table's rows, one at a time, into its object, which it
// creates at the first row: the rows are decoded column by column into
// chunks of values, which a goroutine of their own encodes, compresses and
// writes while the next rows come; no row is ever assembled.
type sink struct {
	l            *landing
	ctx          context.Context
	src          *sourceTable
	tw           *tableWriter
	count        *progress.Counter
	cw           *chunkWriter
	ch           *chunk
	fromUs, toUs int64
	err          error // the writer's, once failed
}

// sink opens table's sink, whose rows have src's columns.
func (l *landing) sink(ctx context.Context, table string, src *sourceTable, expected int64) *sink {
	return &sink{l: l, ctx: ctx, src: src, tw: &tableWriter{table: table, columns: src.manifestColumns()},
		count: l.progress.Table(table, expected), fromUs: math.MaxInt64, toUs: math.MinInt64}
}

// add decodes one row, each value in PostgreSQL's binary form.
func (s *sink) add(raw [][]byte) error {
	if s.err != nil {
		return s.err
	}
	if s.tw.w == nil {
		key := lake.DataKey(s.tw.table, s.l.now, s.l.seq, s.l.runID, "parquet")
		w, err := lake.NewParquetWriter[any](s.ctx, s.l.bucket, key, s.src.schema)
		if err != nil {
			s.err = errkind.Wrap(errkind.BucketWriteFailed, err)
			return s.err
		}
		s.tw.w = w
		s.cw = startChunkWriter(w, len(s.src.cols))
		s.ch = s.cw.next()
	}
	for i := range s.src.cols {
		c := &s.src.cols[i]
		val, err := c.decode(raw[i], &s.ch.arena)
		if err != nil {
			return errkind.Wrap(errkind.SourceSchemaMismatch, err)
		}
		s.ch.cols[c.leaf] = append(s.ch.cols[c.leaf], val)
	}
	s.ch.rows++
	s.tw.rows++
	if lu, ok := microsOf(raw[s.src.lastUpdated]); ok && representable(lu) {
		s.fromUs, s.toUs = min(s.fromUs, lu), max(s.toUs, lu)
	}
	if s.ch.rows == chunkRows {
		s.count.Add(chunkRows)
		sent := s.cw.send(s.ch)
		s.ch = nil // the writer's now
		if !sent {
			s.err = s.close() // the writer failed: close says why
			return s.err
		}
		s.ch = s.cw.next()
	}
	return nil
}

// close writes what is left of the rows and waits for the writer; the
// object is then the reader's to commit or abort (tw). It may be called
// more than once.
func (s *sink) close() error {
	defer s.count.Done()
	if s.cw != nil {
		if s.ch != nil && s.ch.rows > 0 {
			s.cw.send(s.ch)
		}
		s.ch = nil
		err := s.cw.close()
		s.cw = nil
		if err != nil && s.err == nil {
			s.err = errkind.Wrap(errkind.BucketWriteFailed, err)
		}
	}
	if s.fromUs <= s.toUs {
		s.tw.watermark = &lake.Range{From: time.UnixMicro(s.fromUs).UTC(), To: time.UnixMicro(s.toUs).UTC()}
	}
	return s.err
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
