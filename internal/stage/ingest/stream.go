package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// idle is how long the stream waits for a message before it asks the
// server where it stands (a keepalive), which tells it when it has read
// past the run's bound.
const idle = 50 * time.Millisecond

// statusEvery is how often a stream that is busy tells the server it is
// alive, well within wal_sender_timeout (a minute by default), which
// drops a consumer that stays silent while it writes a long batch.
const statusEvery = 10 * time.Second

// quietBytes is how much WAL a run that lands no change lets the slot
// hold back before it lands an empty batch, to confirm the slot past WAL
// that other tables (or databases) wrote: a quiet publication would
// otherwise pin the source's disk.
const quietBytes = 8 << 20

// stream is capture's reader of the slot: it lands, as one batch, the whole
// transactions committed after the lake's end (capture.Start) and before
// the WAL position the run started at (bound), or up to the batch's bound
// in rows (a transaction is never split: the batch ends after the one
// that reaches it, however large).
type stream struct {
	conn    *pgconn.PgConn // replication connection, streaming
	cat     querier        // the source's catalogue
	bucket  *lake.Bucket   // the lake, for unchanged TOASTed values
	prevSeq int64
	prev    State
	capture lake.Capture // the batch's, as far as known at the start
	bound   lake.LSN
	boundAt time.Time // the source's clock at bound
	// cut, when set, ends the batch before the transaction that commits
	// there (see errCut).
	cut      lake.LSN
	maxRows  int64
	quietMax int64 // Options.quietBytes
	// restart is the slot's restart_lsn at the bound (0: unknown), and
	// release lets an empty batch land (see emptyBatch).
	restart  lake.LSN
	release  bool
	lookback time.Duration
	log      *slog.Logger
	types    *pgtype.Map

	rels   map[uint32]*relation
	tables map[string]*streamTable
	tx     struct {
		active, skip bool
		final        lake.LSN
		commit       time.Time
		stamp        [][]byte // a change's capture columns (see change)
	}
	rows, txns int64
	last       struct { // the last transaction landed
		end    lake.LSN
		commit time.Time
	}
	more bool
	end  lake.LSN // where the batch landed ends (Capture.End)
	// quiet is where the server stood, between transactions, when the
	// batch was whole: nothing before it is left unread.
	quiet lake.LSN
	// told is when the server last heard from the stream.
	told time.Time
	// readBy is the replication connection's read deadline (see next).
	readBy  time.Time
	decoder changeDecoder
	raw     [][]byte // a change's values, reused
}

// streamTable is one table's part of the batch.
type streamTable struct {
	rel  *relation // the layout of sink's rows
	sink *sink
	// newest is the newest last_updated landed, in µs: the batch's
	// versions are spilled (see TableState.Spilled).
	newest int64
	// final holds, for each id deleted in the batch or before it
	// (State.Gone), whether its last operation in the batch is a delete.
	final map[int32]bool
}

// errCut asks for the batch to be read again, ending before the
// transaction that commits at at: a table changed its columns, or an
// update left a TOASTed value out that only the batch's own rows hold.
type errCut struct{ at lake.LSN }

func (e errCut) Error() string { return fmt.Sprintf("batch cut before %s", e.at) }

// read lands the batch through l.
func (s *stream) read(ctx context.Context, l *landing) (b batchRead, err error) {
	s.tables, s.types = map[string]*streamTable{}, pgtype.NewMap()
	s.rows, s.txns, s.more, s.end, s.quiet, s.told = 0, 0, false, 0, 0, time.Now()
	s.tx.active, s.tx.skip, s.last.end = false, false, 0
	defer func() {
		// Other reads on the connection wait as their contexts say.
		s.readBy = time.Time{}
		if derr := s.conn.Conn().SetReadDeadline(s.readBy); err == nil && derr != nil {
			err = errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("slot %s: %w", s.capture.Slot, derr))
		}
		if err != nil {
			for _, t := range s.tables {
				if t.sink != nil { // nil for a table of deletes only
					t.sink.close()
					t.sink.tw.abort()
				}
			}
		}
	}()
	// Asked at once where it stands, the server says so as soon as it has
	// read to the bound, when nothing of ours lies before it.
	if err = s.status(ctx, true); err != nil {
		return b, err
	}
	for done := false; !done; {
		if done, err = s.receive(ctx, l); err != nil {
			return b, err
		}
	}
	return s.finish(l)
}

// receive takes one message, and reports when the batch is whole.
func (s *stream) receive(ctx context.Context, l *landing) (bool, error) {
	if time.Since(s.told) >= statusEvery {
		if err := s.status(ctx, false); err != nil {
			return false, err
		}
	}
	msg, err := s.next()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	switch {
	case pgconn.Timeout(err):
		return false, s.status(ctx, true)
	case err != nil:
		return false, errkind.Default(errkind.SourceUnreachable, fmt.Errorf("receive from slot %s: %w", s.capture.Slot, err))
	}
	switch msg := msg.(type) {
	case *pgproto3.ErrorResponse:
		return false, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("slot %s: %w", s.capture.Slot, pgconn.ErrorResponseToPgError(msg)))
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return false, nil
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return false, errkind.Wrap(errkind.SourceUnreachable, err)
			}
			if !s.tx.active && lake.LSN(k.ServerWALEnd) >= s.bound {
				s.quiet = lake.LSN(k.ServerWALEnd)
				return true, nil
			}
			if k.ReplyRequested {
				return false, s.status(ctx, false)
			}
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return false, errkind.Wrap(errkind.SourceUnreachable, err)
			}
			return s.message(ctx, l, x.WALData)
		}
	}
	return false, nil
}

// next reads the next message, waiting at most about idle for it. A
// context per message, watched by pgconn, costs more than the decoding of
// a small change: the wait is the connection's read deadline instead, set
// anew once half of it has passed, and the run's context is looked at
// between messages (within idle of its end).
func (s *stream) next() (pgproto3.BackendMessage, error) {
	if now := time.Now(); now.Add(idle / 2).After(s.readBy) {
		s.readBy = now.Add(idle)
		if err := s.conn.Conn().SetReadDeadline(s.readBy); err != nil {
			return nil, err
		}
	}
	return s.conn.ReceiveMessage(context.Background())
}

// status tells the server that the slot may be confirmed up to where the
// lake's last batch ends, never further (what this batch read is not
// durable yet); ask has it answer at once with where it stands.
func (s *stream) status(ctx context.Context, ask bool) error {
	s.told = time.Now()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(s.capture.Start), ReplyRequested: ask})
	if err != nil {
		return errkind.Default(errkind.SourceUnreachable, fmt.Errorf("slot %s: status: %w", s.capture.Slot, err))
	}
	return nil
}

// message takes one pgoutput message, and reports when the batch is whole.
func (s *stream) message(ctx context.Context, l *landing, data []byte) (bool, error) {
	if len(data) > 0 && (data[0] == byte(pglogrepl.MessageTypeInsert) || data[0] == byte(pglogrepl.MessageTypeUpdate)) {
		relID, tuple, old, err := s.decoder.decode(data)
		if err != nil {
			return false, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("slot %s: decode: %w", s.capture.Slot, err))
		}
		op := lake.OpUpdate
		if data[0] == byte(pglogrepl.MessageTypeInsert) {
			op = lake.OpInsert
		}
		return false, s.change(ctx, l, relID, op, tuple, old)
	}
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return false, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("slot %s: decode: %w", s.capture.Slot, err))
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		return false, s.relation(ctx, m)
	case *pglogrepl.BeginMessage:
		final := lake.LSN(m.FinalLSN)
		if s.cut != 0 && final >= s.cut {
			s.more = true
			return true, nil
		}
		s.tx.active, s.tx.skip, s.tx.final, s.tx.commit = true, final < s.capture.Start, final, m.CommitTime.UTC()
		s.tx.stamp = nil // built by the transaction's first change
	case *pglogrepl.CommitMessage:
		if !s.tx.skip {
			s.last.end, s.last.commit = lake.LSN(m.TransactionEndLSN), m.CommitTime.UTC()
			s.txns++
		}
		s.tx.active = false
		if s.maxRows > 0 && s.rows >= s.maxRows {
			s.more = true
			return true, nil
		}
	case *pglogrepl.DeleteMessage:
		return false, s.delete(m)
	case *pglogrepl.TruncateMessage:
		if !s.tx.skip {
			return false, errkind.Wrap(errkind.CaptureGap, fmt.Errorf("a TRUNCATE committed at %s emptied published tables, and capture cannot tell which rows went: "+
				"land the source again (sandstone ingest --capture wal --resnapshot), then record what went (sandstone audit --repair)", s.tx.final))
		}
	}
	return false, nil
}

// relation records a table's layout. A table whose columns changed while
// the batch holds rows of it ends the batch before this transaction: a
// batch holds one layout of each table.
func (s *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	r, err := newRelation(ctx, s.cat, m, s.log)
	if err != nil {
		return err
	}
	s.rels[m.RelationID] = r
	t := s.tables[r.table.Name]
	if t == nil || t.sink == nil {
		return nil
	}
	if !t.rel.sameColumns(r) {
		s.log.Info("a table's columns changed: the batch ends before the change", "table", r.table.Name, "lsn", s.tx.final.String())
		return s.cutHere(r.table.Name + " changed its columns")
	}
	return nil
}

// cutHere ends the batch before the current transaction, or fails when it
// is the batch's first.
func (s *stream) cutHere(why string) error {
	if s.txns == 0 {
		return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("%s inside the transaction committed at %s, which holds rows of both kinds: "+
			"a batch cannot hold them (set REPLICA IDENTITY FULL on the table for unchanged values)", why, s.tx.final))
	}
	return errCut{at: s.tx.final}
}

// table returns the batch's part for the relation's table.
func (s *stream) table(r *relation) *streamTable {
	t := s.tables[r.table.Name]
	if t == nil {
		t = &streamTable{rel: r, final: map[int32]bool{}}
		for _, id := range s.prev.Gone[r.table.Name] {
			t.final[id] = true
		}
		s.tables[r.table.Name] = t
	}
	return t
}

// change lands one inserted or updated version.
func (s *stream) change(ctx context.Context, l *landing, relID uint32, op string, tuple, old *pglogrepl.TupleData) error {
	if s.tx.skip {
		return nil
	}
	r := s.rels[relID]
	if r == nil || tuple == nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("slot %s: a change of relation %d before its description", s.capture.Slot, relID))
	}
	t := s.table(r)
	raw := s.raw[:0]
	defer func() { s.raw = raw[:0] }()
	var unchanged []int
	for j, c := range tuple.Columns {
		var v []byte
		switch c.DataType {
		case pglogrepl.TupleDataTypeBinary:
			var err error
			if v, err = r.convert(s.types, j, c.Data); err != nil {
				return err
			}
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, j)
		case pglogrepl.TupleDataTypeText:
			return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("column %s.%s came as text, not binary", r.table.Name, r.src.cols[j].Name))
		}
		raw = append(raw, v)
	}
	id, ok := int32Of(raw[r.key])
	if !ok {
		return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("%s: a row without %s", r.table.Name, r.table.Key))
	}
	for _, j := range unchanged {
		v, err := s.unchanged(ctx, t, r, j, id, old)
		if err != nil {
			return err
		}
		raw[j] = v
	}
	if len(s.tx.stamp) == 0 || string(s.tx.stamp[0]) != op {
		s.tx.stamp = captureValues(op, s.tx.final, s.tx.commit)
	}
	raw = append(raw, s.tx.stamp...)
	if t.sink == nil {
		t.rel, t.sink, t.newest = r, l.sink(ctx, r.table.Name, r.src, 0), math.MinInt64
	}
	if err := t.sink.add(raw); err != nil {
		return fmt.Errorf("ingest %s: %w", r.table.Name, err)
	}
	if lu, ok := microsOf(raw[r.src.lastUpdated]); ok {
		// A stamp beyond time ('infinity', year 12000) as the nearest a
		// time holds: the state's JSON holds no other.
		t.newest = max(t.newest, min(max(lu, minMicros), maxMicros))
	}
	if _, ok := t.final[id]; ok {
		t.final[id] = false
	}
	s.rows++
	return nil
}

// unchanged is the value of column j that an update left unchanged and
// TOASTed, so did not send: from the old row when the table's replica
// identity is FULL, else from the previous version the lake holds.
func (s *stream) unchanged(ctx context.Context, t *streamTable, r *relation, j int, id int32, old *pglogrepl.TupleData) ([]byte, error) {
	if old != nil && j < len(old.Columns) && old.Columns[j].DataType == pglogrepl.TupleDataTypeBinary {
		return r.convert(s.types, j, old.Columns[j].Data)
	}
	col := r.src.cols[j]
	if t.sink != nil && t.sink.tw.rows > 0 {
		// The previous version may be one of this batch's rows, not yet in
		// the lake: land them first.
		return nil, s.cutHere(fmt.Sprintf("an update of %s %d that left %s unchanged", r.table.Name, id, col.Name))
	}
	if col.kind != kString {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("%s %d: %s was left unchanged by an update and is not text: "+
			"set REPLICA IDENTITY FULL on %s", r.table.Name, id, col.Name, r.table.Name))
	}
	v, ok, err := previousText(ctx, s.bucket, s.prevSeq, r.table, id, col.Name)
	if err != nil {
		return nil, errkind.Default(errkind.BucketReadFailed, err)
	}
	if !ok {
		return nil, errkind.Wrap(errkind.CaptureGap, fmt.Errorf("%s %d: an update left %s unchanged, and no version of the row is in the lake to take it from: "+
			"set REPLICA IDENTITY FULL on %s, and land the source again (sandstone ingest --capture wal --resnapshot)", r.table.Name, id, col.Name, r.table.Name))
	}
	return v, nil
}

// previousText finds the value of text column col in the newest version of
// the table's row id that the lake holds, from batch seq back.
func previousText(ctx context.Context, b *lake.Bucket, seq int64, table totesys.Table, id int32, col string) ([]byte, bool, error) {
	for ; seq > 0; seq-- {
		var m lake.Manifest
		if err := b.ReadManifest(ctx, seq, &m); err != nil {
			return nil, false, err
		}
		obj, ok := m.Table(table.Name)
		if !ok {
			continue
		}
		p, err := lake.OpenObject(ctx, b, obj)
		if err != nil {
			return nil, false, err
		}
		v, found, err := lake.LastText(p, table.Key, id, col)
		p.Close()
		if err != nil || found {
			return v, found, err
		}
	}
	return nil, false, nil
}

// delete records a deleted row's key.
func (s *stream) delete(m *pglogrepl.DeleteMessage) error {
	if s.tx.skip {
		return nil
	}
	r := s.rels[m.RelationID]
	if r == nil || m.OldTuple == nil || r.key >= len(m.OldTuple.Columns) || m.OldTuple.Columns[r.key].DataType != pglogrepl.TupleDataTypeBinary {
		return errkind.Wrap(errkind.CaptureNotReady, fmt.Errorf("slot %s: a delete without its key: the table needs a primary key, or REPLICA IDENTITY FULL", s.capture.Slot))
	}
	raw, err := r.convert(s.types, r.key, m.OldTuple.Columns[r.key].Data)
	if err != nil {
		return err
	}
	id, ok := int32Of(raw)
	if !ok {
		return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("%s: a deleted row's %s is not an integer", r.table.Name, r.table.Key))
	}
	s.table(r).final[id] = true
	s.rows++
	return nil
}

// finish commits the tables' objects and describes the batch: its
// tombstones, the ids that came back, and the state the poll would go on
// from.
func (s *stream) finish(l *landing) (batchRead, error) {
	b := batchRead{more: s.more, state: State{SnapshotAt: s.boundAt, Tables: map[string]*TableState{}, More: s.more}}
	if s.more {
		b.state.SnapshotAt = s.last.commit
	}
	c := s.capture
	if s.rows > 0 {
		c.End = s.last.end
	} else if s.emptyBatch() {
		c.End = s.quiet
	}
	s.end = c.End
	b.manifest = lake.Manifest{SnapshotAt: b.state.SnapshotAt, Capture: &c}
	gone := maps.Clone(s.prev.Gone) // tombstones sets each table's anew
	if gone == nil {
		gone = map[string][]int32{}
	}
	for _, table := range totesys.Tables {
		t := s.tables[table.Name]
		r := tableRun{table: table, prev: s.prev.Tables[table.Name], prevSnapshot: s.prev.snapshotOf(table.Name),
			snapshotAt: b.state.SnapshotAt, lookback: s.lookback, now: l.now, spill: true}
		rd := tableRead{tw: &tableWriter{table: table.Name}}
		if t != nil && t.sink != nil {
			if err := t.sink.close(); err != nil {
				return b, fmt.Errorf("ingest %s: %w", table.Name, err)
			}
			obj, err := t.sink.tw.commit()
			if err != nil {
				return b, fmt.Errorf("ingest %s: %w", table.Name, err)
			}
			rd.tw, rd.obj, rd.newest = t.sink.tw, obj, t.newest
			b.manifest.Tables = append(b.manifest.Tables, obj)
			if w := rd.tw.watermark; w != nil {
				b.manifest.SourceNewest = maxTime(b.manifest.SourceNewest, w.To)
			}
		}
		b.state.Tables[table.Name] = r.nextState(rd, l.seq)
		if t != nil {
			tombstones(table.Name, t.final, gone, &b.manifest)
		}
	}
	b.state.Gone = gone
	return b, nil
}

// emptyBatch reports whether a batch with no change lands, to confirm the
// slot up to where the server stood (quiet), when release allows (a
// follower lands one at most every statusEvery, not one per pass through a
// large transaction under way): when the WAL it read past the lake's end,
// which no change of ours is in, reaches the quiet bound; or when the slot
// holds WAL back that far from its restart point: it lets go of it only
// once confirmed past a record of the running transactions decoded after
// that point (PostgreSQL writes one every 15 s or so), which the WAL read
// may hold.
func (s *stream) emptyBatch() bool {
	most := lake.LSN(s.quietMax) // #nosec G115 -- a positive size
	switch {
	case !s.release:
		return false
	case s.quiet >= s.capture.Start+most:
		return true
	case s.quiet > s.capture.Start && s.restart != 0:
		return s.quiet >= s.restart+most
	}
	return false
}

// tombstones records the table's deletes and revivals in the manifest, and
// the ids gone after the batch.
func tombstones(table string, final map[int32]bool, gone map[string][]int32, m *lake.Manifest) {
	was := map[int32]bool{}
	for _, id := range gone[table] {
		was[id] = true
	}
	var deleted, revived, now []int32
	for id, del := range final {
		switch {
		case del && !was[id]:
			deleted = append(deleted, id)
		case !del && was[id]:
			revived = append(revived, id)
		}
		if del {
			now = append(now, id)
		}
	}
	add := func(to *map[string][]int32, ids []int32) {
		if len(ids) > 0 {
			slices.Sort(ids)
			if *to == nil {
				*to = map[string][]int32{}
			}
			(*to)[table] = ids
		}
	}
	add(&m.Deleted, deleted)
	add(&m.Revived, revived)
	slices.Sort(now)
	if len(now) > 0 {
		gone[table] = now
	} else {
		delete(gone, table)
	}
}

// isCut reports whether err asks for the batch to be cut, and where.
func isCut(err error) (lake.LSN, bool) {
	var c errCut
	if errors.As(err, &c) {
		return c.at, true
	}
	return 0, false
}
