package ingest

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// scanAdviceRows is the size from which a source table read whole on every
// run is worth an index on last_updated: below it, the whole table takes a
// few milliseconds to read (Options.ScanAdviceRows).
const scanAdviceRows = 100_000

// unindexed returns the source tables that every run reads whole: those of
// at least minRows rows (the planner's estimate, the value) with no
// valid index that leads with last_updated; nil when it cannot tell. totesys
// ships none; with a B-tree (or BRIN) index there, a run reads the changed
// rows alone, and the incremental cycle costs what the change costs
// (docs/benchmarks.md).
func unindexed(ctx context.Context, tx pgx.Tx, minRows int64, log *slog.Logger) map[string]int64 {
	out, err := lookupUnindexed(ctx, tx, minRows)
	if err != nil { // only advice: the run goes on without it
		log.Debug("could not look for indexes on last_updated", "error", err)
		return nil
	}
	return out
}

func lookupUnindexed(ctx context.Context, tx pgx.Tx, minRows int64) (map[string]int64, error) {
	names := make([]string, len(totesys.Tables))
	for i, t := range totesys.Tables {
		names[i] = pgx.Identifier{t.Name}.Sanitize()
	}
	// Under a savepoint, so that should the lookup fail the snapshot goes on;
	// released once done, so that the snapshot may then be exported.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sp.Rollback(ctx) }()
	rows, err := sp.Query(ctx, `SELECT c.relname::text, c.reltuples::bigint
		FROM pg_catalog.unnest($1::text[]) AS t (name)
		JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(t.name)
		WHERE c.reltuples >= $2 AND NOT EXISTS (
			SELECT FROM pg_catalog.pg_index i
			JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
			JOIN pg_catalog.pg_am am ON am.oid = ic.relam
			WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL
			  AND a.attname = $3 AND am.amname IN ('btree', 'brin'))`,
		names, minRows, totesys.LastUpdated)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var name string
	var n int64
	if _, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error {
		out[name] = n
		return nil
	}); err != nil {
		return nil, err
	}
	return out, sp.Commit(ctx)
}

// IndexAdvice is the statement that gives a source table the index on
// last_updated that lets each run read only its changes.
func IndexAdvice(table string) string {
	return "CREATE INDEX CONCURRENTLY ON " + pgx.Identifier{table}.Sanitize() + " (" + pgx.Identifier{totesys.LastUpdated}.Sanitize() + ")"
}

// adviseIndex records in ts whether the table is read whole on every run
// (whole as unindexed returns it; when it is nil, what was known stays),
// and reports whether that is new.
func (r *tableRun) adviseIndex(ts *TableState, whole map[string]int64) (news bool) {
	var was int64
	if r.prev != nil {
		was = r.prev.Unindexed
	}
	if whole == nil {
		ts.Unindexed = was
		return false
	}
	ts.Unindexed = whole[r.table.Name]
	return ts.Unindexed > 0 && was == 0
}

// adviseIndexes says, once the batch that records it has committed, which
// tables every run now reads whole, with the statement that would end it.
func adviseIndexes(log *slog.Logger, tables []string, st State) {
	for _, t := range tables {
		log.Info(t+" has no index on last_updated: every run reads all of it; an index makes a run read only the changed rows",
			"table", t, "rows", st.Tables[t].Unindexed, "advice", IndexAdvice(t))
	}
}
