package warehouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// Set-based foreign-key checking. PostgreSQL checks a foreign key by a
// trigger per inserted row and key: each new fact row probes and
// FOR KEY SHARE-locks its 7–9 dimension rows, one statement each, which
// bounds load's rate whatever else it does. Into a fact table that holds
// rows already, load instead
// copies the batch straight in with the foreign-key triggers off
// (session_replication_role = replica, under a savepoint), collecting the
// distinct values of the key columns on the way, and then checks every
// foreign key of the new rows in one statement (each referenced row
// locked FOR KEY SHARE once, as PostgreSQL's own check locks it, unless
// the referenced tables could be locked whole). The constraints are never
// dropped and stay validated, and a row without its dimension still fails
// the batch. It is faster than a temporary table of the rows, an
// INSERT … SELECT from it and a scan of it per key (docs/benchmarks.md).
//
// It is used only where it checks exactly what the triggers would: every
// foreign key of the table has one column, the table has no trigger of its
// own (replica mode would silence it too), and the load role may set
// session_replication_role (a superuser, or GRANT SET ON PARAMETER). Else
// the rows go in as before and PostgreSQL checks them row by row.

// settings.setBasedChecks turns the set-based check on; tests turn it off
// to cover the other paths.

// foreignKey is one single-column foreign key of a fact table.
type foreignKey struct {
	name   string // the constraint
	column string // the fact table's column
	ref    string // the referenced table, quoted and qualified
	refCol string // its key column
}

// refCheck is how a fact table's rows can be checked set-based; nil when
// they cannot.
type refCheck struct {
	keys []foreignKey
}

// refCheckOf returns how table a.t's rows can be checked set-based, or nil,
// looked up once per load.
func (l *loader) refCheckOf(ctx context.Context, tx pgx.Tx, a apply) (*refCheck, error) {
	if !l.set.setBasedChecks || l.noReplica {
		return nil, nil
	}
	if rc, ok := l.checks[a.t.name]; ok {
		return rc, nil
	}
	rc, err := lookupRefCheck(ctx, tx, a.s.ident(a.t.name))
	if err != nil {
		return nil, err
	}
	if l.checks == nil {
		l.checks = map[string]*refCheck{}
	}
	l.checks[a.t.name] = rc
	return rc, nil
}

// lookupRefCheck reads the foreign keys of table (quoted, qualified) from
// the catalogue; nil when one has several columns or the table has a
// trigger of its own.
func lookupRefCheck(ctx context.Context, tx pgx.Tx, table string) (*refCheck, error) {
	var own bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
		WHERE tgrelid = $1::regclass AND NOT tgisinternal)`, table).Scan(&own); err != nil {
		return nil, fmt.Errorf("read the triggers of %s: %w", table, err)
	}
	if own {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT con.conname::text, pg_catalog.cardinality(con.conkey),
			a.attname::text, con.confrelid::regclass::text, fa.attname::text
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
		JOIN pg_catalog.pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = con.confkey[1]
		WHERE con.conrelid = $1::regclass AND con.contype = 'f' ORDER BY con.conname`, table)
	if err != nil {
		return nil, fmt.Errorf("read the foreign keys of %s: %w", table, err)
	}
	var fk foreignKey
	var cols int
	rc := &refCheck{}
	single := true
	if _, err := pgx.ForEachRow(rows, []any{&fk.name, &cols, &fk.column, &fk.ref, &fk.refCol}, func() error {
		single = single && cols == 1
		rc.keys = append(rc.keys, fk)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the foreign keys of %s: %w", table, err)
	}
	if !single {
		return nil, nil
	}
	return rc, nil
}

// checked loads the rows of obj straight into fact table a.t with the
// foreign-key triggers off, collecting the distinct values of its key
// columns as they are copied, and then checks every foreign key of the new
// rows at once (see check). It reports false, having changed nothing, when
// it cannot be used: the role may not set session_replication_role, or a
// version is in the table already or twice in the batch (the staged path
// then skips it).
func (l *loader) checked(ctx context.Context, tx pgx.Tx, a apply, rc *refCheck, obj lake.Object) (int64, bool, error) {
	start := time.Now()
	rollback, ok, err := l.replicaAfter(ctx, tx, "sandstone_checked")
	if err != nil || !ok {
		return 0, false, err
	}
	t, table := a.t, a.s.ident(a.t.name)
	// The new rows are those past the serial ids already there.
	var before int64
	if err := tx.QueryRow(ctx, "SELECT coalesce(max("+q(t.serial)+"), 0) FROM ONLY "+table).Scan(&before); err != nil {
		return 0, false, fmt.Errorf("read the last id of %s: %w", table, err)
	}
	kv := newKeyValues(t, rc.keys, l.set.maxKeyValues)
	n, err := l.copyDirect(ctx, tx, t, table, obj, kv, nil)
	if isUniqueViolation(err) {
		l.log.Debug("rows already in the table or twice in the batch: staging them", "table", t.name, "reason", err)
		return 0, false, rollback()
	}
	if err != nil {
		return 0, false, err
	}
	if n != obj.Rows {
		return 0, false, fmt.Errorf("%s has %d rows, the manifest says %d", obj.Key, n, obj.Rows)
	}
	kv.complete = true
	copied := time.Now()
	newRows := "(SELECT * FROM ONLY " + table + " WHERE " + q(t.serial) + " > " + strconv.FormatInt(before, 10) + ")"
	if !kv.allOf(rc.keys) {
		// The keys read back from the rows find them by their ids, which
		// must all lie past those before (a sequence set back would not).
		var found int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+newRows+" n").Scan(&found); err != nil {
			return 0, false, fmt.Errorf("count the new rows of %s: %w", table, err)
		}
		if found < n {
			l.log.Debug("the new rows' ids are not all past the table's: checked by PostgreSQL", "table", t.name, "rows", n, "found", found)
			return 0, false, rollback()
		}
	}
	locked, err := rc.check(ctx, tx, table, newRows, kv)
	if err != nil {
		return 0, false, err
	}
	if err := release(ctx, tx, "sandstone_checked"); err != nil {
		return 0, false, err
	}
	l.log.Debug("table loaded", "table", t.name, "rows", n, "written", n, "checked", true, "table_locks", locked,
		"copy_seconds", copied.Sub(start).Seconds(), "check_seconds", time.Since(copied).Seconds())
	return n, true, nil
}

// bulkChecked loads a big batch into empty fact table a.t with the
// foreign-key triggers off, as write does without them, and then checks
// every row of the table (see checkTable): the distinct values of most
// keys, collected as the rows were copied, and the rest in one scan of the
// table, where adding dropped keys back (see dropKeysForBulk) scans it
// once per key; the constraints stay validated throughout. The referenced
// tables must be locked in SHARE mode at once, so that no row the check
// finds goes before the commit. It reports false, having changed nothing,
// when the role may not set session_replication_role or the tables cannot
// be locked.
func (l *loader) bulkChecked(ctx context.Context, tx pgx.Tx, a apply, rc *refCheck, obj lake.Object) (int64, bool, error) {
	rollback, ok, err := l.replicaAfter(ctx, tx, "sandstone_bulk")
	if err != nil || !ok {
		return 0, false, err
	}
	if locked, err := rc.lockTables(ctx, tx); err != nil || !locked {
		if err != nil {
			return 0, false, err
		}
		l.log.Debug("a table the foreign keys reference is busy: they are dropped and added back", "table", a.t.name)
		return 0, false, rollback()
	}
	a.keys = newKeyValues(a.t, rc.keys, l.set.maxKeyValues)
	n, err := l.write(ctx, tx, a, obj)
	if err != nil {
		return 0, false, err
	}
	start := time.Now()
	byValues, err := rc.checkTable(ctx, tx, a.s.ident(a.t.name), a.keys)
	if err != nil {
		return 0, false, err
	}
	if err := release(ctx, tx, "sandstone_bulk"); err != nil {
		return 0, false, err
	}
	l.log.Debug("foreign keys checked set-based", "table", a.t.name, "keys", len(rc.keys), "by_values", byValues,
		"seconds", time.Since(start).Seconds())
	return n, true, nil
}

// replicaAfter takes savepoint and then turns the foreign-key triggers off
// (session_replication_role = replica) for the rest of the transaction or
// until a rollback to the savepoint, which it returns. It reports false,
// back at the savepoint, when the role may not, and load stops trying.
func (l *loader) replicaAfter(ctx context.Context, tx pgx.Tx, savepoint string) (rollback func() error, ok bool, err error) {
	if _, err := tx.Exec(ctx, "SAVEPOINT "+savepoint); err != nil {
		return nil, false, err
	}
	rollback = func() error {
		_, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+savepoint)
		return err
	}
	_, err = tx.Exec(ctx, "SELECT pg_catalog.set_config('session_replication_role', 'replica', true)")
	switch {
	case err == nil:
		return rollback, true, nil
	case !isInsufficientPrivilege(err):
		return nil, false, err
	}
	l.noReplica = true
	l.log.Debug("the load role may not set session_replication_role: foreign keys are checked by PostgreSQL", "reason", err)
	return rollback, false, rollback()
}

// release turns the foreign-key triggers back on and releases savepoint.
func release(ctx context.Context, tx pgx.Tx, savepoint string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('session_replication_role', 'origin', true)"); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "RELEASE SAVEPOINT "+savepoint)
	return err
}

// check checks every foreign key of newRows (the rows just put into
// table, as a subquery) in one statement: for each key, whether the
// referenced table holds every distinct value the rows have. The values kv
// collected go as one array parameter; the others are read from newRows.
// Either way the referenced key's index scan sorts and dedupes the array
// and then walks it in order: twice as fast as a probe per value in hash
// order (a semi-join) at 57k values into a 5.7M-row table. A key that finds
// a value missing fails, naming it.
//
// The referenced rows must stay until the batch commits. The check takes
// the referenced tables in SHARE mode, which lets readers in and keeps
// writers out until then, if it can at once (NOWAIT); else it locks each
// referenced row FOR KEY SHARE, as PostgreSQL's own check does (once per
// row rather than once per fact row, but each lock still writes its row's
// page).
func (rc *refCheck) check(ctx context.Context, tx pgx.Tx, table, newRows string, kv *keyValues) (locked bool, err error) {
	if len(rc.keys) == 0 {
		return false, nil
	}
	if locked, err = rc.lockTables(ctx, tx); err != nil {
		return false, err
	}
	rowLock := ""
	if !locked {
		rowLock = " FOR KEY SHARE OF r"
	}
	parts := make([]string, len(rc.keys))
	want := make([]int64, len(rc.keys))
	var args []any
	for i, k := range rc.keys {
		if vs := kv.all(k.column); vs != nil {
			args = append(args, vs.list())
			parts[i], want[i] = k.lookup(vs.param(len(args)), rowLock), int64(len(vs.m))
			continue
		}
		// The distinct values less the rows found for them: none missing is 0.
		parts[i] = "(SELECT count(DISTINCT " + q(k.column) + ") FROM " + newRows + " n) - " +
			k.lookup("ARRAY(SELECT "+q(k.column)+" FROM "+newRows+" n)", rowLock)
	}
	if k, err := missing(ctx, tx, rc.keys, want, "SELECT "+strings.Join(parts, ", "), args...); err != nil || k != nil {
		return locked, checkFailed(ctx, tx, table, newRows, k, err)
	}
	return locked, nil
}

// lookup counts the rows of k's referenced table whose key is among values
// (an array), locking them as rowLock says.
func (k foreignKey) lookup(values, rowLock string) string {
	return "(SELECT count(*) FROM (SELECT 1 FROM ONLY " + k.ref + " r WHERE r." + q(k.refCol) +
		" = ANY (" + values + ")" + rowLock + ") x)"
}

// checkTable checks every foreign key of every row of table (quoted,
// qualified), which has been filled since it was empty: the keys whose
// distinct values kv holds by looking those up in the referenced key, in
// one statement, and the others in one scan of the table, left-joined to
// each referenced table (hash joins), counting per key the rows with a
// value and no referenced row. A key that finds a value missing fails,
// naming it. It returns how many keys were looked up by their values.
func (rc *refCheck) checkTable(ctx context.Context, tx pgx.Tx, table string, kv *keyValues) (int, error) {
	var lookups, joins, counts []string
	var looked, joined []foreignKey
	var args []any
	var want []int64
	for _, k := range rc.keys {
		vs := kv.all(k.column)
		if vs == nil {
			r := fmt.Sprintf("r%d", len(joined))
			joins = append(joins, "LEFT JOIN ONLY "+k.ref+" "+r+" ON "+r+"."+q(k.refCol)+" = f."+q(k.column))
			counts = append(counts, "count(*) FILTER (WHERE f."+q(k.column)+" IS NOT NULL AND "+r+"."+q(k.refCol)+" IS NULL)")
			joined = append(joined, k)
			continue
		}
		args = append(args, vs.list())
		lookups = append(lookups, k.lookup(vs.param(len(args)), ""))
		looked = append(looked, k)
		want = append(want, int64(len(vs.m)))
	}
	if len(looked) > 0 {
		if k, err := missing(ctx, tx, looked, want, "SELECT "+strings.Join(lookups, ", "), args...); err != nil || k != nil {
			return 0, checkFailed(ctx, tx, table, table, k, err)
		}
	}
	if len(joined) > 0 {
		// A table just filled has no statistics: without them the planner
		// would probe the keys row by row.
		if _, err := tx.Exec(ctx, "ANALYZE "+table); err != nil {
			return 0, fmt.Errorf("analyze %s: %w", table, err)
		}
		none := make([]int64, len(joined))
		if k, err := missing(ctx, tx, joined, none, "SELECT "+strings.Join(counts, ", ")+" FROM ONLY "+table+" f "+
			strings.Join(joins, " ")); err != nil || k != nil {
			return 0, checkFailed(ctx, tx, table, table, k, err)
		}
	}
	return len(looked), nil
}

// missing runs query, which counts one number per key of keys, and
// returns the first key whose count is not what want says.
func missing(ctx context.Context, tx pgx.Tx, keys []foreignKey, want []int64, query string, args ...any) (*foreignKey, error) {
	got := make([]int64, len(keys))
	dst := make([]any, len(keys))
	for i := range got {
		dst[i] = &got[i]
	}
	if err := tx.QueryRow(ctx, query, args...).Scan(dst...); err != nil {
		return nil, err
	}
	for i := range keys {
		if got[i] != want[i] {
			return &keys[i], nil
		}
	}
	return nil, nil
}

// checkFailed is the error of a check of the rows newRows of table that
// failed with err or found key k broken.
func checkFailed(ctx context.Context, tx pgx.Tx, table, newRows string, k *foreignKey, err error) error {
	if err != nil {
		return fmt.Errorf("check the foreign keys of %s: %w", table, err)
	}
	return k.violation(ctx, tx, table, newRows)
}

// Values collected on the way. Most foreign keys of a fact table reference
// small dimensions (dates, currencies, staff), whose keys take few
// distinct values in a batch. While a big batch is copied straight into an
// empty table, the encoder collects each such column's distinct values,
// and the check looks up those few instead of joining every row. A column
// with more than settings.maxKeyValues distinct values (transactions) is
// left to the join.

// valueSet is the distinct values of one column of a type with a
// KeyArray (an int or date column), as the encoder has them (a date as
// days since 1970-01-01); full once there were more than most, when it
// keeps none.
type valueSet struct {
	m     map[int64]struct{}
	most  int
	array func(int8s string) string // the column type's KeyArray
	full  bool
}

// add adds v to the set.
func (s *valueSet) add(v int64) {
	if s.full {
		return
	}
	if _, ok := s.m[v]; ok {
		return
	}
	if len(s.m) == s.most {
		s.m, s.full = nil, true
		return
	}
	s.m[v] = struct{}{}
}

// param is the SQL of the set's values as parameter $n (see list), an
// array of the column's warehouse values: an int8 array, or a date array.
func (s *valueSet) param(n int) string {
	return s.array(fmt.Sprintf("$%d::int8[]", n))
}

// list is the set's values.
func (s *valueSet) list() []int64 {
	out := make([]int64, 0, len(s.m))
	for v := range s.m {
		out = append(out, v)
	}
	return out
}

// keyValues is the values of a fact table's foreign-key columns, collected
// as a batch is copied; complete once the copy went through, when those
// rows are the table's.
type keyValues struct {
	by       map[string]*valueSet // column name to its values
	complete bool
}

// newKeyValues collects the values of the columns of table t that keys
// use, of a type with a KeyArray (int and date), at most most of each.
func newKeyValues(t *table, keys []foreignKey, most int) *keyValues {
	kv := &keyValues{by: map[string]*valueSet{}}
	for _, c := range t.dataCols() {
		used := slices.ContainsFunc(keys, func(k foreignKey) bool { return k.column == c.name })
		if used && c.typ.KeyArray != nil {
			kv.by[c.name] = &valueSet{m: map[int64]struct{}{}, most: most, array: c.typ.KeyArray}
		}
	}
	return kv
}

// sets is the sets to fill, by column; none for a nil kv.
func (kv *keyValues) sets() map[string]*valueSet {
	if kv == nil {
		return nil
	}
	return kv.by
}

// all is every value of column in the table, or nil when they were not
// all collected.
func (kv *keyValues) all(column string) *valueSet {
	if kv == nil || !kv.complete || kv.by[column] == nil || kv.by[column].full {
		return nil
	}
	return kv.by[column]
}

// allOf reports whether kv holds every value of each key's column.
func (kv *keyValues) allOf(keys []foreignKey) bool {
	return !slices.ContainsFunc(keys, func(k foreignKey) bool { return kv.all(k.column) == nil })
}

// lockTables takes the tables the foreign keys reference in SHARE mode if
// no one holds a lock that conflicts (another writer, a vacuum), reporting
// whether it did.
func (rc *refCheck) lockTables(ctx context.Context, tx pgx.Tx) (bool, error) {
	var refs []string
	for _, k := range rc.keys {
		if !slices.Contains(refs, k.ref) {
			refs = append(refs, k.ref)
		}
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT sandstone_lock"); err != nil {
		return false, err
	}
	_, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(refs, ", ")+" IN SHARE MODE NOWAIT")
	if isLockNotAvailable(err) || isInsufficientPrivilege(err) {
		_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT sandstone_lock")
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("lock the referenced tables: %w", err)
	}
	_, err = tx.Exec(ctx, "RELEASE SAVEPOINT sandstone_lock")
	return err == nil, err
}

// violation is the error of foreign key k, which some row of newRows
// breaks, in PostgreSQL's words, naming one value that is missing.
func (k foreignKey) violation(ctx context.Context, tx pgx.Tx, table, newRows string) error {
	var missing string
	err := tx.QueryRow(ctx, "SELECT n."+q(k.column)+"::text FROM "+newRows+" n WHERE n."+q(k.column)+
		" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ONLY "+k.ref+" r WHERE r."+q(k.refCol)+" = n."+q(k.column)+") LIMIT 1").Scan(&missing)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check foreign key %s: %w", k.name, err)
	}
	detail := fmt.Sprintf("Key (%s)=(%s) is not present in table %s.", k.column, missing, k.ref)
	if errors.Is(err, pgx.ErrNoRows) { // a row the check found by its values, not by its id
		detail = fmt.Sprintf("Key (%s) has a value not present in table %s.", k.column, k.ref)
	}
	return fmt.Errorf("%w: %s", &pgconn.PgError{Severity: "ERROR", Code: "23503", ConstraintName: k.name, Detail: detail,
		Message: fmt.Sprintf("insert or update on table %s violates foreign key constraint %s", table, q(k.name))}, detail)
}

// isLockNotAvailable reports whether err is PostgreSQL's lock_not_available.
func isLockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// isInsufficientPrivilege reports whether err is PostgreSQL's
// insufficient_privilege.
func isInsufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}
