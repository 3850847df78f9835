// Package warehouse is Sandstone's third stage: it keeps the star-schema
// warehouse (PostgreSQL) in step with the processed bucket.
//
// Load applies every processed batch not yet loaded, in sequence order, each
// in one transaction that also records it in the warehouse's load ledger
// (sandstone_loads), so a batch takes effect exactly once whatever crashes,
// retries or concurrent runs happen. Fact rows, and the rows of a dimension
// still empty, travel by one binary COPY straight into the table
// (copy.go), the new fact rows' foreign keys checked at once after it
// (loadcheck.go); into an empty table a big batch goes with its keys
// built after (load_bulk.go). The table's unique key refuses
// a duplicate version; then, and for dimensions with rows, they travel by
// COPY into temporary staging tables and then by set-based SQL
// (load_sql.go): dimensions are upserted to their latest value, dim_date
// only grows, facts are appended (one row per source row version). In a
// batch that log-based capture read, a fact version the table holds
// already is a correction: its row takes the new values, recorded in
// sandstone_corrections (correctFacts). A load that at least doubled a
// table vacuums and analyzes it after its batches (vacuum.go). The
// schema is created and changed by versioned migrations
// (sandstone_migrations); a warehouse whose tables someone else created is
// used as it is, once its columns are checked.
//
// Every caller works through a Warehouse, the handle that Open returns
// (warehouse.go): Load, and Counts, LastLoad, LoadedSeq and Freshness,
// which report on a warehouse for the status command and the demo. No
// other package names the ledger table.
package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// Options configure Load.
type Options struct {
	// Processed is the processed bucket, which transform writes.
	Processed *lake.Bucket
	// Logger gets a line per batch loaded; slog.Default() when nil.
	Logger *slog.Logger
	// Deadline, when set, makes Load stop at the first batch boundary from
	// which the next batch, taking as long as the longest one so far and
	// half as long again, could not commit before it, leaving the remaining
	// batches to a later run. The first batch always starts before it.
	Deadline time.Time
	// Stop, once closed, stops Load at the next batch boundary, the batch
	// under way committed (lake.Stopped; a first Ctrl-C). Nil never stops
	// it.
	Stop <-chan struct{}
	// Progress reports the rows copied per table as they go (nil: none).
	Progress *progress.Meter
	// Quiet logs each batch at Debug: for `run --follow`, whose batches
	// are many.
	Quiet bool
}

// Result is what one Load did.
type Result struct {
	// Batches are the batches this run loaded, in order.
	Batches []BatchResult
	// Skipped are the batches another, concurrent, load applied first.
	Skipped []int64
	// Pending is the number of batches left for a later run because the
	// deadline passed or a stop was asked.
	Pending int
	// Stopped is set when Load stopped at Options.Stop.
	Stopped bool
	// Vacuumed are the tables this run's batches at least doubled, vacuumed
	// and analyzed after them (see vacuumGrown).
	Vacuumed []string
}

// BatchResult is one loaded batch.
type BatchResult struct {
	// Sequence is the batch's sequence number in the processed bucket.
	Sequence int64
	// Batch is the batch's id (its manifest's).
	Batch string
	// Rows is the rows written per warehouse table: dimension rows inserted
	// or changed, dim_date rows added, fact rows appended.
	Rows map[string]int64
	// Corrected is, per fact table, the rows a capture batch corrected
	// (see correctFacts); none for a poll batch.
	Corrected map[string]int64
	// Seconds is how long the batch took, from reading its manifest to commit.
	Seconds float64
}

// Load applies every batch of the processed bucket that the warehouse has
// not loaded yet, in sequence order, creating or migrating the handle's
// schema first. Each batch is one transaction: dimensions, then dim_date,
// then facts, then its ledger row; a failure leaves nothing of the batch and
// stops the run. Two loads at once take turns batch by batch under an
// advisory lock, and each batch is applied by exactly one of them.
//
// Before loading, it checks that the bucket holds the newest batch the
// ledger records, by its manifest's SHA-256 (see checkLedger), and that the
// warehouse's text columns are long enough for the batches to load (see
// checkLengths). Every object is verified against its manifest entry as it
// is read (lake.OpenObject).
//
// Errors carry an errkind: ConfigInvalid (no processed bucket),
// WarehouseUnreachable, WarehouseSchemaMismatch
// (a table or column missing, of the wrong type or too short, found before
// anything is written), LedgerMismatch (the bucket does not hold the batches
// the warehouse loaded), ObjectMismatch (an object differs from its
// manifest entry: its batch is refused whole), BucketReadFailed or
// LoadFailed.
func (w *Warehouse) Load(ctx context.Context, opts Options) (Result, error) {
	var res Result
	if opts.Processed == nil {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("load: no processed bucket given"))
	}
	s := w.s
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	// The batches to load, found and checked before the schema's changes
	// commit: a refusal writes nothing at all.
	var seqs []int64
	p, err := prepare(ctx, w.conn, s, log, func(tx pgx.Tx, p *plan) error {
		if err := checkLedger(ctx, tx, s, opts.Processed); err != nil {
			return err
		}
		loaded, err := loadedSeq(ctx, tx, s)
		if err != nil {
			return errkind.Wrap(errkind.LoadFailed, err)
		}
		if seqs, err = opts.Processed.SeqsAfter(ctx, loaded); err != nil {
			return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("load: list batches: %w", err))
		}
		return checkLengths(ctx, p, s, opts.Processed, seqs)
	})
	if err != nil {
		return res, err
	}
	l := &loader{conn: w.conn, s: s, set: w.set, plan: p, bucket: opts.Processed, log: log, progress: opts.Progress}
	var longest time.Duration // the longest batch so far
	for i, seq := range seqs {
		if !lake.Fits(opts.Deadline, w.set.now(), longest) {
			res.Pending = len(seqs) - i
			log.Info("load stopped at the deadline", "pending", res.Pending, "next", lake.BatchID(seq))
			break
		}
		if lake.Stopped(opts.Stop) {
			res.Pending, res.Stopped = len(seqs)-i, true
			log.Info("load stopped as asked", "pending", res.Pending, "next", lake.BatchID(seq))
			break
		}
		br, applied, err := l.batch(ctx, seq)
		if err != nil {
			return res, err
		}
		if !applied {
			res.Skipped = append(res.Skipped, seq)
			log.Info("batch already loaded", "batch", lake.BatchID(seq))
			continue
		}
		res.Batches = append(res.Batches, br)
		longest = max(longest, time.Duration(br.Seconds*float64(time.Second)))
		log.Log(ctx, logging.Level(opts.Quiet), "batch loaded", "batch", br.Batch, "rows", br.Rows, "corrected", br.Corrected, "seconds", br.Seconds)
	}
	if len(res.Batches) > 0 && res.Pending == 0 && opts.Deadline.IsZero() && !lake.Stopped(opts.Stop) {
		// Under a deadline the vacuum is left to autovacuum: its time is
		// not known beforehand.
		if res.Vacuumed, err = l.vacuumGrown(ctx, res.Batches); err != nil {
			return res, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("load: vacuum after the batches: %w", err))
		}
	}
	return res, nil
}

// loader loads batches over one connection.
type loader struct {
	conn   *pgx.Conn
	s      schema
	set    settings
	plan   *plan
	bucket *lake.Bucket
	log    *slog.Logger
	// checks are the fact tables' set-based foreign-key checks, looked up
	// once (see refCheck); noReplica is set once the role is found unable
	// to use them.
	checks    map[string]*refCheck
	noReplica bool
	// progress is told the rows as they are copied (nil: no one).
	progress *progress.Meter
}

// batch applies batch seq in one transaction. It reports false, and
// changes nothing, when the ledger shows the batch loaded already.
func (l *loader) batch(ctx context.Context, seq int64) (BatchResult, bool, error) {
	start := time.Now()
	id := lake.BatchID(seq)
	br := BatchResult{Sequence: seq, Batch: id, Rows: map[string]int64{}, Corrected: map[string]int64{}}
	var m lake.Manifest
	sum, err := l.bucket.ReadManifestSum(ctx, seq, &m)
	if err != nil {
		return br, false, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("load batch %s: %w", id, err))
	}
	if err := checkManifest(&m, seq); err != nil {
		return br, false, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("load batch %s: %w", id, err))
	}
	if m.Batch != "" {
		br.Batch = m.Batch
	}
	fail := func(err error) error {
		k := errkind.Of(err)
		if k == errkind.Internal {
			k = errkind.LoadFailed
		}
		return errkind.Wrap(k, fmt.Errorf("load batch %s: %w", id, err))
	}
	tx, err := begin(ctx, l.conn, l.s)
	if err != nil {
		return br, false, fail(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var last int64
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(sequence), 0) FROM "+l.s.ident(ledgerTable)).Scan(&last); err != nil {
		return br, false, fail(err)
	}
	if last >= seq {
		return br, false, nil
	}
	if last != seq-1 {
		return br, false, fail(fmt.Errorf("batch %s is the next to load, not this one", lake.BatchID(last+1)))
	}
	for _, t := range tables { // dimensions before facts
		obj, ok := m.Table(t.name)
		if !ok {
			continue
		}
		var fix *correcting
		if m.Capture != nil && t.role == fact {
			fix = &correcting{batch: br.Batch}
		}
		n, err := l.table(ctx, tx, t, obj, fix)
		if err != nil {
			return br, false, fail(fmt.Errorf("%s: %w", t.name, err))
		}
		br.Rows[t.name] = n
		if fix != nil && fix.corrected > 0 {
			br.Corrected[t.name] = fix.corrected
		}
	}
	br.Seconds = time.Since(start).Seconds()
	var newest *time.Time
	if !m.SourceNewest.IsZero() {
		newest = &m.SourceNewest
	}
	if err := l.deletions(ctx, tx, &m); err != nil {
		return br, false, fail(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+l.s.ident(ledgerTable)+
		" (sequence, batch, rows, source_newest, seconds, run_id, manifest_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		seq, br.Batch, br.Rows, newest, br.Seconds, m.RunID, sum); err != nil {
		return br, false, fail(fmt.Errorf("record in %s: %w", ledgerTable, err))
	}
	if err := tx.Commit(ctx); err != nil {
		return br, false, fail(fmt.Errorf("commit: %w", err))
	}
	br.Seconds = time.Since(start).Seconds()
	return br, true, nil
}

// checkManifest refuses a manifest load cannot apply whole.
func checkManifest(m *lake.Manifest, seq int64) error {
	if m.Stage != "transform" {
		return fmt.Errorf("manifest is of stage %q, want transform", m.Stage)
	}
	if m.Sequence != seq {
		return fmt.Errorf("manifest has sequence %d", m.Sequence)
	}
	seen := map[string]bool{}
	for _, o := range m.Tables {
		if _, ok := tableByName(o.Table); !ok {
			return fmt.Errorf("unknown warehouse table %q in the manifest", o.Table)
		}
		if seen[o.Table] {
			return fmt.Errorf("table %s twice in the manifest", o.Table)
		}
		seen[o.Table] = true
	}
	return nil
}

// table loads one table's object, returning the rows written: straight
// into the table when it can (see copyDirect), else through a staging table.
// fix is set for the facts of a capture batch, whose versions already held
// are corrections (see correctFacts).
func (l *loader) table(ctx context.Context, tx pgx.Tx, t *table, obj lake.Object, fix *correcting) (int64, error) {
	if obj.Rows == 0 {
		return 0, nil
	}
	a := apply{t: t, s: l.s, keyed: l.plan.keyed[t.name], fix: fix}
	if n, done, err := l.setBased(ctx, tx, a, obj); err != nil || done {
		return n, err
	}
	var fks []constraintDef
	if t.role == fact {
		var err error
		if fks, err = l.dropKeysForBulk(ctx, tx, a, obj.Rows); err != nil {
			return 0, err
		}
	}
	written, err := l.write(ctx, tx, a, obj)
	if err != nil {
		return 0, err
	}
	if err := l.restoreKeys(ctx, tx, a, fks); err != nil {
		return 0, err
	}
	return written, nil
}

// setBased loads the rows of obj into fact table a.t with its foreign keys
// checked set-based: the new rows' keys by the values collected as they
// were copied (see checked), or, into an empty table a big batch, with
// the whole table checked after (see bulkChecked). It does not when the
// table has no version key or cannot be checked so, and reports whether
// it did.
func (l *loader) setBased(ctx context.Context, tx pgx.Tx, a apply, obj lake.Object) (int64, bool, error) {
	if a.t.role != fact || !a.keyed {
		return 0, false, nil
	}
	rc, err := l.refCheckOf(ctx, tx, a)
	if err != nil || rc == nil {
		return 0, false, err
	}
	if obj.Rows >= l.set.bulkCheckMinRows {
		var empty bool
		if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+a.s.ident(a.t.name)+")").Scan(&empty); err != nil {
			return 0, false, err
		}
		if empty {
			return l.bulkChecked(ctx, tx, a, rc, obj)
		}
	}
	return l.checked(ctx, tx, a, rc, obj)
}

// write writes the rows of obj into a.t.
func (l *loader) write(ctx context.Context, tx pgx.Tx, a apply, obj lake.Object) (int64, error) {
	t := a.t
	direct := a.keyed && t.role == fact
	if a.keyed && t.role == dimension {
		if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+l.s.ident(t.name)+")").Scan(&direct); err != nil {
			return 0, err
		}
	}
	if direct {
		start := time.Now()
		if _, err := tx.Exec(ctx, "SAVEPOINT sandstone_direct"); err != nil {
			return 0, err
		}
		keys, err := l.dropIndexKeysForBulk(ctx, tx, a, obj.Rows)
		if err != nil {
			return 0, err
		}
		var ids *serialIDs
		if len(keys) > 0 && t.role == fact {
			if ids, err = l.reserveIDs(ctx, tx, a, obj.Rows); err != nil {
				return 0, err
			}
		}
		n, err := l.copyDirect(ctx, tx, t, l.s.ident(t.name), obj, a.keys, ids)
		copied := time.Now()
		if err == nil && n == obj.Rows {
			err = addConstraints(ctx, tx, keys) // builds the indexes, refusing a duplicate
		}
		switch {
		case err == nil && n != obj.Rows:
			return 0, fmt.Errorf("%s has %d rows, the manifest says %d", obj.Key, n, obj.Rows)
		case err == nil:
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT sandstone_direct"); err != nil {
				return 0, err
			}
			if a.keys != nil {
				a.keys.complete = true
			}
			l.log.Debug("table loaded", "table", t.name, "rows", n, "written", n, "direct", true,
				"copy_seconds", copied.Sub(start).Seconds(), "index_keys", len(keys), "ids_numbered", ids != nil,
				"index_seconds", time.Since(copied).Seconds())
			return n, nil
		case isUniqueViolation(err):
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT sandstone_direct"); err != nil {
				return 0, err
			}
			l.log.Debug("rows already in the table or twice in the batch: staging them", "table", t.name, "reason", err)
		default:
			return 0, err
		}
	}
	return l.staged(ctx, tx, a, obj)
}

// staged stages one table's object and applies it, returning the rows written.
func (l *loader) staged(ctx context.Context, tx pgx.Tx, a apply, obj lake.Object) (int64, error) {
	t := a.t
	stage := pgx.Identifier{"pg_temp", "sandstone_stage_" + t.name}
	cs := t.dataCols()
	names := make([]string, 0, len(cs)+1)
	defs := make([]string, 0, len(cs)+1)
	for _, c := range cs {
		names = append(names, c.name)
		defs = append(defs, q(c.name)+" "+c.typ.Stage)
	}
	names = append(names, "_row")
	defs = append(defs, "_row bigint NOT NULL")
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+stage.Sanitize()+" ("+strings.Join(defs, ", ")+") ON COMMIT DROP"); err != nil {
		return 0, fmt.Errorf("create staging table: %w", err)
	}
	start := time.Now()
	count := l.progress.Table(t.name, obj.Rows)
	defer count.Done()
	src := t.feed.open(ctx, l.bucket, obj, count)
	n, err := tx.CopyFrom(ctx, stage, names, src)
	src.close()
	if rerr := src.readErr(); rerr != nil {
		return 0, errkind.Default(errkind.BucketReadFailed, rerr)
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", obj.Key, err)
	}
	if n != obj.Rows {
		return 0, fmt.Errorf("%s has %d rows, the manifest says %d", obj.Key, n, obj.Rows)
	}
	staged := time.Now()
	a.stage = stage.Sanitize()
	var written int64
	switch {
	case t.role == fact && a.fix != nil:
		written, err = a.correctFacts(ctx, tx)
	case t.role == fact:
		written, err = a.insertFacts(ctx, tx)
		if err == nil && written < n {
			l.log.Warn("fact versions already in the warehouse were skipped", "table", t.name, "skipped", n-written)
		}
	default:
		written, err = a.upsert(ctx, tx)
	}
	if err != nil {
		return 0, err
	}
	l.log.Debug("table loaded", "table", t.name, "rows", n, "written", written,
		"copy_seconds", staged.Sub(start).Seconds(), "apply_seconds", time.Since(staged).Seconds())
	return written, nil
}

// deletions records the batch's tombstones: the source ids an audit or
// capture found gone. A deletion recorded before keeps its first sighting.
// The batch's revived ids, deleted before and inserted again, leave the
// table first, so that an id both revived and deleted since stays deleted.
func (l *loader) deletions(ctx context.Context, tx pgx.Tx, m *lake.Manifest) error {
	for table, ids := range m.Revived {
		if _, err := tx.Exec(ctx, "DELETE FROM "+l.s.ident(deletionsTable)+" WHERE source_table = $1 AND id = ANY ($2::int4[])",
			table, ids); err != nil {
			return fmt.Errorf("remove the revived from %s: %w", deletionsTable, err)
		}
	}
	for table, ids := range m.Deleted {
		if _, err := tx.Exec(ctx, "INSERT INTO "+l.s.ident(deletionsTable)+
			" (source_table, id, seen_gone_at, batch) SELECT $1, unnest($2::int4[]), $3, $4 ON CONFLICT DO NOTHING",
			table, ids, m.SnapshotAt, m.Batch); err != nil {
			return fmt.Errorf("record in %s: %w", deletionsTable, err)
		}
	}
	return nil
}
