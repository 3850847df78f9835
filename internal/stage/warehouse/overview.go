package warehouse

// What the status page shows of the warehouse beside the status: the loads
// of a recent window, read from the ledger, and one business figure, read
// from the star tables. Both only read.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LoadsSince returns the ledger entries of the batches loaded at or after
// since and of the last one loaded before it (what the warehouse held when
// the window began), oldest first, each with its Lag; nil when nothing was
// ever loaded.
func (w *Warehouse) LoadsSince(ctx context.Context, since time.Time) ([]LedgerEntry, error) {
	ok, err := tableExists(ctx, w.conn, w.s, ledgerTable)
	if err != nil || !ok {
		return nil, wrapLedger(err)
	}
	l := w.s.ident(ledgerTable)
	rows, err := w.conn.Query(ctx, "SELECT sequence, batch, rows, source_newest, loaded_at, seconds FROM "+l+
		" WHERE loaded_at >= $1 OR sequence = (SELECT max(sequence) FROM "+l+" WHERE loaded_at < $1) ORDER BY sequence", since)
	if err != nil {
		return nil, wrapLedger(err)
	}
	out, err := ledgerEntries(rows)
	return out, wrapLedger(err)
}

func wrapLedger(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("read the load ledger: %w", err)
}

// ledgerEntries reads rows of (sequence, batch, rows, source_newest,
// loaded_at, seconds) as ledger entries, times in UTC.
func ledgerEntries(rows pgx.Rows) ([]LedgerEntry, error) {
	var out []LedgerEntry
	var e LedgerEntry
	var newest *time.Time
	_, err := pgx.ForEachRow(rows, []any{&e.Sequence, &e.Batch, &e.Rows, &newest, &e.LoadedAt, &e.Seconds}, func() error {
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
	return out, err
}

// Sales is the value of the sales orders created in one month in one
// currency.
type Sales struct {
	// Month is the month of the orders' created_date, as 2006-01.
	Month string `json:"month"`
	// Currency is the currency's code (its id when dim_currency lacks it).
	Currency string `json:"currency"`
	// Value is the sum of units_sold * unit_price.
	Value float64 `json:"value"`
}

// SalesByMonth returns the value of the sales orders by month of their
// created_date and currency, in month then currency order: units_sold *
// unit_price of each order's current version (the one last updated), the
// orders recorded in sandstone_deletions left out. It reads the whole
// fact table, so callers keep its answer until the next load; nil when
// nothing was loaded.
func (w *Warehouse) SalesByMonth(ctx context.Context) ([]Sales, error) {
	for _, t := range []string{"fact_sales_order", "dim_currency", deletionsTable} {
		ok, err := tableExists(ctx, w.conn, w.s, t)
		if err != nil {
			return nil, fmt.Errorf("sales by month: %w", err)
		}
		if !ok {
			return nil, nil
		}
	}
	rows, err := w.conn.Query(ctx, `SELECT to_char(f.created_date, 'YYYY-MM'), coalesce(c.currency_code, f.currency_id::text),
			sum(f.units_sold * f.unit_price)::float8
		FROM (SELECT DISTINCT ON (sales_order_id) sales_order_id, created_date, currency_id, units_sold, unit_price
			FROM `+w.s.ident("fact_sales_order")+`
			ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC) f
		LEFT JOIN `+w.s.ident("dim_currency")+` c ON c.currency_id = f.currency_id
		WHERE NOT EXISTS (SELECT 1 FROM `+w.s.ident(deletionsTable)+` d WHERE d.source_table = 'sales_order' AND d.id = f.sales_order_id)
		GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("sales by month: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Sales])
	if err != nil {
		return nil, fmt.Errorf("sales by month: %w", err)
	}
	return out, nil
}
