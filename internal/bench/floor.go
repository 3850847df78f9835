package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// factSerials are the fact tables and their warehouse-assigned ids.
var factSerials = map[string]string{
	"fact_sales_order":    "sales_record_id",
	"fact_purchase_order": "purchase_record_id",
	"fact_payment":        "payment_record_id",
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
		data := map[string]*bytes.Buffer{}
		cols := map[string]string{}
		for table, id := range factSerials {
			var list string
			if err := conn.QueryRow(ctx, `SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
				FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name <> $3`,
				schema, table, id).Scan(&list); err != nil {
				return err
			}
			cols[table] = list
			data[table] = &bytes.Buffer{}
			if _, err := conn.PgConn().CopyTo(ctx, data[table], fmt.Sprintf("COPY (SELECT %s FROM %s WHERE %s > %d) TO STDOUT",
				cols[table], pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{id}.Sanitize(), before[table])); err != nil {
				return err
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		for table, id := range factSerials {
			if _, err := tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s > %d",
				pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{id}.Sanitize(), before[table])); err != nil {
				return err
			}
		}
		for table := range factSerials {
			start := time.Now()
			tag, err := tx.Conn().PgConn().CopyFrom(ctx, data[table], "COPY "+pgx.Identifier{schema, table}.Sanitize()+
				" ("+cols[table]+") FROM STDIN")
			if err != nil {
				return err
			}
			seconds += time.Since(start).Seconds()
			rows += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: the floor: %w", err)
	}
	return seconds, rows, nil
}

// loadBatchSeconds is the seconds the ledger of schema records for its
// newest batch: load's own time for it, from reading its manifest to
// commit, without the process's start.
func loadBatchSeconds(ctx context.Context, url, schema string) (float64, error) {
	var s float64
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT coalesce((SELECT seconds FROM "+pgx.Identifier{schema, "sandstone_loads"}.Sanitize()+
			" ORDER BY sequence DESC LIMIT 1), 0)").Scan(&s)
	})
	if err != nil {
		return 0, fmt.Errorf("bench: the load ledger: %w", err)
	}
	return s, nil
}
