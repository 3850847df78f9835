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
// a trigger: with fact_sales_order's nine, 1M rows took 37 s to insert here
// instead of 6 s (2 cores; BenchmarkLoad and TestBigLoad measure it). For
// a batch that is big beside the table, load drops the fact table's foreign
// keys inside the batch's transaction and adds them back after the insert,
// which checks every row in one join per key. Either way a row without its
// dimension fails the batch. The cost: during such a batch the fact table
// (and, briefly, its dimensions) is locked against readers. Only the table's
// owner may do this; a role that may only write rows checks row by row.
// Where the load role may turn the triggers off, a big batch into an empty
// table is checked set-based instead, with the keys kept (see
// bulkChecked), and this is the way left when that cannot be used.
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

// Serial ids numbered by load. Into an empty fact table copied without its
// keys, load numbers the rows itself rather than have PostgreSQL call
// nextval for each (5.8 s against 7.8–8.6 s to COPY 5.7M payments here):
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
