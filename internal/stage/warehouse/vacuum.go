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

// grown returns, in name order, the tables that batches at least doubled
// and the load role owns: those whose rows written are at least half the
// rows PostgreSQL estimates the table holds now (or that it has never
// estimated).
func (l *loader) grown(ctx context.Context, batches []BatchResult) ([]string, error) {
	written := map[string]int64{}
	for _, b := range batches {
		for table, n := range b.Rows {
			written[table] += n
		}
	}
	rows, err := l.conn.Query(ctx, `SELECT c.relname::text, c.reltuples FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY ($2)
		  AND pg_catalog.pg_has_role(c.relowner, 'USAGE')`, // only an owner may vacuum
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

// vacuumGrown vacuums, then analyzes, each table that batches at least
// doubled, returning the tables it vacuumed. The batches are committed
// already, so a table that fails is logged and the others go on; only a
// cancelled context stops it, with its error.
func (l *loader) vacuumGrown(ctx context.Context, batches []BatchResult) ([]string, error) {
	tables, err := l.grown(ctx, batches)
	if err != nil || len(tables) == 0 {
		return nil, err
	}
	start := time.Now()
	if err := l.flushCommits(ctx); err != nil {
		return nil, err
	}
	// Every vacuum before any analyze: an analyze commits (its statistics)
	// and, under synchronous_commit = off, the vacuums after it could not
	// mark rows whose commits share its status page's flush point.
	vacuumed, err := l.each(ctx, "VACUUM", tables)
	if err != nil {
		return vacuumed, err
	}
	if _, err := l.each(ctx, "ANALYZE", vacuumed); err != nil {
		return vacuumed, err
	}
	l.log.Info("vacuumed and analyzed the tables the load filled", "tables", vacuumed, "seconds", time.Since(start).Seconds())
	return vacuumed, nil
}

// each runs command (VACUUM or ANALYZE) on each table, returning those it
// ran on; one that fails is logged and left to autovacuum.
func (l *loader) each(ctx context.Context, command string, tables []string) ([]string, error) {
	var done []string
	for _, table := range tables {
		if _, err := l.conn.Exec(ctx, command+" "+l.s.ident(table)); err != nil {
			if ctx.Err() != nil {
				return done, errors.Join(ctx.Err(), err)
			}
			l.log.Warn(command+" after load failed; autovacuum will see to it", "table", table, "error", err)
			continue
		}
		done = append(done, table)
	}
	return done, nil
}

// flushCommits returns once the batches' commits are on disk, or after
// flushWait. VACUUM marks a row visible to all only then: under
// synchronous_commit = off the server flushes a commit up to three
// wal_writer_delays (600 ms by default) later, and a vacuum before it
// would leave the table as it found it. (A commit of its own that waits
// for its flush would write WAL for nothing.) Another session's commit
// that is not flushed yet can still keep some rows unmarked (their commit
// status shares its flush point): autovacuum marks them later.
func (l *loader) flushCommits(ctx context.Context) error {
	var end string
	if err := l.conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text").Scan(&end); err != nil {
		return fmt.Errorf("the WAL's end: %w", err)
	}
	for deadline := time.Now().Add(flushWait); ; {
		var flushed bool
		if err := l.conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_flush_lsn() >= $1::pg_lsn", end).Scan(&flushed); err != nil {
			return fmt.Errorf("the WAL flushed: %w", err)
		}
		if flushed || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// flushWait bounds flushCommits' wait: past it, the vacuum does what it
// can.
const flushWait = 2 * time.Second
