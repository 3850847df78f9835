package warehouse

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// Sandstone's own tables, beside the warehouse tables in the same schema.
const (
	// migrationsTable records the schema migrations applied, one row each.
	migrationsTable = "sandstone_migrations"
	// ledgerTable records every batch loaded, one row each, written in the
	// batch's own transaction: a batch is loaded exactly when its row exists.
	ledgerTable = "sandstone_loads"
	// deletionsTable records the source rows an audit or capture found
	// deleted: the dimension and fact rows stay, and queries can exclude
	// these ids. An id inserted again (revived) leaves it.
	deletionsTable = "sandstone_deletions"
	// correctionsTable records the fact rows a capture batch corrected,
	// with their values before and after.
	correctionsTable = "sandstone_corrections"
)

// migration is one versioned change of the warehouse schema: fixed SQL,
// embedded from migrations/NNNNNN_title.up.sql (golang-migrate's naming),
// whose first line names it ("-- migration: ..."), as sandstone_migrations
// records it. Migrations run in version order, each once, in one
// transaction with the row that records it and with the check of the
// result, so that a failure leaves the warehouse as it was.
//
// To change the schema, add a file with the next version number; never edit
// one that has shipped. Its SQL runs with a search_path of pg_catalog and
// pg_temp only, so every warehouse name must be qualified: {{schema}} stands
// for the schema's quoted name, and the setting sandstone.schema holds the
// name itself (for PL/pgSQL).
type migration struct {
	version int
	name    string
	sql     string
}

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

var migrations = mustMigrations(migrationFiles)

// schemaPlaceholder is what a migration's SQL writes for the quoted schema name.
const schemaPlaceholder = "{{schema}}"

// namePrefix starts the first line of a migration file, which names it.
const namePrefix = "-- migration: "

// mustMigrations reads the migration files, numbered 1, 2, 3 ... without a
// gap. A file that does not fit is a programming error: it panics at
// start-up (and in every test).
func mustMigrations(fsys fs.FS) []migration {
	ms, err := readMigrations(fsys)
	if err != nil {
		panic("warehouse: " + err.Error())
	}
	return ms
}

func readMigrations(fsys fs.FS) ([]migration, error) {
	paths, err := fs.Glob(fsys, "migrations/*.up.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	out := make([]migration, 0, len(paths))
	for _, p := range paths {
		base := path.Base(p)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 6 {
			return nil, fmt.Errorf("migration %s: want NNNNNN_title.up.sql", base)
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("migration %s: want version %d", base, len(out)+1)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("migration %d: %w", v, err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		name, ok := strings.CutPrefix(first, namePrefix)
		if !ok || name == "" {
			return nil, fmt.Errorf("migration %s: the first line must be %q and its name", base, namePrefix)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations")
	}
	return out, nil
}

// apply runs the migration's SQL in schema s.
func (m migration) apply(ctx context.Context, tx pgx.Tx, s schema) error {
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('sandstone.schema', $1, true)", string(s)); err != nil {
		return err
	}
	// No arguments: the simple protocol, which runs every statement of the file.
	_, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, schemaPlaceholder, q(string(s))))
	return err
}

// tableExists reports whether schema s has a table called name.
func tableExists(ctx context.Context, db querier, s schema, name string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))`, string(s), name).Scan(&ok)
	return ok, err
}

// prepare brings the warehouse schema up to date and checks that every table
// has the columns load writes, then runs check, all in one transaction: when
// anything does not fit, nothing is written at all. It returns how to write
// each table.
func prepare(ctx context.Context, conn *pgx.Conn, s schema, log *slog.Logger, check func(pgx.Tx, *plan) error) (*plan, error) {
	tx, err := begin(ctx, conn, s)
	if err != nil {
		return nil, errkind.Wrap(errkind.WarehouseUnreachable, fmt.Errorf("prepare warehouse: %w", err))
	}
	defer func() { _ = tx.Rollback(ctx) }()
	done, err := migrateTo(ctx, tx, s, len(migrations))
	if err != nil {
		return nil, err
	}
	p, err := inspect(ctx, tx, s)
	if err != nil {
		return nil, err
	}
	if err := check(tx, p); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("prepare warehouse: %w", err))
	}
	done.tell(log, s) // once it took effect: a check that fails undoes it
	return p, nil
}

// migrated is what migrateTo did.
type migrated struct {
	created  bool // the schema
	applied  []migration
	prepared []string // the tables migration 1 found there and left as they were
}

// tell logs what was done to schema s.
func (d migrated) tell(log *slog.Logger, s schema) {
	if d.created {
		log.Info("created warehouse schema", "schema", string(s))
	}
	for _, m := range d.applied {
		log.Info("migrated warehouse", "schema", string(s), "version", m.version, "migration", m.name)
	}
	if len(d.prepared) > 0 {
		log.Warn("warehouse tables existed before the first migration: left as they are, without Sandstone's foreign keys",
			"schema", string(s), "tables", d.prepared)
	}
}

// migrateTo creates schema s and Sandstone's migrations table when missing,
// and applies the migrations after the schema's version up to version to,
// reporting what it did.
func migrateTo(ctx context.Context, tx pgx.Tx, s schema, to int) (done migrated, err error) {
	var schemaExists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
		string(s)).Scan(&schemaExists); err != nil {
		return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("prepare warehouse: %w", err))
	}
	if !schemaExists { // created only when missing: CREATE ... IF NOT EXISTS needs the privilege to create
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+q(string(s))); err != nil {
			return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("create schema %s: %w", q(string(s)), err))
		}
	}
	// Created only when missing, too: a role that may only write rows
	// can load into a warehouse its owner has migrated.
	exists, err := tableExists(ctx, tx, s, migrationsTable)
	if err != nil {
		return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("prepare warehouse: %w", err))
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE TABLE "+s.ident(migrationsTable)+` (
			version int PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("create %s: %w", migrationsTable, err))
		}
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s.ident(migrationsTable)).Scan(&version); err != nil {
		return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("read %s: %w", migrationsTable, err))
	}
	if version > len(migrations) {
		return done, errkind.Wrap(errkind.WarehouseSchemaMismatch, fmt.Errorf(
			"warehouse schema %s is at migration %d, newer than this sandstone knows (%d): upgrade sandstone",
			q(string(s)), version, len(migrations)))
	}
	for _, m := range migrations[version:max(to, version)] {
		if err := m.apply(ctx, tx, s); err != nil {
			return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("migration %d (%s): %w", m.version, m.name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+s.ident(migrationsTable)+" (version, name) VALUES ($1, $2)",
			m.version, m.name); err != nil {
			return done, errkind.Wrap(errkind.LoadFailed, fmt.Errorf("record migration %d: %w", m.version, err))
		}
		done.applied = append(done.applied, m)
		if m.version == 1 {
			done.prepared = preparedTables(ctx, tx)
		}
	}
	done.created = !schemaExists
	return done, nil
}

// preparedTables are the tables migration 1 found there already and left
// as they were (it records them in the setting sandstone.prepared): their
// columns are checked before every load, but they get no foreign keys from
// Sandstone.
func preparedTables(ctx context.Context, tx pgx.Tx) []string {
	var prepared string
	if tx.QueryRow(ctx, "SELECT coalesce(pg_catalog.current_setting('sandstone.prepared', true), '')").Scan(&prepared) != nil {
		return nil
	}
	var tables []string
	for _, t := range strings.Split(prepared, ",") {
		if t != "" && t != migrationsTable {
			tables = append(tables, t)
		}
	}
	return tables
}

func quoteAll(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = q(n)
	}
	return strings.Join(out, ", ")
}

// hasUniqueKey reports whether table has a unique index on exactly cols that
// INSERT ... ON CONFLICT can use (valid, immediate, no predicate or expression).
func hasUniqueKey(ctx context.Context, db querier, s schema, table string, cols []string) (bool, error) {
	rows, err := db.Query(ctx, `SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k
			JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid AND i.indimmediate
		  AND i.indpred IS NULL AND i.indexprs IS NULL`, string(s), table)
	if err != nil {
		return false, fmt.Errorf("unique keys of %s: %w", table, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return false, fmt.Errorf("unique keys of %s: %w", table, err)
	}
	want := slices.Sorted(slices.Values(cols))
	for _, k := range keys {
		slices.Sort(k)
		if slices.Equal(k, want) {
			return true, nil
		}
	}
	return false, nil
}

// plan says how load writes each table of this warehouse.
type plan struct {
	// keyed holds the tables with a unique key on their key, which
	// INSERT ... ON CONFLICT uses; the others (tables prepared by someone
	// else without one) are written with UPDATE and INSERT ... WHERE NOT EXISTS,
	// which is as safe under the warehouse lock.
	keyed map[string]bool
	// types are the column types of each table (column name to
	// pg_type.typname), which a binary COPY into the table must match.
	types map[string]map[string]string
	// lengths are the length limits of the limited text columns of each
	// table (varchar(n): column name to n), which checkLengths compares
	// with the longest values of the batches to load.
	lengths map[string]map[string]int
}

// dbColumn is a column as the catalogue describes it.
type dbColumn struct {
	name       string
	typ        string // pg_type.typname: int4, varchar, numeric, ...
	mod        int32  // atttypmod
	format     string // format_type: integer, numeric(10,2), ...
	notNull    bool
	hasDefault bool
	generated  bool
}

// inspect checks every warehouse table has each column load writes, with a
// type that holds its values, and that no other column stops an insert. It
// names every problem it finds, by table and column.
func inspect(ctx context.Context, db querier, s schema) (*plan, error) {
	p := &plan{keyed: map[string]bool{}, types: map[string]map[string]string{}, lengths: map[string]map[string]int{}}
	var problems []string
	for _, t := range tables {
		have, err := dbColumns(ctx, db, s, t.name)
		if err != nil {
			return nil, errkind.Wrap(errkind.LoadFailed, err)
		}
		if len(have) == 0 {
			problems = append(problems, fmt.Sprintf("table %s is missing", t.name))
			continue
		}
		p.types[t.name] = map[string]string{}
		p.lengths[t.name] = map[string]int{}
		for _, d := range have {
			p.types[t.name][d.name] = d.typ
			if (d.typ == "varchar" || d.typ == "bpchar") && d.mod >= 4 {
				p.lengths[t.name][d.name] = int(d.mod - 4) // atttypmod is the length + 4
			}
		}
		for _, c := range t.cols {
			d, ok := have[c.name]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s.%s is missing (want %s)", t.name, c.name, c.typ.DDL))
				continue
			}
			delete(have, c.name)
			if why := fits(c, d); why != "" {
				problems = append(problems, fmt.Sprintf("%s.%s %s", t.name, c.name, why))
			}
		}
		for _, d := range sortedColumns(have) {
			if d.notNull && !d.hasDefault {
				problems = append(problems, fmt.Sprintf("%s.%s is NOT NULL without a default, and load does not write it",
					t.name, d.name))
			}
		}
		if p.keyed[t.name], err = hasUniqueKey(ctx, db, s, t.name, t.key); err != nil {
			return nil, errkind.Wrap(errkind.LoadFailed, err)
		}
	}
	if len(problems) > 0 {
		return nil, errkind.Wrap(errkind.WarehouseSchemaMismatch, fmt.Errorf(
			"warehouse schema %s does not fit: %s", q(string(s)), strings.Join(problems, "; ")))
	}
	return p, nil
}

func sortedColumns(m map[string]dbColumn) []dbColumn {
	out := make([]dbColumn, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b dbColumn) int { return strings.Compare(a.name, b.name) })
	return out
}

func dbColumns(ctx context.Context, db querier, s schema, table string) (map[string]dbColumn, error) {
	rows, err := db.Query(ctx, `SELECT a.attname::text, t.typname::text, a.atttypmod,
			pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
			a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		  AND a.attnum > 0 AND NOT a.attisdropped`, string(s), table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	out := map[string]dbColumn{}
	var d dbColumn
	_, err = pgx.ForEachRow(rows, []any{&d.name, &d.typ, &d.mod, &d.format, &d.notNull, &d.hasDefault, &d.generated},
		func() error {
			out[d.name] = d
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	return out, nil
}

// fits says why the database column d cannot take column c's values, or "".
func fits(c column, d dbColumn) string {
	switch {
	case d.generated:
		return "is a generated column"
	case !c.typ.Fits(d.typ, d.mod):
		return fmt.Sprintf("is %s, want %s", d.format, cmp.Or(c.typ.Want, c.typ.DDL))
	case c.typ == star.Serial && !d.hasDefault:
		return "has no default: the warehouse must assign fact ids (serial)"
	case c.nullable && d.notNull:
		return "is NOT NULL, but its values may be NULL"
	}
	return ""
}
