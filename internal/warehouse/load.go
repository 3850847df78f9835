// Package warehouse is Sandstone's third stage: it keeps the star-schema
// warehouse (PostgreSQL) in step with the processed bucket.
//
// Load applies every processed batch not yet loaded, in sequence order, each
// in one transaction that also records it in the warehouse's load ledger
// (sandstone_loads), so a batch takes effect exactly once whatever crashes,
// retries or concurrent runs happen. Fact rows, and the rows of a dimension
// still empty, travel by one binary COPY straight into their table, whose
// unique key refuses a duplicate (see copy.go); otherwise, and whenever the
// key refuses a row, they travel by COPY into temporary staging tables and
// then by set-based SQL: dimensions are upserted to their latest value,
// dim_date only grows, facts are appended (one row per source row version). The schema is created and changed by versioned migrations
// (sandstone_migrations); a warehouse whose tables someone else created is
// used as it is, once its columns are checked.
//
// Counts, LastLoad, LoadedSeq and Freshness report on a warehouse for the
// status command and the demo.
package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/config"
	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
)

// Options configure Load.
type Options struct {
	// URL is the warehouse's PostgreSQL URL.
	URL string
	// Schema is the warehouse's PostgreSQL schema, created when missing;
	// "public" when empty.
	Schema string
	// Processed is the processed bucket, which transform writes.
	Processed *lake.Bucket
	// Logger gets a line per batch loaded; slog.Default() when nil.
	Logger *slog.Logger
	// Deadline, when set, makes Load stop at the first batch boundary past
	// it, leaving the remaining batches to a later run.
	Deadline time.Time
}

// Result is what one Load did.
type Result struct {
	// Batches are the batches this run loaded, in order.
	Batches []BatchResult
	// Skipped are the batches another, concurrent, load applied first.
	Skipped []int64
	// Pending is the number of batches left for a later run because the
	// deadline passed.
	Pending int
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
	// Seconds is how long the batch took, from reading its manifest to commit.
	Seconds float64
}

// now is the clock, replaced in tests of the deadline.
var now = time.Now

// Load applies every batch of the processed bucket that the warehouse has
// not loaded yet, in sequence order, creating or migrating the warehouse
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
// Errors carry an errkind: WarehouseUnreachable, WarehouseSchemaMismatch
// (a table or column missing, of the wrong type or too short, found before
// anything is written), LedgerMismatch (the bucket does not hold the batches
// the warehouse loaded), ObjectMismatch (an object differs from its
// manifest entry: its batch is refused whole), BucketReadFailed or
// LoadFailed.
func Load(ctx context.Context, opts Options) (Result, error) {
	var res Result
	if opts.URL == "" {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("load: no warehouse URL given"))
	}
	if opts.Processed == nil {
		return res, errkind.Wrap(errkind.ConfigInvalid, errors.New("load: no processed bucket given"))
	}
	s := schemaOf(opts.Schema)
	if len(s) > 63 {
		return res, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("load: schema name %q is longer than PostgreSQL's 63 bytes", string(s)))
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	conn, err := connect(ctx, opts.URL)
	if err != nil {
		return res, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	// The batches to load, found and checked before the schema's changes
	// commit: a refusal writes nothing at all.
	var seqs []int64
	p, err := prepare(ctx, conn, s, log, func(tx pgx.Tx, p *plan) error {
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
	l := &loader{conn: conn, s: s, plan: p, bucket: opts.Processed, log: log}
	for i, seq := range seqs {
		if !opts.Deadline.IsZero() && now().After(opts.Deadline) {
			res.Pending = len(seqs) - i
			log.Info("load stopped at the deadline", "pending", res.Pending, "next", lake.BatchID(seq))
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
		log.Info("batch loaded", "batch", br.Batch, "rows", br.Rows, "seconds", br.Seconds)
	}
	return res, nil
}

// connect opens a connection to the warehouse.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, config.RedactError(fmt.Errorf("warehouse URL %s: %w", url, err)))
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "sandstone"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errkind.Wrap(errkind.WarehouseUnreachable, config.RedactError(fmt.Errorf("connect to warehouse %s: %w", url, config.ConnectHint(cfg, err))))
	}
	return conn, nil
}

// loader loads batches over one connection.
type loader struct {
	conn   *pgx.Conn
	s      schema
	plan   *plan
	bucket *lake.Bucket
	log    *slog.Logger
}

// batch applies batch seq in one transaction. It reports false, and
// changes nothing, when the ledger shows the batch loaded already.
func (l *loader) batch(ctx context.Context, seq int64) (BatchResult, bool, error) {
	start := time.Now()
	id := lake.BatchID(seq)
	br := BatchResult{Sequence: seq, Batch: id, Rows: map[string]int64{}}
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
		n, err := l.table(ctx, tx, t, obj)
		if err != nil {
			return br, false, fail(fmt.Errorf("%s: %w", t.name, err))
		}
		br.Rows[t.name] = n
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
func (l *loader) table(ctx context.Context, tx pgx.Tx, t *table, obj lake.Object) (int64, error) {
	if obj.Rows == 0 {
		return 0, nil
	}
	a := apply{t: t, s: l.s, keyed: l.plan.keyed[t.name]}
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
		n, err := l.copyDirect(ctx, tx, t, obj)
		copied := time.Now()
		if err == nil && n == obj.Rows {
			err = addConstraints(ctx, tx, a.s, t.name, keys) // builds the indexes, refusing a duplicate
		}
		switch {
		case err == nil && n != obj.Rows:
			return 0, fmt.Errorf("%s has %d rows, the manifest says %d", obj.Key, n, obj.Rows)
		case err == nil:
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT sandstone_direct"); err != nil {
				return 0, err
			}
			l.log.Debug("table loaded", "table", t.name, "rows", n, "written", n, "direct", true,
				"copy_seconds", copied.Sub(start).Seconds(), "index_keys", len(keys),
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
		defs = append(defs, q(c.name)+" "+c.kind.stage())
	}
	names = append(names, "_row")
	defs = append(defs, "_row bigint NOT NULL")
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+stage.Sanitize()+" ("+strings.Join(defs, ", ")+") ON COMMIT DROP"); err != nil {
		return 0, fmt.Errorf("create staging table: %w", err)
	}
	start := time.Now()
	src := t.feed.open(ctx, l.bucket, obj)
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
	if t.role == fact {
		written, err = a.insertFacts(ctx, tx)
		if err == nil && written < n {
			l.log.Warn("fact versions already in the warehouse were skipped", "table", t.name, "skipped", n-written)
		}
	} else {
		written, err = a.upsert(ctx, tx)
	}
	if err != nil {
		return 0, err
	}
	l.log.Debug("table loaded", "table", t.name, "rows", n, "written", written,
		"copy_seconds", staged.Sub(start).Seconds(), "apply_seconds", time.Since(staged).Seconds())
	return written, nil
}

// apply builds the set-based SQL that moves a staging table into its table.
type apply struct {
	t     *table
	s     schema
	stage string // quoted staging table
	keyed bool   // the table has a unique key on t.key
}

// selectList is the warehouse values of the staged row alias x.
func (a apply) selectList(x string) string {
	var out []string
	for _, c := range a.t.dataCols() {
		out = append(out, c.kind.expr(x+"."+q(c.name))+" AS "+q(c.name))
	}
	return strings.Join(out, ", ")
}

// latest is the staged rows, the last one of each key only (as written to
// the Parquet), with warehouse values.
func (a apply) latest() string {
	return "(SELECT DISTINCT ON (" + a.keyOf("x") + ") " + a.selectList("x") + " FROM " + a.stage +
		" x ORDER BY " + a.keyOf("x") + ", x._row DESC)"
}

func (a apply) keyOf(x string) string {
	out := make([]string, len(a.t.key))
	for i, k := range a.t.key {
		out[i] = x + "." + q(k)
	}
	return strings.Join(out, ", ")
}

// sameKey matches rows w and x (both with warehouse values) on the key.
func (a apply) sameKey(w, x string) string {
	out := make([]string, len(a.t.key))
	for i, k := range a.t.key {
		out[i] = w + "." + q(k) + " = " + x + "." + q(k)
	}
	return strings.Join(out, " AND ")
}

func (a apply) colList() string {
	var out []string
	for _, c := range a.t.dataCols() {
		out = append(out, q(c.name))
	}
	return strings.Join(out, ", ")
}

// nonKey are the columns an upsert changes.
func (a apply) nonKey() []string {
	var out []string
	for _, c := range a.t.dataCols() {
		if !slices.Contains(a.t.key, c.name) {
			out = append(out, q(c.name))
		}
	}
	return out
}

func prefixed(p string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = p + "." + c
	}
	return strings.Join(out, ", ")
}

// upsert writes a dimension: each key's latest value replaces the old one
// (dim_date: only new dates are added). Unchanged rows are not touched.
func (a apply) upsert(ctx context.Context, tx pgx.Tx) (int64, error) {
	target := a.s.ident(a.t.name)
	nonKey := a.nonKey()
	if a.keyed {
		sql := "INSERT INTO " + target + " AS w (" + a.colList() + ") SELECT * FROM " + a.latest() +
			" x ON CONFLICT (" + quoteAll(a.t.key) + ") DO "
		if a.t.role == calendar {
			sql += "NOTHING"
		} else {
			set := make([]string, len(nonKey))
			for i, c := range nonKey {
				set[i] = c + " = EXCLUDED." + c
			}
			sql += "UPDATE SET " + strings.Join(set, ", ") +
				" WHERE (" + prefixed("w", nonKey) + ") IS DISTINCT FROM (" + prefixed("EXCLUDED", nonKey) + ")"
		}
		tag, err := tx.Exec(ctx, sql)
		if err != nil {
			return 0, err
		}
		return tag.RowsAffected(), nil
	}
	// No unique key (a table someone else created): update, then insert the
	// new keys. The warehouse lock keeps other Sandstone loads out meanwhile.
	var changed int64
	if a.t.role != calendar {
		set := make([]string, len(nonKey))
		for i, c := range nonKey {
			set[i] = c + " = x." + c
		}
		tag, err := tx.Exec(ctx, "UPDATE "+target+" w SET "+strings.Join(set, ", ")+" FROM "+a.latest()+
			" x WHERE "+a.sameKey("w", "x")+" AND ("+prefixed("w", nonKey)+") IS DISTINCT FROM ("+prefixed("x", nonKey)+")")
		if err != nil {
			return 0, err
		}
		changed = tag.RowsAffected()
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+target+" ("+a.colList()+") SELECT * FROM "+a.latest()+
		" x WHERE NOT EXISTS (SELECT 1 FROM "+target+" w WHERE "+a.sameKey("w", "x")+")")
	if err != nil {
		return 0, err
	}
	return changed + tag.RowsAffected(), nil
}

// insertFacts appends the staged versions, skipping any version the table
// holds already (the unique version key, or a NOT EXISTS where there is none).
func (a apply) insertFacts(ctx context.Context, tx pgx.Tx) (int64, error) {
	target := a.s.ident(a.t.name)
	var sql string
	if a.keyed {
		sql = "INSERT INTO " + target + " (" + a.colList() + ") SELECT " + a.selectList("x") + " FROM " + a.stage +
			" x ON CONFLICT (" + quoteAll(a.t.key) + ") DO NOTHING"
	} else {
		sql = "INSERT INTO " + target + " (" + a.colList() + ") SELECT * FROM " + a.latest() +
			" x WHERE NOT EXISTS (SELECT 1 FROM " + target + " w WHERE " + a.sameKey("w", "x") + ")"
	}
	tag, err := tx.Exec(ctx, sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// Bulk foreign-key checking. PostgreSQL checks a foreign key row by row, by
// a trigger: with fact_sales_order's nine, 1M rows took 37 s to insert here
// instead of 6 s (2 cores; BenchmarkLoad and TestBigLoad measure it). For
// a batch that is big beside the table, load drops the fact table's foreign
// keys inside the batch's transaction and adds them back after the insert,
// which checks every row in one join per key. Either way a row without its
// dimension fails the batch. The cost: during such a batch the fact table
// (and, briefly, its dimensions) is locked against readers. Only the table's
// owner may do this; a role that may only write rows checks row by row.
var (
	bulkCheckMinRows int64 = 50_000 // smaller batches are checked row by row
	bulkCheckRatio   int64 = 20     // ... and so are batches under 1/20 of the table
)

// dropKeysForBulk drops the foreign keys of fact table a.t when a batch of
// rows is big enough to check them in bulk, returning them for restoreKeys.
func (l *loader) dropKeysForBulk(ctx context.Context, tx pgx.Tx, a apply, rows int64) ([]constraintDef, error) {
	if rows < bulkCheckMinRows {
		return nil, nil
	}
	var tuples float64
	var owner bool // only the table's owner may drop and add its keys
	size := func() error {
		return tx.QueryRow(ctx, `SELECT c.reltuples, pg_catalog.pg_has_role(c.relowner, 'USAGE')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, string(a.s), a.t.name).Scan(&tuples, &owner)
	}
	if err := size(); err != nil {
		return nil, err
	}
	if tuples < 0 && owner { // never analyzed (e.g. right after the initial load): estimate now
		if _, err := tx.Exec(ctx, "ANALYZE "+a.s.ident(a.t.name)); err != nil {
			return nil, err
		}
		if err := size(); err != nil {
			return nil, err
		}
	}
	if !owner || float64(rows*bulkCheckRatio) < tuples {
		return nil, nil
	}
	return dropForeignKeys(ctx, tx, a.s, a.t.name)
}

// restoreKeys adds back the foreign keys dropKeysForBulk dropped, which
// checks every row of the table in one join per key.
func (l *loader) restoreKeys(ctx context.Context, tx pgx.Tx, a apply, fks []constraintDef) error {
	start := time.Now()
	if err := addConstraints(ctx, tx, a.s, a.t.name, fks); err != nil {
		return err
	}
	if len(fks) > 0 {
		l.log.Debug("foreign keys checked in bulk", "table", a.t.name, "keys", len(fks), "seconds", time.Since(start).Seconds())
	}
	return nil
}

// Bulk index building. Into an empty fact table, a big batch is copied
// without the table's primary key and unique version key, which are added
// back after the COPY: building an index by sorting costs about a third of
// maintaining it row by row. All of it happens under the direct COPY's
// savepoint, so when adding the version key back finds a version twice in
// the batch, load rolls back to the savepoint (keys and all) and stages the
// batch, exactly as when the COPY itself is refused.

// dropIndexKeysForBulk drops the primary and unique keys of fact table a.t
// when a batch of rows is big and the table empty, returning them for
// addConstraints. It leaves alone a table the load role does not own, and
// keys that another table's foreign key references or that the table is
// clustered on or replicated by.
func (l *loader) dropIndexKeysForBulk(ctx context.Context, tx pgx.Tx, a apply, rows int64) ([]constraintDef, error) {
	if a.t.role != fact || rows < bulkCheckMinRows {
		return nil, nil
	}
	var owner bool
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, string(a.s), a.t.name).Scan(&owner); err != nil {
		return nil, err
	}
	if !owner {
		return nil, nil
	}
	var empty bool
	if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+a.s.ident(a.t.name)+")").Scan(&empty); err != nil {
		return nil, err
	}
	if !empty {
		return nil, nil
	}
	// Room to sort the keys of a big batch in memory (this transaction only).
	if _, err := tx.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
		return nil, err
	}
	return dropConstraints(ctx, tx, a.s, a.t.name, `con.contype IN ('p', 'u')
		AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' AND f.conindid = con.conindid)
		AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = con.conindid
			AND (i.indisclustered OR i.indisreplident))`)
}

// constraintDef is a constraint (a foreign key, or the primary or a unique
// key) as the catalogue defines it.
type constraintDef struct{ name, def string }

// addConstraints adds constraints cs back to table, in one ALTER TABLE.
func addConstraints(ctx context.Context, tx pgx.Tx, s schema, table string, cs []constraintDef) error {
	if len(cs) == 0 {
		return nil
	}
	adds := make([]string, len(cs))
	for i, c := range cs {
		adds[i] = "ADD CONSTRAINT " + q(c.name) + " " + c.def
	}
	_, err := tx.Exec(ctx, "ALTER TABLE "+s.ident(table)+" "+strings.Join(adds, ", "))
	return err
}

// dropForeignKeys drops table's foreign keys and returns their definitions
// (schema-qualified, since the search_path holds only pg_catalog).
func dropForeignKeys(ctx context.Context, tx pgx.Tx, s schema, table string) ([]constraintDef, error) {
	return dropConstraints(ctx, tx, s, table, "con.contype = 'f'")
}

// dropConstraints drops the constraints of table that match which (a
// constant condition on pg_constraint con) and returns their definitions.
func dropConstraints(ctx context.Context, tx pgx.Tx, s schema, table, which string) ([]constraintDef, error) {
	rows, err := tx.Query(ctx, `SELECT con.conname::text, pg_catalog.pg_get_constraintdef(con.oid)
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND `+which+` ORDER BY con.conname`, string(s), table)
	if err != nil {
		return nil, err
	}
	var cs []constraintDef
	var c constraintDef
	if _, err := pgx.ForEachRow(rows, []any{&c.name, &c.def}, func() error {
		cs = append(cs, c)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, c := range cs {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+s.ident(table)+" DROP CONSTRAINT "+q(c.name)); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// deletions records the batch's tombstones: the source ids an audit found
// gone. A deletion recorded before keeps its first sighting.
func (l *loader) deletions(ctx context.Context, tx pgx.Tx, m *lake.Manifest) error {
	for table, ids := range m.Deleted {
		if _, err := tx.Exec(ctx, "INSERT INTO "+l.s.ident(deletionsTable)+
			" (source_table, id, seen_gone_at, batch) SELECT $1, unnest($2::int4[]), $3, $4 ON CONFLICT DO NOTHING",
			table, ids, m.SnapshotAt, m.Batch); err != nil {
			return fmt.Errorf("record in %s: %w", deletionsTable, err)
		}
	}
	return nil
}
