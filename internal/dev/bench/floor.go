package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// factSerials are the fact tables and their warehouse-assigned ids, as
// star.Tables declares them.
var factSerials = serialsOf(star.Tables)

// serialsOf maps each fact table of ts to its serial id column.
func serialsOf(ts []star.Table) map[string]string {
	out := map[string]string{}
	for _, t := range ts {
		if t.Serial != "" {
			out[t.Name] = t.Serial
		}
	}
	return out
}

// maxSerials reads the newest serial id of every fact table of schema.
func maxSerials(ctx context.Context, url, schema string) (map[string]int64, error) {
	out := map[string]int64{}
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		for table, id := range factSerials {
			var n int64
			if err := conn.QueryRow(ctx, "SELECT coalesce(max("+pgx.Identifier{id}.Sanitize()+"), 0) FROM "+
				pgx.Identifier{schema, table}.Sanitize()).Scan(&n); err != nil {
				return err
			}
			out[table] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: fact ids: %w", err)
	}
	return out, nil
}

// measureFloor times the floor of an incremental load: the fact rows it
// wrote (those past the ids before it), written again by PostgreSQL alone,
// COPY (text) into the same tables with every key and foreign key, which
// PostgreSQL checks row by row, in one transaction, and nothing else. The
// rows are taken out first in the same transaction, which is rolled back:
// the warehouse is left as it was. It returns the seconds of the COPYs and
// the rows they wrote.
func measureFloor(ctx context.Context, url, schema string, before map[string]int64) (float64, int64, error) {
	var seconds float64
	var rows int64
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		fr, err := readFactRows(ctx, conn, schema, before, "text", "")
		if err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for table, id := range factSerials {
				if _, err := tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s > %d",
					pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{id}.Sanitize(), before[table])); err != nil {
					return err
				}
			}
			if seconds, rows, err = fr.copyIn(ctx, tx, schema); err != nil {
				return err
			}
			return errRollback
		})
	})
	if err != nil && !errors.Is(err, errRollback) {
		return 0, 0, fmt.Errorf("bench: the floor: %w", err)
	}
	return seconds, rows, nil
}

// errRollback ends a transaction that only measured.
var errRollback = errors.New("rolled back")

// factRows are an incremental load's fact rows, read back per fact table
// as COPY data in format ("text" or "binary"), with the columns they fill.
type factRows struct {
	format string
	data   map[string]*bytes.Buffer
	cols   map[string]string
}

// readFactRows reads back, per fact table of schema, the rows past the
// serial ids before: every column but the serial, and shift, when not "",
// a date column whose value is read a day later.
func readFactRows(ctx context.Context, conn *pgx.Conn, schema string, before map[string]int64, format, shift string) (factRows, error) {
	fr := factRows{format: format, data: map[string]*bytes.Buffer{}, cols: map[string]string{}}
	for table, id := range factSerials {
		var names []string
		if err := conn.QueryRow(ctx, `SELECT array_agg(column_name::text ORDER BY ordinal_position)
			FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name <> $3`,
			schema, table, id).Scan(&names); err != nil {
			return fr, err
		}
		exprs := make([]string, len(names))
		for i, n := range names {
			names[i] = pgx.Identifier{n}.Sanitize()
			exprs[i] = names[i]
			if n == shift {
				exprs[i] += " + 1"
			}
		}
		fr.cols[table], fr.data[table] = strings.Join(names, ", "), &bytes.Buffer{}
		if _, err := conn.PgConn().CopyTo(ctx, fr.data[table], fmt.Sprintf("COPY (SELECT %s FROM %s WHERE %s > %d) TO STDOUT (FORMAT %s)",
			strings.Join(exprs, ", "), pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{id}.Sanitize(), before[table], format)); err != nil {
			return fr, err
		}
	}
	return fr, nil
}

// copyIn writes the rows into the fact tables of schema in tx, returning
// the seconds of the COPYs and the rows they wrote.
func (fr factRows) copyIn(ctx context.Context, tx pgx.Tx, schema string) (float64, int64, error) {
	var seconds float64
	var rows int64
	for table := range factSerials {
		start := time.Now()
		tag, err := tx.Conn().PgConn().CopyFrom(ctx, fr.data[table], "COPY "+pgx.Identifier{schema, table}.Sanitize()+
			" ("+fr.cols[table]+") FROM STDIN (FORMAT "+fr.format+")")
		if err != nil {
			return 0, 0, err
		}
		seconds += time.Since(start).Seconds()
		rows += tag.RowsAffected()
	}
	return seconds, rows, nil
}

// loadBatchSeconds is the seconds the ledger of schema records for its
// newest batch: load's own time for it, from reading its manifest to
// commit, without the process's start.
func loadBatchSeconds(ctx context.Context, url, schema string) (float64, error) {
	var s float64
	err := withWarehouse(ctx, url, schema, func(wh *warehouse.Warehouse) error {
		last, err := wh.LastLoad(ctx)
		s = last.Seconds
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("bench: the load ledger: %w", err)
	}
	return s, nil
}

// windows are where an incremental ingest's read of each source table
// starts (exclusive): the rows it must read, as the ingestion bucket's
// newest state says. A table without one is read whole.
type windows map[string]time.Time

// windowsOf reads the windows of the next ingest from the ingestion
// bucket at bucketURL.
func windowsOf(ctx context.Context, bucketURL string, lookback time.Duration) (windows, error) {
	b, err := lake.Open(ctx, bucketURL)
	if err != nil {
		return nil, fmt.Errorf("bench: the ingestion bucket: %w", err)
	}
	_, st, err := ingest.LoadState(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("bench: the ingest state: %w", err)
	}
	w := windows{}
	for _, t := range totesys.Tables {
		if start, ok := st.NextWindow(t.Name, lookback); ok {
			w[t.Name] = start
		}
	}
	return w, nil
}

// measureReadFloor times the floor of an incremental ingest: PostgreSQL
// alone sending the rows ingest must read, every source table's rows
// stamped after its window's start (w), in one snapshot opened as ingest
// opens it (ingest.OpenSnapshot: read-only, in UTC) over one connection,
// each row received and dropped undecoded. It returns the seconds, from
// the snapshot's start, and the rows.
func measureReadFloor(ctx context.Context, url string, w windows) (float64, int64, error) {
	tx, _, closeTx, err := ingest.OpenSnapshot(ctx, url)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: the read floor: %w", err)
	}
	defer closeTx()
	var rows int64
	start := time.Now()
	for _, t := range totesys.Tables {
		sql := "SELECT * FROM " + pgx.Identifier{t.Name}.Sanitize()
		args := []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}}
		if from, ok := w[t.Name]; ok {
			sql += " WHERE " + pgx.Identifier{totesys.LastUpdated}.Sanitize() + " > $1"
			args = append(args, from)
		}
		rs, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: the read floor: %s: %w", t.Name, err)
		}
		for rs.Next() {
			rows++
		}
		if err := rs.Err(); err != nil {
			return 0, 0, fmt.Errorf("bench: the read floor: %s: %w", t.Name, err)
		}
	}
	return time.Since(start).Seconds(), rows, nil
}

// measureWriteFloor times the floor of writing an incremental load's fact
// rows (those past the serial ids before it): PostgreSQL alone taking them
// again by binary COPY into the same tables, every index maintained and
// every unique key checked, the foreign keys not (their triggers off, as
// session_replication_role = replica has them), in one transaction that is
// rolled back. So that no version meets itself, each row goes in as its
// version a day later: still the newest, at the end of the version key, as
// the load's rows were. It returns the seconds of the COPYs.
func measureWriteFloor(ctx context.Context, url, schema string, before map[string]int64) (float64, error) {
	var seconds float64
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		fr, err := readFactRows(ctx, conn, schema, before, "binary", "last_updated_date")
		if err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
				return err
			}
			if seconds, _, err = fr.copyIn(ctx, tx, schema); err != nil {
				return err
			}
			return errRollback
		})
	})
	if err != nil && !errors.Is(err, errRollback) {
		return 0, fmt.Errorf("bench: the write floor: %w", err)
	}
	return seconds, nil
}
