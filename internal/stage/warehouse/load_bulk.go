package warehouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bulk foreign-key checking. PostgreSQL checks a foreign key row by row, by
// a trigger, which for fact_sales_order's nine keys costs several times the
// insert itself (BenchmarkLoad and TestBigLoad measure it). For
// a batch that is big beside the table, load drops the fact table's foreign
// keys inside the batch's transaction and adds them back after the insert,
// which checks every row in one join per key. Either way a row without its
// dimension fails the batch. The cost: during such a batch the fact table
// (and, briefly, its dimensions) is locked against readers. Only the table's
// owner may do this; a role that may only write rows checks row by row.
// Where the load role may turn the triggers off, a big batch into an empty
// table is checked set-based instead, with the keys kept (see
// bulkChecked), and this is the way left when that cannot be used.
// Batches under settings.bulkCheckMinRows rows (50,000), or under
// 1/settings.bulkCheckRatio (1/20) of the table, are checked row by row.

// dropKeysForBulk drops the foreign keys of fact table a.t when a batch of
// rows is big enough to check them in bulk, returning them for restoreKeys.
func (l *loader) dropKeysForBulk(ctx context.Context, tx pgx.Tx, a apply, rows int64) ([]constraintDef, error) {
	if rows < l.set.bulkCheckMinRows {
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
	if !owner || float64(rows*l.set.bulkCheckRatio) < tuples {
		return nil, nil
	}
	return dropForeignKeys(ctx, tx, a.s, a.t.name)
}

// restoreKeys adds back the foreign keys dropKeysForBulk dropped, which
// checks every row of the table in one join per key.
func (l *loader) restoreKeys(ctx context.Context, tx pgx.Tx, a apply, fks []constraintDef) error {
	start := time.Now()
	if err := addConstraints(ctx, tx, fks); err != nil {
		return err
	}
	if len(fks) > 0 {
		l.log.Debug("foreign keys checked in bulk", "table", a.t.name, "keys", len(fks), "seconds", time.Since(start).Seconds())
	}
	return nil
}

// Bulk index building. Into an empty table, a big batch is copied without
// the table's primary key and unique version key, which are added back
// after the COPY: building an index by sorting costs far less than
// maintaining it row by row (docs/benchmarks.md). A dimension's key is
// what the facts' foreign keys reference, so those go
// too, and come back after the key, while every table that references the
// dimension is still empty (checking an empty table costs nothing). All of
// it happens under the direct COPY's savepoint, so when adding a key back
// finds a version twice in the batch, load rolls back to the savepoint
// (keys and all) and stages the batch, exactly as when the COPY itself is
// refused.

// dropIndexKeysForBulk drops the primary and unique keys of table a.t when
// a batch of rows is big and the table empty, returning them, and any
// foreign keys dropped with them, for addConstraints in that order. It
// leaves alone a table the load role does not own or may not build an
// index of (no CREATE on its schema), keys that the table is
// clustered on or replicated by, and keys that a fact table's foreign key
// references, or, for a dimension, that a table holding rows or owned by
// another role references.
func (l *loader) dropIndexKeysForBulk(ctx context.Context, tx pgx.Tx, a apply, rows int64) ([]constraintDef, error) {
	if rows < l.set.bulkCheckMinRows {
		return nil, nil
	}
	table := a.s.ident(a.t.name)
	var owner, empty bool
	// Only the table's owner may drop its keys, and building an index takes
	// the right to create in the schema too.
	if err := tx.QueryRow(ctx, `SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
			AND pg_catalog.has_schema_privilege(n.oid, 'CREATE')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, string(a.s), a.t.name).Scan(&owner); err != nil || !owner {
		return nil, err
	}
	if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+table+")").Scan(&empty); err != nil || !empty {
		return nil, err
	}
	var refs []constraintDef
	if a.t.role == dimension {
		var ok bool
		var err error
		if refs, ok, err = emptyReferences(ctx, tx, table); err != nil || !ok {
			return nil, err
		}
	}
	// Room to sort the keys of a big batch in memory (this transaction only).
	if _, err := tx.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
		return nil, err
	}
	if err := dropAll(ctx, tx, refs); err != nil {
		return nil, err
	}
	keys, err := dropConstraints(ctx, tx, a.s, a.t.name, `con.contype IN ('p', 'u')
		AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' AND f.conindid = con.conindid)
		AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = con.conindid
			AND (i.indisclustered OR i.indisreplident))`)
	return append(keys, refs...), err
}

// emptyReferences returns the foreign keys that reference table (quoted,
// qualified), and whether every table they belong to is empty and the
// load role's own.
func emptyReferences(ctx context.Context, tx pgx.Tx, table string) ([]constraintDef, bool, error) {
	rows, err := tx.Query(ctx, `SELECT n.nspname::text, c.relname::text, f.conname::text,
			pg_catalog.pg_get_constraintdef(f.oid), pg_catalog.pg_has_role(c.relowner, 'USAGE')
		FROM pg_catalog.pg_constraint f
		JOIN pg_catalog.pg_class c ON c.oid = f.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE f.contype = 'f' AND f.confrelid = $1::regclass ORDER BY 1, 2, 3`, table)
	if err != nil {
		return nil, false, fmt.Errorf("read the foreign keys referencing %s: %w", table, err)
	}
	var refs []constraintDef
	var ns, rel string
	var c constraintDef
	owned, all := false, true
	if _, err := pgx.ForEachRow(rows, []any{&ns, &rel, &c.name, &c.def, &owned}, func() error {
		c.table = pgx.Identifier{ns, rel}.Sanitize()
		refs = append(refs, c)
		all = all && owned
		return nil
	}); err != nil || !all {
		return nil, false, err
	}
	for i, r := range refs {
		if i > 0 && refs[i-1].table == r.table {
			continue
		}
		var empty bool
		if err := tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+r.table+")").Scan(&empty); err != nil || !empty {
			return nil, false, err
		}
	}
	return refs, true, nil
}

// Serial ids numbered by load. Into an empty fact table copied without its
// keys, load numbers the rows itself rather than have PostgreSQL call
// nextval for each (docs/benchmarks.md has what it saves):
// it takes the batch's ids from the column's sequence in one step, and the
// sequence goes on after them. The ALTER TABLE that dropped the keys holds
// the table against every other writer until the commit, and a key left in
// place, or built after the COPY, still refuses an id twice. A sequence
// does not roll back: a batch that fails or is staged after this leaves a
// gap in the ids, as a failed INSERT does.

// reserveIDs takes rows ids for fact table a.t from its serial column's
// sequence and returns them to number the COPY by; nil, to leave it to
// PostgreSQL, when the column has no sequence that counts up by one or the
// load role may not advance it.
func (l *loader) reserveIDs(ctx context.Context, tx pgx.Tx, a apply, rows int64) (*serialIDs, error) {
	var last int64
	err := tx.QueryRow(ctx, `SELECT pg_catalog.setval(s.seqrelid, pg_catalog.nextval(s.seqrelid) + $3 - 1)
		FROM pg_catalog.pg_sequence s
		WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence($1, $2)::regclass AND s.seqincrement = 1
		AND pg_catalog.has_sequence_privilege(s.seqrelid, 'USAGE, UPDATE')`,
		a.s.ident(a.t.name), a.t.serial, rows).Scan(&last)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("take %d ids for %s: %w", rows, a.t.name, err)
	}
	wide := l.plan.types[a.t.name][a.t.serial] == "int8"
	if !wide && last > math.MaxInt32 {
		return nil, fmt.Errorf("take %d ids for %s: %s reaches %d, past an integer column's range", rows, a.t.name, a.t.serial, last)
	}
	return &serialIDs{next: last - rows + 1, wide: wide}, nil
}

// constraintDef is a constraint (a foreign key, or the primary or a unique
// key) of table (quoted, qualified) as the catalogue defines it.
type constraintDef struct{ table, name, def string }

// addConstraints adds constraints cs back, in order: one ALTER TABLE for
// each run of them on the same table.
func addConstraints(ctx context.Context, tx pgx.Tx, cs []constraintDef) error {
	for len(cs) > 0 {
		n := 1
		for n < len(cs) && cs[n].table == cs[0].table {
			n++
		}
		adds := make([]string, n)
		for i, c := range cs[:n] {
			adds[i] = "ADD CONSTRAINT " + q(c.name) + " " + c.def
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE "+cs[0].table+" "+strings.Join(adds, ", ")); err != nil {
			return err
		}
		cs = cs[n:]
	}
	return nil
}

// dropAll drops constraints cs.
func dropAll(ctx context.Context, tx pgx.Tx, cs []constraintDef) error {
	for _, c := range cs {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+c.table+" DROP CONSTRAINT "+q(c.name)); err != nil {
			return err
		}
	}
	return nil
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
	c := constraintDef{table: s.ident(table)}
	if _, err := pgx.ForEachRow(rows, []any{&c.name, &c.def}, func() error {
		cs = append(cs, c)
		return nil
	}); err != nil {
		return nil, err
	}
	return cs, dropAll(ctx, tx, cs)
}
