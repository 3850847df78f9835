package warehouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/lake"
)

// LedgerEntry is one loaded batch, as the warehouse's load ledger records it.
type LedgerEntry struct {
	// Sequence is the batch's sequence number; 0 in LastLoad's answer when
	// nothing has been loaded.
	Sequence int64 `json:"sequence"`
	// Batch is the batch's id.
	Batch string `json:"batch"`
	// Rows is the rows written per warehouse table.
	Rows map[string]int64 `json:"rows"`
	// SourceNewest is the newest source last_updated among the batch's rows
	// (zero when the manifest did not say).
	SourceNewest time.Time `json:"source_newest,omitzero"`
	// LoadedAt is when the batch's load finished (the warehouse's clock).
	LoadedAt time.Time `json:"loaded_at"`
	// Seconds is how long the batch took to load.
	Seconds float64 `json:"seconds"`
	// Lag is LoadedAt - SourceNewest: how long the newest change of the batch
	// took to reach the warehouse (zero when SourceNewest is unknown).
	Lag time.Duration `json:"lag_ns,omitempty"`
}

// Counts returns the number of rows in each warehouse table of the schema
// (the dimensions and facts, not Sandstone's own tables). A table that does
// not exist is left out, so a warehouse never loaded gives an empty map.
func Counts(ctx context.Context, url, schemaName string) (map[string]int64, error) {
	out := map[string]int64{}
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		s := schemaOf(schemaName)
		rows, err := conn.Query(ctx, `SELECT c.relname::text FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')`, string(s), TableNames())
		if err != nil {
			return err
		}
		present, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		var parts []string
		var args []any
		for _, t := range TableNames() { // in load order
			if slices.Contains(present, t) {
				args = append(args, t)
				parts = append(parts, fmt.Sprintf("SELECT $%d::text, count(*) FROM %s", len(args), s.ident(t)))
			}
		}
		if len(parts) == 0 {
			return nil
		}
		rows, err = conn.Query(ctx, strings.Join(parts, " UNION ALL "), args...)
		if err != nil {
			return err
		}
		var name string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error {
			out[name] = n
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count warehouse rows: %w", err)
	}
	return out, nil
}

// LoadedSeq returns the sequence number of the newest batch loaded into the
// schema, 0 when none (or when the warehouse has not been set up).
func LoadedSeq(ctx context.Context, url, schemaName string) (int64, error) {
	var seq int64
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		var err error
		seq, err = loadedSeq(ctx, conn, schemaOf(schemaName))
		return err
	})
	return seq, err
}

// LastLoad returns the ledger entry of the newest batch loaded; its
// Sequence is 0 when nothing has been loaded.
func LastLoad(ctx context.Context, url, schemaName string) (LedgerEntry, error) {
	entries, err := Freshness(ctx, url, schemaName, 1)
	if err != nil || len(entries) == 0 {
		return LedgerEntry{}, err
	}
	return entries[0], nil
}

// Freshness returns the ledger entries of the n newest batches loaded,
// newest first, each with its Lag: how long after its newest source change
// the batch reached the warehouse.
func Freshness(ctx context.Context, url, schemaName string, n int) ([]LedgerEntry, error) {
	var out []LedgerEntry
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		s := schemaOf(schemaName)
		ok, err := tableExists(ctx, conn, s, ledgerTable)
		if err != nil || !ok {
			return err
		}
		rows, err := conn.Query(ctx, "SELECT sequence, batch, rows, source_newest, loaded_at, seconds FROM "+
			s.ident(ledgerTable)+" ORDER BY sequence DESC LIMIT $1", n)
		if err != nil {
			return err
		}
		var e LedgerEntry
		var newest *time.Time
		_, err = pgx.ForEachRow(rows, []any{&e.Sequence, &e.Batch, &e.Rows, &newest, &e.LoadedAt, &e.Seconds}, func() error {
			e.SourceNewest, e.Lag = time.Time{}, 0
			if newest != nil {
				e.SourceNewest = newest.UTC()
				e.Lag = e.LoadedAt.Sub(e.SourceNewest)
			}
			e.LoadedAt = e.LoadedAt.UTC()
			out = append(out, e)
			e.Rows = nil
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the load ledger: %w", err)
	}
	return out, nil
}

// CheckProcessed reports whether the processed bucket holds the batches the
// warehouse's ledger records as loaded, as load checks before it loads: the
// error is of kind LedgerMismatch and says what differs when it does not
// (another, wiped or rebuilt bucket). A warehouse with no ledger agrees with
// any bucket.
func CheckProcessed(ctx context.Context, url, schemaName string, bucket *lake.Bucket) error {
	return withConn(ctx, url, func(conn *pgx.Conn) error {
		s := schemaOf(schemaName)
		ok, err := tableExists(ctx, conn, s, ledgerTable)
		if err != nil {
			return errkind.Wrap(errkind.LoadFailed, fmt.Errorf("read the load ledger: %w", err))
		}
		if !ok {
			return nil
		}
		return checkLedger(ctx, conn, s, bucket)
	})
}

// loadedSeq is the newest sequence in the ledger, 0 when there is none.
func loadedSeq(ctx context.Context, db querier, s schema) (int64, error) {
	ok, err := tableExists(ctx, db, s, ledgerTable)
	if err != nil || !ok {
		return 0, err
	}
	var seq int64
	if err := db.QueryRow(ctx, "SELECT coalesce(max(sequence), 0) FROM "+s.ident(ledgerTable)).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read the load ledger: %w", err)
	}
	return seq, nil
}
