package ingest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// tableRead is one table's read: its object, committed when it landed
// rows, and what the next window needs to know of it.
type tableRead struct {
	tw  *tableWriter
	obj lake.Object
	// landed are the versions landed that the next window tells apart;
	// newest, in µs, is the newest landed, when the run spills them (see
	// tableRun.spill).
	landed landedSet
	newest int64
	// unspilled are the versions of the previous state's spilled batches
	// that the window tells apart, read back from the lake (see
	// readSpilled); nil when it read none.
	unspilled []version
	// partial is set when the read stopped at the batch's bound with
	// versions still to land.
	partial bool
}

// land reads the table's new versions from tx and commits their object at
// once, so that its encoder and buffers go as soon as the table is read.
// Should the run fail later, the object stays unreferenced, as those of a
// run that loses the race for its batch do.
func (r *tableRun) land(ctx context.Context, tx pgx.Tx, l *landing, log *slog.Logger) (tableRead, error) {
	rd, err := r.read(ctx, tx, l, log)
	if err == nil && rd.partial && r.shared != nil {
		// Stopped at the bound it shared with the tables read alongside:
		// dropped, to be read again in turn (see readAhead).
		rd.tw.abort()
		return tableRead{}, nil
	}
	if err == nil && rd.tw.rows > 0 {
		rd.obj, err = rd.tw.commit()
	}
	if err != nil {
		if rd.tw != nil {
			rd.tw.abort()
		}
		return tableRead{}, fmt.Errorf("ingest %s: %w", r.table.Name, err)
	}
	return rd, nil
}

// tableRun is one table's part of a run: where its window starts and
// which versions it has landed already.
type tableRun struct {
	table        totesys.Table
	prev         *TableState // nil when the table never landed a row
	prevSnapshot time.Time   // zero on the first run
	snapshotAt   time.Time
	lookback     time.Duration
	now          time.Time // the run's start: when its rows landed
	// only, when set, reads these ids alone, whatever their stamps (a
	// repair).
	only []int32
	// limit, when positive, is the most versions the read may land: it
	// then reads in last_updated order and stops there (see read).
	limit int64
	// shared, when set, is what is left of the batch's bound for the
	// tables read alongside this one: each version landed takes one.
	shared *atomic.Int64
	// spill, set by wal capture, keeps the versions landed out of the
	// state: it records the batch instead (see TableState.Spilled).
	spill bool
}

// windowStart is where the table's read starts (exclusive); ok is false
// when every row is read: the first run, or a table that never landed one.
func (r *tableRun) windowStart() (start time.Time, ok bool) {
	if r.prevSnapshot.IsZero() || r.prev == nil || (r.prev.Watermark.IsZero() && len(r.prev.Recent) == 0 && len(r.prev.Spilled) == 0) {
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

// read selects the table's candidate rows and lands the new versions
// through l: every one (see selection), or, with a limit, the first ones in
// last_updated order up to it. Versions that share a last_updated may then
// be split between this batch and the next: the next run's window starts
// below the newest stamp landed, and skips the versions of it that landed
// (see nextState), so each lands once.
func (r *tableRun) read(ctx context.Context, tx pgx.Tx, l *landing, log *slog.Logger) (tableRead, error) {
	src, err := describeTable(ctx, tx, r.table, log)
	if err != nil {
		return tableRead{}, err
	}
	var expected int64
	if l.progress != nil {
		expected = r.expected(ctx, tx)
	}
	sel := r.selection(src)
	unspilled, err := r.readSpilled(ctx, l.bucket, sel)
	if err != nil {
		return tableRead{}, err
	}
	sel.seen.sort()
	if r.limit > 0 {
		// One row past the limit, and past the versions that are skipped,
		// tells whether the table has more.
		sel.sql += fmt.Sprintf(" ORDER BY %s LIMIT %d", pgx.Identifier{totesys.LastUpdated}.Sanitize(),
			r.limit+int64(sel.seen.len())+1)
	}
	rows, err := tx.Query(ctx, sel.sql, sel.args...)
	if err != nil {
		return tableRead{}, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read: %w", err))
	}
	defer rows.Close()
	pr := &pollRows{Rows: rows, r: r, src: src, seen: sel.seen, watermark: sel.watermark}
	pr.landed.floor = r.nextSince(sel.watermark).UnixMicro()
	tw, err := l.write(ctx, r.table, src, pr, expected)
	return tableRead{tw: tw, landed: pr.landed, partial: pr.partial, unspilled: unspilled}, err
}

// readSpilled reads back into sel.seen the versions the window tells apart
// from the batches the previous state spilled (see TableState.Spilled), and
// returns them; nil when there are none to read. Only a poll that takes
// over from capture reads them, once: its own state keeps them in Recent.
func (r *tableRun) readSpilled(ctx context.Context, b *lake.Bucket, sel selection) ([]version, error) {
	if sel.seen == nil || len(r.prev.Spilled) == 0 {
		return nil, nil
	}
	start := sel.start.UnixMicro()
	out := []version{}
	for _, sp := range r.prev.Spilled {
		if sp.Newest.UnixMicro() <= start {
			continue
		}
		for seq := sp.From; seq <= sp.To; seq++ {
			var m lake.Manifest
			err := b.ReadManifest(ctx, seq, &m)
			if err == nil {
				err = landedVersions(ctx, b, m, r.table, func(id int32, us int64) {
					if v := (version{id, us}); us > start {
						sel.seen.vs = append(sel.seen.vs, v)
						out = append(out, v)
					}
				})
			}
			if err != nil {
				return nil, errkind.Default(errkind.BucketReadFailed, fmt.Errorf("read the versions batch %d landed: %w", seq, err))
			}
		}
	}
	return out, nil
}

// selection is the query of a table's candidate rows.
type selection struct {
	sql  string
	args []any
	// seen are the versions in the window that landed already: skipped
	// (nil when every row is read).
	seen *versionSet
	// watermark is the newest last_updated landed before this run, and
	// start the window's start.
	watermark, start time.Time
}

// selection builds the query of the table's candidate rows: the ids of a
// repair, or those stamped after the window's start (every row the first
// time); read orders and limits it when the read is limited.
func (r *tableRun) selection(src *sourceTable) selection {
	sel := selection{
		sql:  "SELECT " + src.selectList() + " FROM " + pgx.Identifier{r.table.Name}.Sanitize(),
		args: []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}},
	}
	if r.only != nil {
		sel.sql += " WHERE " + pgx.Identifier{r.table.Key}.Sanitize() + " = ANY($1)"
		sel.args = append(sel.args, r.only)
		return sel
	}
	if start, ok := r.windowStart(); ok {
		sel.sql += " WHERE " + pgx.Identifier{totesys.LastUpdated}.Sanitize() + " > $1"
		sel.args = append(sel.args, start)
		sel.seen = &versionSet{vs: make([]version, 0, len(r.prev.Recent))}
		for _, v := range r.prev.Recent {
			if v[1] > start.UnixMicro() {
				sel.seen.vs = append(sel.seen.vs, version{int32(v[0]), v[1]}) // #nosec G115 -- ids are int4
			}
		}
		sel.watermark, sel.start = r.prev.Watermark, start
	}
	return sel
}

// pollRows are the new versions among a table's candidate rows, as the
// landing takes them: the versions landed already are skipped, the read
// stops at its limit, and the versions that pass are recorded for the next
// window (see nextState).
type pollRows struct {
	pgx.Rows
	r    *tableRun
	src  *sourceTable
	seen *versionSet
	// watermark is the newest last_updated landed; it raises landed's
	// floor.
	watermark time.Time
	landed    landedSet
	n         int64 // the versions passed on
	partial   bool
	err       error
}

// Next moves to the next new version within the limit.
func (p *pollRows) Next() bool {
	for p.Rows.Next() {
		raw := p.RawValues()
		id, ok1 := int32Of(raw[p.src.key])
		lu, ok2 := microsOf(raw[p.src.lastUpdated])
		if !ok1 || !ok2 {
			p.err = errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("row without %s or %s", p.r.table.Key, totesys.LastUpdated))
			return false
		}
		v := version{id, lu}
		if p.seen.has(v) {
			continue
		}
		if p.r.limit > 0 && p.n == p.r.limit || p.r.shared != nil && p.r.shared.Add(-1) < 0 {
			p.partial = true // a version beyond the limit: the next run's
			return false
		}
		p.n++
		if representable(lu) && (lu > p.watermark.UnixMicro() || p.watermark.IsZero()) {
			p.watermark = time.UnixMicro(lu).UTC()
			p.landed.raise(p.r.nextSince(p.watermark).UnixMicro())
		}
		p.landed.add(v)
		return true
	}
	return false
}

// Err is why Next stopped early: a row without its key or stamp, or the
// source's error.
func (p *pollRows) Err() error {
	if p.err != nil {
		return p.err
	}
	return p.Rows.Err()
}

// expected is the number of rows a person may expect the read to land,
// for its progress: on a table's first read, PostgreSQL's estimate of its
// rows (within the limit); otherwise unknown (0), as only the changes are
// read.
func (r *tableRun) expected(ctx context.Context, tx pgx.Tx) int64 {
	if r.prev != nil || r.only != nil {
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
func (r *tableRun) nextState(rd tableRead, seq int64) *TableState {
	tw := rd.tw
	ts := &TableState{}
	start, windowed := r.windowStart()
	if r.prev != nil {
		ts.Watermark, ts.LandedAt, ts.Batch, ts.Skew = r.prev.Watermark, r.prev.LandedAt, r.prev.Batch, r.prev.Skew
	}
	if tw.rows > 0 {
		ts.LandedAt, ts.Batch = r.now.UTC(), lake.BatchID(seq)
		if tw.watermark != nil {
			ts.Watermark = maxTime(ts.Watermark, tw.watermark.To)
			if !rd.partial { // else the newest stamp landed is not the table's newest
				ts.Skew = r.skew(tw.watermark.To)
			}
		}
	}
	if ts.Watermark.IsZero() && tw.rows == 0 && (r.prev == nil || len(r.prev.Recent) == 0 && len(r.prev.Spilled) == 0) {
		return ts // nothing landed yet: the next run reads every row
	}
	// The versions above the window read now were all seen; those at or
	// below it were not, so Recent covers no lower than the window.
	ts.Since = r.nextSince(ts.Watermark)
	if windowed {
		ts.Since = maxTime(ts.Since, start)
	}
	floor := ts.Since.UnixMicro()
	// Sized once: a large batch's versions are not copied as they grow.
	ts.Recent = slices.Grow(ts.Recent, len(rd.unspilled)+len(rd.landed.versions))
	if r.prev != nil {
		ts.Recent = slices.Grow(ts.Recent, len(r.prev.Recent))
		for _, v := range r.prev.Recent {
			if v[1] > floor {
				ts.Recent = append(ts.Recent, v)
			}
		}
		if rd.unspilled == nil { // else they are read back: Recent keeps them
			for _, sp := range r.prev.Spilled {
				if sp.Newest.UnixMicro() > floor {
					ts.Spilled = append(ts.Spilled, sp)
				}
			}
		}
	}
	for _, vs := range [][]version{rd.unspilled, rd.landed.versions} {
		for _, v := range vs {
			if v.us > floor {
				ts.Recent = append(ts.Recent, [2]int64{int64(v.id), v.us})
			}
		}
	}
	if r.spill && tw.rows > 0 && rd.newest > floor {
		ts.Spilled = spill(ts.Spilled, seq, time.UnixMicro(rd.newest).UTC(), r.lookback)
	}
	return ts
}

// maxSpills bounds a table's spilled ranges: past it, the last two merge.
const maxSpills = 32

// spill adds batch seq, whose newest version is stamped newest, to the
// spilled ranges: to the last one when that holds stamps of the same
// eighth of the lookback, so that a range goes once its stamps leave the
// window and a table keeps about nine however many batches land.
func spill(spills []Spill, seq int64, newest time.Time, lookback time.Duration) []Spill {
	slot := func(t time.Time) int64 { return t.UnixMicro() / max(lookback.Microseconds()/8, 1) }
	if n := len(spills); n > 0 && (slot(spills[n-1].Newest) == slot(newest) || n >= maxSpills) {
		last := &spills[n-1]
		last.To, last.Newest = seq, maxTime(last.Newest, newest)
		return spills
	}
	return append(spills, Spill{From: seq, To: seq, Newest: newest})
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

// versionSet is a set of versions, sorted to be searched: a million of
// them take 16 MB, a third of what a map of them takes.
type versionSet struct{ vs []version }

// sort readies s for has, after versions were appended; a nil s has
// nothing to sort.
func (s *versionSet) sort() {
	if s == nil {
		return
	}
	slices.SortFunc(s.vs, compareVersions)
	s.vs = slices.Compact(s.vs)
}

// has reports whether v is in s; a nil s has none.
func (s *versionSet) has(v version) bool {
	if s == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(s.vs, v, compareVersions)
	return ok
}

// len is the number of versions in s.
func (s *versionSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.vs)
}

// compareVersions orders versions by last_updated, then id.
func compareVersions(a, b version) int {
	return cmp.Or(cmp.Compare(a.us, b.us), cmp.Compare(a.id, b.id))
}

// representable reports whether µs since the epoch is a time that JSON,
// Parquet readers and the warehouse all hold: years 1 to 9999.
func representable(us int64) bool { return us >= minMicros && us <= maxMicros }

var (
	minMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxMicros = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() - 1
)
