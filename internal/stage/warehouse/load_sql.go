package warehouse

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// apply builds the set-based SQL that moves a staging table into its table.
type apply struct {
	t     *table
	s     schema
	stage string // quoted staging table
	keyed bool   // the table has a unique key on t.key
	// keys, when set, collects the values of the foreign-key columns as
	// the rows are copied straight into the table (see keyValues).
	keys *keyValues
	// fix is set for a fact table of a capture batch (see correctFacts).
	fix *correcting
}

// correcting is a capture batch's corrections of one fact table: the
// batch, recorded with each, and how many rows changed.
type correcting struct {
	batch     string
	corrected int64
}

// selectList is the warehouse values of the staged row alias x.
func (a apply) selectList(x string) string {
	var out []string
	for _, c := range a.t.dataCols() {
		out = append(out, c.typ.FromStage(x+"."+q(c.name))+" AS "+q(c.name))
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
// holds already (the unique version key, or a NOT EXISTS where there is
// none). Of a version twice in a capture batch only the last is inserted.
func (a apply) insertFacts(ctx context.Context, tx pgx.Tx) (int64, error) {
	target := a.s.ident(a.t.name)
	var sql string
	switch {
	case a.keyed && a.fix != nil:
		sql = "INSERT INTO " + target + " (" + a.colList() + ") SELECT * FROM " + a.latest() +
			" x ON CONFLICT (" + quoteAll(a.t.key) + ") DO NOTHING"
	case a.keyed:
		sql = "INSERT INTO " + target + " (" + a.colList() + ") SELECT " + a.selectList("x") + " FROM " + a.stage +
			" x ON CONFLICT (" + quoteAll(a.t.key) + ") DO NOTHING"
	default:
		sql = "INSERT INTO " + target + " (" + a.colList() + ") SELECT * FROM " + a.latest() +
			" x WHERE NOT EXISTS (SELECT 1 FROM " + target + " w WHERE " + a.sameKey("w", "x") + ")"
	}
	tag, err := tx.Exec(ctx, sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// correctFacts applies a capture batch's staged fact versions, returning
// the rows appended. Of a version key twice in the batch the last row (in
// commit order, the Parquet's) counts. A version the table holds already
// is a correction: when its values differ, the row takes the new ones, and
// sandstone_corrections records which row, its source id, the batch, when,
// and the row's values before and after, in the batch's transaction. The
// other versions are appended (see insertFacts).
func (a apply) correctFacts(ctx context.Context, tx pgx.Tx) (int64, error) {
	target := a.s.ident(a.t.name)
	nonKey := a.nonKey()
	set := make([]string, len(nonKey))
	for i, c := range nonKey {
		set[i] = c + " = x." + c
	}
	differs := a.sameKey("w", "x") + " AND (" + prefixed("w", nonKey) + ") IS DISTINCT FROM (" + prefixed("x", nonKey) + ")"
	serial, source := "w."+q(a.t.serial), "w."+q(a.t.key[0])
	// The statements of one WITH see one snapshot: old reads the rows as
	// they were before the UPDATE changes them.
	tag, err := tx.Exec(ctx, "WITH x AS MATERIALIZED "+a.latest()+
		", old AS (SELECT "+serial+" AS id, "+source+" AS source_id, "+a.values("w")+" AS v FROM "+target+" w JOIN x ON "+differs+")"+
		", new AS (UPDATE "+target+" w SET "+strings.Join(set, ", ")+" FROM x WHERE "+differs+
		" RETURNING "+serial+" AS id, "+a.values("w")+" AS v)"+
		" INSERT INTO "+a.s.ident(correctionsTable)+
		" (fact_table, record_id, source_id, batch, corrected_at, old_values, new_values)"+
		" SELECT $1, old.id, old.source_id, $2, pg_catalog.now(), old.v, new.v FROM old JOIN new USING (id)",
		a.t.name, a.fix.batch)
	if err != nil {
		return 0, fmt.Errorf("correct %s: %w", a.t.name, err)
	}
	a.fix.corrected += tag.RowsAffected()
	return a.insertFacts(ctx, tx)
}

// values is the data columns of row alias w as one jsonb object.
func (a apply) values(w string) string {
	var args []string
	for _, c := range a.t.dataCols() {
		args = append(args, "'"+c.name+"', "+w+"."+q(c.name))
	}
	return "pg_catalog.jsonb_build_object(" + strings.Join(args, ", ") + ")"
}
