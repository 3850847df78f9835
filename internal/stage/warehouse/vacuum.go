package warehouse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// A table that a load has just filled has no visibility map and no
// statistics: until autovacuum reaches it (minutes for a big table, as it
// throttles itself), an index-only scan fetches every row from the heap and
// the planner guesses. The next batch's foreign-key check pays for it: at
// 4M sales orders, 48,000 transaction keys took 0.29 s to check instead of
// 0.07 s (docs/benchmarks.md). So a load that at least doubled a table
// (an initial load, a backfill) vacuums and analyzes it once its batches
// have committed, as one would after restoring a dump. Steady cycles,
// which add a small part of a table, leave it to autovacuum.

// grown returns, in name order, the tables that batches at least doubled:
// those whose rows written are at least half the rows PostgreSQL estimates
// the table holds now (or that it has never estimated).
func (l *loader) grown(ctx context.Context, batches []BatchResult) ([]string, error) {
	written := map[string]int64{}
	for _, b := range batches {
		for table, n := range b.Rows {
			written[table] += n
		}
	}
	rows, err := l.conn.Query(ctx, `SELECT c.relname::text, c.reltuples FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY ($2)`,
		string(l.s), slices.Collect(maps.Keys(written)))
	if err != nil {
		return nil, fmt.Errorf("sizes of the tables written: %w", err)
	}
	var tables []string
	var table string
	var tuples float64
	if _, err := pgx.ForEachRow(rows, []any{&table, &tuples}, func() error {
		if n := written[table]; n > 0 && (tuples < 0 || float64(2*n) >= tuples) {
			tables = append(tables, table)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sizes of the tables written: %w", err)
	}
	slices.Sort(tables)
	return tables, nil
}

// vacuumGrown runs VACUUM (ANALYZE) on each table that batches at least
// doubled, returning the tables it vacuumed. The batches are committed
// already, so a vacuum that fails is logged and the others go on; only a
// cancelled context stops it, with its error.
func (l *loader) vacuumGrown(ctx context.Context, batches []BatchResult) ([]string, error) {
	tables, err := l.grown(ctx, batches)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, table := range tables {
		start := time.Now()
		if _, err := l.conn.Exec(ctx, "VACUUM (ANALYZE) "+l.s.ident(table)); err != nil {
			if ctx.Err() != nil {
				return done, errors.Join(ctx.Err(), err)
			}
			l.log.Warn("vacuum after load failed; autovacuum will see to it", "table", table, "error", err)
			continue
		}
		done = append(done, table)
		l.log.Info("vacuumed a table the load filled", "table", table, "seconds", time.Since(start).Seconds())
	}
	return done, nil
}
