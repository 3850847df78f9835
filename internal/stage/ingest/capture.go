package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// maxCuts bounds how often one run reads a batch again to cut it shorter
// (see errCut): each cut ends the batch at an earlier transaction, so a
// few always do.
const maxCuts = 8

// capture is a run of log-based capture: the source's connections, the
// lake's state, and the slot the batch is read from.
type capture struct {
	opts    Options
	log     *slog.Logger
	start   time.Time
	prevSeq int64
	prev    State
	// last is the newest batch that is not a repair: where capture goes on
	// from when it is a capture batch.
	last *lake.Manifest
	src  *pgx.Conn      // a plain connection: catalogue, slot, clock
	rep  *pgconn.PgConn // the replication connection
	// streaming is set while rep streams the slot.
	streaming bool
	sys       pglogrepl.IdentifySystemResult
	plan      *capturePlan // what preflight found
}

// runCapture lands the next batch by log-based capture: the first run (or
// the first after the poll, or after a snapshot that did not finish)
// creates the slot and lands, from the snapshot it exports, what the lake
// does not hold yet; every later run streams from the slot what committed
// after the lake's last batch.
func runCapture(ctx context.Context, opts Options, log *slog.Logger, res Result) (Result, error) {
	c, starting, err := openCapture(ctx, opts, log)
	if err != nil {
		return res, err
	}
	defer c.close()
	if starting {
		return c.snapshot(ctx, res)
	}
	s, err := c.newStream(ctx)
	if err != nil {
		return res, err
	}
	return c.streamBatch(ctx, s, res, true)
}

// openCapture reads the lake's state, connects to the source and runs the
// preflight; starting says that the run lands a slot's snapshot rather
// than streaming. The capture is the caller's to close.
func openCapture(ctx context.Context, opts Options, log *slog.Logger) (c *capture, starting bool, err error) {
	c = &capture{opts: opts, log: log, start: time.Now()}
	if err := c.reload(ctx); err != nil {
		return nil, false, err
	}
	if err := c.connect(ctx); err != nil {
		return nil, false, err
	}
	starting = c.last == nil || c.last.Capture == nil || c.last.Capture.Snapshot && !c.last.Capture.SnapshotDone || opts.Resnapshot
	if c.plan, err = preflight(ctx, c.src, opts.Slot, opts.Publication, starting); err == nil {
		// Only now, once preflight has told a role without REPLICATION all
		// it lacks: such a role cannot open this connection.
		err = c.replicate(ctx, c.src.Config())
	}
	if err != nil {
		c.close()
		return nil, false, err
	}
	return c, starting, nil
}

// reload reads the lake's newest state and the newest batch that is not a
// repair.
func (c *capture) reload(ctx context.Context) error {
	var err error
	if c.prevSeq, c.prev, err = LoadState(ctx, c.opts.Bucket); err == nil {
		c.last, err = lastRead(ctx, c.opts.Bucket, c.prevSeq)
	}
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", err))
	}
	return nil
}

// lastRead is the newest batch from seq back that is not a repair (which
// audits land beside capture); nil when there is none.
func lastRead(ctx context.Context, b *lake.Bucket, seq int64) (*lake.Manifest, error) {
	for ; seq > 0; seq-- {
		var m lake.Manifest
		if err := b.ReadManifest(ctx, seq, &m); err != nil {
			return nil, err
		}
		if !m.Repair {
			return &m, nil
		}
	}
	return nil, nil
}

// connect opens the plain connection, in UTC.
func (c *capture) connect(ctx context.Context) error {
	var err error
	c.src, err = connectSource(ctx, c.opts.SourceURL)
	return err
}

// replicate opens the replication connection and identifies the server.
func (c *capture) replicate(ctx context.Context, cfg *pgx.ConnConfig) error {
	rcfg := cfg.Config.Copy()
	var err error
	rcfg.RuntimeParams["replication"] = "database"
	rcfg.RuntimeParams["application_name"] = "sandstone ingest"
	if c.rep, err = pgconn.ConnectConfig(ctx, rcfg); err != nil {
		return config.ConnectFailure(config.Source, c.opts.SourceURL, cfg, err)
	}
	if c.sys, err = pglogrepl.IdentifySystem(ctx, c.rep); err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("identify the source server: %w", err))
	}
	return nil
}

// close ends both connections.
func (c *capture) close() {
	c.closeReplication()
	if c.src != nil {
		_ = c.src.Close(context.Background())
	}
}

// closeReplication closes the replication connection and waits (a second
// at most) for its WAL sender to leave, so that the slot is free when the
// run returns: the next run, a second later, finds it so.
func (c *capture) closeReplication() {
	if c.rep == nil {
		return
	}
	bg := context.Background()
	pid := c.rep.PID()
	_ = c.rep.Close(bg)
	c.rep, c.streaming = nil, false
	if c.src == nil || c.src.IsClosed() {
		return
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		var there bool
		if c.src.QueryRow(bg, "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE pid = $1)", pid).Scan(&there) != nil || !there {
			return
		}
	}
}

// captureOf is what every batch read from the slot records.
func (c *capture) captureOf(start lake.LSN) lake.Capture {
	return lake.Capture{Slot: c.opts.Slot, Publication: c.opts.Publication, SystemID: c.sys.SystemID,
		Timeline: c.sys.Timeline, Start: start, End: start}
}

// snapshot creates the slot, exporting its snapshot, and lands from that
// snapshot, as the poll would, what the lake does not hold yet: every row
// on a first run, what changed since the lake's last batch after the poll.
// The batches (several, each within the batch's bound) are all read in
// this one run, while the snapshot lives; the last says so (SnapshotDone),
// and streaming goes on from the slot's consistent point. A slot of the
// name left without such a batch (a snapshot cut short, an earlier spell
// of capture) is dropped first.
func (c *capture) snapshot(ctx context.Context, res Result) (Result, error) {
	for _, t := range c.plan.Tables {
		c.log.Info("replica identity", "table", t.Name, "means", t.String())
	}
	if c.plan.Existing != nil {
		// Not the slot of a run that landed meanwhile.
		if err := c.movedOn(ctx, nil); err != nil {
			return res, err
		}
		c.log.Warn("dropping the slot left by an earlier capture that the lake does not go on from: capture starts again from a snapshot",
			"slot", c.opts.Slot)
		if err := pglogrepl.DropReplicationSlot(ctx, c.rep, c.opts.Slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return res, slotBusy(errkind.SourceUnreachable, c.opts.Slot, "drop", err)
		}
	}
	created, err := pglogrepl.CreateReplicationSlot(ctx, c.rep, c.opts.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return res, slotBusy(errkind.CaptureNotReady, c.opts.Slot, "create", err)
	}
	point, err := lake.ParseLSN(created.ConsistentPoint)
	if err != nil {
		return res, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("create slot %s: %w", c.opts.Slot, err))
	}
	c.log.Info("created the replication slot; landing its snapshot", "slot", c.opts.Slot, "consistent_point", point.String())
	total := map[string]int64{}
	var longest time.Duration
	for {
		began := time.Now()
		r, err := c.snapshotBatch(ctx, created.SnapshotName, point, res)
		for t, n := range r.Rows {
			total[t] += n
		}
		r.Rows = total
		if err != nil || r.Conflict || !r.More {
			return r, err
		}
		longest = max(longest, time.Since(began))
		if !lake.Fits(c.opts.Deadline, time.Now(), longest) || lake.Stopped(c.opts.Stop) {
			c.log.Info("the snapshot stops here; the next run goes on from a new slot", "slot", c.opts.Slot)
			return r, nil
		}
		res = r
		if c.prevSeq, c.prev, err = LoadState(ctx, c.opts.Bucket); err != nil {
			return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("ingest: %w", err))
		}
	}
}

// snapshotBatch lands one batch of the slot's snapshot.
func (c *capture) snapshotBatch(ctx context.Context, name string, point lake.LSN, res Result) (Result, error) {
	tx, closeTx, err := openTx(ctx, c.opts.SourceURL, name)
	if err != nil {
		return res, err
	}
	var at time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		closeTx()
		return res, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("begin snapshot: %w", err))
	}
	at = at.UTC()
	p := &poll{opts: c.opts, prevSeq: c.prevSeq, prev: c.prev, tx: tx, snapshot: name, snapshotAt: at, close: closeTx, log: c.log}
	defer p.close()
	l := c.landing()
	l.stamp = captureValues(lake.OpSnapshot, point, at)
	cp := c.captureOf(point)
	cp.Snapshot = true
	return l.land(ctx, snapshotRead{poll: p, capture: cp}, res)
}

// landing is the landing of the batch after the lake's newest.
func (c *capture) landing() *landing {
	return &landing{bucket: c.opts.Bucket, seq: c.prevSeq + 1, runID: c.opts.RunID, now: c.start, log: c.log,
		progress: c.opts.Progress, quiet: c.opts.Quiet}
}

// snapshotRead is the poll, read in the slot's snapshot, whose batches
// record the slot.
type snapshotRead struct {
	poll    *poll
	capture lake.Capture
}

func (r snapshotRead) read(ctx context.Context, l *landing) (batchRead, error) {
	b, err := r.poll.read(ctx, l)
	c := r.capture
	c.SnapshotDone = !b.more
	b.manifest.Capture = &c
	return b, err
}

// newStream is the reader of what committed after the lake's last batch,
// once it has checked that the slot still holds all of it, up to where the
// source's WAL is flushed now.
func (c *capture) newStream(ctx context.Context) (*stream, error) {
	from := c.last.Capture.End
	if err := c.holdsFrom(from); err != nil {
		return nil, c.movedOn(ctx, err)
	}
	s := &stream{cat: c.src, bucket: c.opts.Bucket, capture: c.captureOf(from), maxRows: c.opts.MaxBatchRows,
		quietMax: c.opts.quietBytes, lookback: c.opts.Lookback, log: c.log, rels: map[uint32]*relation{}, release: true}
	// A heartbeat committed synchronously first flushes what asynchronous
	// commits left unflushed.
	c.heartbeat(ctx)
	if err := c.bound(ctx, s); err != nil {
		return nil, err
	}
	if c.plan.ServerVersion < 160000 && s.restart != 0 && s.bound >= s.restart+lake.LSN(s.quietMax) { // #nosec G115 -- a positive size
		c.markRunning(ctx)
		return s, c.bound(ctx, s) // read past the record
	}
	return s, nil
}

// markRunning has a server before version 16 write a record of the running
// transactions now, for a slot that holds WAL back: the slot lets go of
// the WAL before such a record once confirmed past it, and the server
// writes one only every 15 s or so (from version 16 the heartbeat asks for
// one). Creating a logical slot writes one first thing: a temporary slot,
// given up within a second (it waits for the transactions under way),
// leaves only the record. A role or a server that cannot (no slot free)
// is only logged.
func (c *capture) markRunning(ctx context.Context) {
	name := fmt.Sprintf("sandstone_mark_%d", c.src.PgConn().PID())
	_, err := c.src.Exec(ctx, "SET statement_timeout = '1s'")
	if err == nil {
		_, err = c.src.Exec(ctx, "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput', true)", name)
		if err == nil {
			_, err = c.src.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1)", name)
		}
	}
	if _, rerr := c.src.Exec(ctx, "RESET statement_timeout"); err == nil {
		err = rerr
	}
	if err != nil {
		c.log.Debug("no record of the running transactions written (or a slot not created after it): the slot lets go of WAL at the server's next", "error", err)
	}
}

// bound has s read what committed before now: up to where the WAL is
// flushed, which the slot can read; and s goes on from the lake's state.
func (c *capture) bound(ctx context.Context, s *stream) error {
	var at time.Time
	var bound string
	var restart *string
	if err := c.src.QueryRow(ctx, "SELECT now(), pg_catalog.pg_current_wal_flush_lsn()::text, "+
		"(SELECT restart_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)", c.opts.Slot).Scan(&at, &bound, &restart); err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read the source's clock: %w", err))
	}
	end, err := lake.ParseLSN(bound)
	if err == nil && restart != nil {
		s.restart, err = lake.ParseLSN(*restart)
	}
	if err != nil {
		return errkind.Wrap(errkind.SourceUnreachable, err)
	}
	s.bound, s.boundAt, s.prevSeq, s.prev = end, at.UTC(), c.prevSeq, c.prev
	return nil
}

// streamBatch lands s's batch, starting the replication when it is not
// under way, and confirms it; done ends the replication once confirmed,
// else the stream goes on to the next batch.
func (c *capture) streamBatch(ctx context.Context, s *stream, res Result, done bool) (Result, error) {
	for cuts := 0; ; cuts++ {
		if !c.streaming {
			if err := c.startReplication(ctx, s.capture.Start); err != nil {
				return res, err
			}
			c.streaming = true
		}
		s.conn = c.rep
		r, err := c.landing().land(ctx, s, res)
		at, cut := isCut(err)
		if !cut || cuts == maxCuts {
			if err == nil && r.Sequence != 0 && c.opts.afterLand != nil {
				err = c.opts.afterLand()
			}
			if err == nil && !r.Conflict {
				err = c.confirm(ctx, s, r.Sequence != 0, done)
			}
			return r, err
		}
		// Read the batch again, on a new connection, up to the cut.
		s.cut = at
		c.closeReplication()
		if err := c.replicate(ctx, c.src.Config()); err != nil {
			return res, err
		}
	}
}

// heartbeat writes a logical message to the WAL in a transaction that
// commits synchronously, flushing the WAL written before it. Only a help:
// a role that may not write one reads up to the WAL flushed already.
func (c *capture) heartbeat(ctx context.Context) {
	err := pgx.BeginFunc(ctx, c.src, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on; SELECT pg_catalog.pg_logical_emit_message(true, 'sandstone', 'heartbeat')")
		return err
	})
	if err != nil {
		c.log.Debug("no heartbeat: the run reads the WAL flushed already", "error", err)
	}
	// The slot lets go of WAL (restart_lsn) only past a record of the
	// running transactions, which PostgreSQL writes every 15 s or so;
	// from version 16 one can be asked for (a superuser's right by default).
	if c.plan != nil && c.plan.ServerVersion >= 160000 {
		if _, err := c.src.Exec(ctx, "SELECT pg_catalog.pg_log_standby_snapshot()"); err != nil {
			c.log.Debug("no record of the running transactions: the slot lets go of WAL at the server's next", "error", err)
		}
	}
}

// holdsFrom makes sure the slot holds every change after from, where the
// lake ends: it exists, on the server the lake was read from, is not
// invalidated and is not confirmed past from. Anything else is a gap.
func (c *capture) holdsFrom(from lake.LSN) error {
	s := c.plan.Existing
	var gap string
	switch {
	case s == nil:
		gap = "is gone"
	case c.last.Capture.Slot != c.opts.Slot:
		gap = fmt.Sprintf("is not the slot the lake was read from (%s)", c.last.Capture.Slot)
	case c.sys.SystemID != c.last.Capture.SystemID:
		gap = fmt.Sprintf("is on another server (system %s; the lake was read from %s)", c.sys.SystemID, c.last.Capture.SystemID)
	case s.WALStatus == "lost":
		gap = "was invalidated: the server removed WAL it still needed (max_slot_wal_keep_size)"
	case s.ConfirmedFlushLSN > from:
		gap = fmt.Sprintf("is confirmed to %s, past the lake's last batch (%s): the batches between are not in the lake", s.ConfirmedFlushLSN, from)
	}
	if gap == "" {
		return nil
	}
	return errkind.Wrap(errkind.CaptureGap, fmt.Errorf("replication slot %s %s, so changes may be missing from the lake. "+
		"To go on: land the source again from a new slot (sandstone ingest --capture wal --resnapshot: what changed since the lake's last batch, by last_updated), "+
		"then record the deletes and find the updates no timestamp shows (sandstone audit --repair)", c.opts.Slot, gap))
}

// startReplication starts streaming the slot from from.
func (c *capture) startReplication(ctx context.Context, from lake.LSN) error {
	err := pglogrepl.StartReplication(ctx, c.rep, c.opts.Slot, pglogrepl.LSN(from),
		pglogrepl.StartReplicationOptions{PluginArgs: PluginArgs(c.opts.Publication)})
	return slotBusy(errkind.SourceUnreachable, c.opts.Slot, "stream", err)
}

// PluginArgs are the pgoutput options capture streams a slot with: protocol
// 1, the publication, values in binary.
func PluginArgs(publication string) []string {
	return []string{"proto_version '1'", "publication_names " + quoteLiteral(pgx.Identifier{publication}.Sanitize()), "binary 'true'"}
}

// confirm tells the slot that the batch landed: the server may let go of
// the WAL before its end. A run that landed nothing confirms the lake's
// end, which the slot may lag (a run stopped between landing and
// confirming). done ends the stream.
func (c *capture) confirm(ctx context.Context, s *stream, landed, done bool) error {
	if landed {
		s.capture.Start = s.end
	}
	if err := s.status(ctx, false); err != nil || !done {
		return err
	}
	// Ends the stream, so that the server takes the status before the
	// connection goes.
	_, _ = pglogrepl.SendStandbyCopyDone(ctx, c.rep)
	c.streaming = false
	return nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := range len(s) {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
