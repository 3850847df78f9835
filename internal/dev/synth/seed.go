package synth

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// Defaults of `sandstone seed`.
const (
	// DefaultSalesOrders makes a realistic small totesys (the snapshot has
	// 11,187 sales orders).
	DefaultSalesOrders = 11000
	// DefaultRandomSeed is the seed used when none is given, so that seeding
	// is reproducible.
	DefaultRandomSeed = 1
)

// DefaultStart is when a seeded history starts: the first rows of the real
// totesys were stamped then.
var DefaultStart = time.Date(2022, 11, 3, 14, 20, 49, 962_000_000, time.UTC)

// SeedOptions shape the synthetic totesys that Seed makes.
type SeedOptions struct {
	// SalesOrders is how many sales orders to make; purchase orders,
	// transactions, payments and designs follow in the snapshot's
	// proportions.
	SalesOrders int
	// RandomSeed makes the data: the same seed, size and time span give the
	// same rows.
	RandomSeed int64
	// Start and End bound the history: zero means DefaultStart and the
	// source's clock (now). An End past now is taken as now.
	Start, End time.Time
}

// Stats counts rows per table: created by Seed, inserted or updated by
// Simulate and ChangeFraction.
type Stats map[string]int64

// Total returns the number of rows over all tables.
func (s Stats) Total() int64 {
	var n int64
	for _, v := range s {
		n += v
	}
	return n
}

// String lists the non-zero counts in totesys.Tables order: "sales_order 3, payment 4".
func (s Stats) String() string {
	var parts []string
	for _, t := range totesys.Tables {
		if n := s[t.Name]; n != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t.Name, n))
		}
	}
	if len(parts) == 0 {
		return "no rows"
	}
	return strings.Join(parts, ", ")
}

// streamed are the tables Seed streams from the history, in load order.
var streamed = []string{"design", "sales_order", "purchase_order", "transaction", "payment"}

// Seed creates the totesys schema in the empty source database at url and
// fills it with a synthetic history shaped like the real snapshot:
//
//   - reference data of the same size: 30 addresses, 20 counterparties,
//     GBP/USD/EUR, 8 departments (department 4 in 'Leds'), 20 staff, the 4
//     payment types, and 10 designs, with more added over time;
//   - opts.SalesOrders sales orders and 0.42 purchase orders per sales order
//     (as the snapshot's 11,187 and 4,649), each order with its transaction
//     and payment, arriving in working-hour bursts at about HH:MM:10 from
//     opts.Start to opts.End, with 'YYYY-MM-DD' agreed dates a few days on;
//   - payments created unpaid; six in ten are paid (paid = true,
//     last_updated = the time paid) 13 hours to 6 days later, on a weekday
//     morning, unless that is after End.
//
// Timestamps are UTC with milliseconds, none after the source's clock.
// Every id sequence is moved past its data.
//
// The big tables stream into the database through COPY in one transaction,
// so nothing is left behind on failure and memory stays flat whatever the
// size. Seed refuses a database that already holds totesys tables.
func Seed(ctx context.Context, url string, opts SeedOptions) (Stats, error) {
	if opts.SalesOrders < 0 {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("seed: sales orders must be 0 or more, not %d", opts.SalesOrders))
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	found, err := existing(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", errkind.Wrap(errkind.SourceUnreachable, err))
	}
	if len(found) > 0 {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf(
			"seed: the source already has totesys objects (%s): seed only fills an empty database",
			strings.Join(found, ", ")))
	}
	var now time.Time
	if err := conn.QueryRow(ctx, "SELECT date_trunc('milliseconds', LOCALTIMESTAMP)").Scan(&now); err != nil {
		return nil, fmt.Errorf("seed: read the source clock: %w", err)
	}
	p, err := newPlan(opts, now)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("seed: %w", err))
	}

	stats, err := seed(ctx, conn, p)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+tableList()); err != nil {
		return nil, fmt.Errorf("seed: analyze: %w", err)
	}
	return stats, nil
}

func tableList() string {
	names := make([]string, len(totesys.Tables))
	for i, t := range totesys.Tables {
		names[i] = pgx.Identifier{t.Name}.Sanitize()
	}
	return strings.Join(names, ", ")
}

// seed does the work of Seed in one transaction.
func seed(ctx context.Context, conn *pgx.Conn, p plan) (Stats, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, totesys.Schema); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	types, err := tx.Conn().LoadTypes(ctx, enumTypes)
	if err != nil {
		return nil, fmt.Errorf("load enum types: %w", err)
	}
	tx.Conn().TypeMap().RegisterTypes(types)
	fks, err := dropForeignKeys(ctx, tx, streamed)
	if err != nil {
		return nil, err
	}

	stats := Stats{}
	start := time.UnixMilli(p.start).UTC()
	later := time.UnixMilli(min(p.start+refLaterSkew.Milliseconds(), p.end)).UTC()
	ref := referenceRows(p.seed, start, later)
	for _, t := range totesys.Tables {
		rows, ok := ref[t.Name]
		if !ok {
			continue
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Columns, pgx.CopyFromRows(rows))
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", t.Name, err)
		}
		stats[t.Name] = n
	}
	for _, name := range streamed {
		t, _ := totesys.Lookup(name)
		n, err := tx.CopyFrom(ctx, pgx.Identifier{name}, t.Columns, newStream(p, name))
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", name, err)
		}
		stats[name] = n
	}

	if err := addForeignKeys(ctx, tx, fks); err != nil {
		return nil, err
	}
	for _, t := range totesys.Tables {
		ident := pgx.Identifier{t.Name}.Sanitize()
		if _, err := tx.Exec(ctx, "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(max("+
			pgx.Identifier{t.Key}.Sanitize()+"), 0) + 1, false) FROM "+ident, ident, t.Key); err != nil {
			return nil, fmt.Errorf("move the %s sequence: %w", t.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return stats, nil
}

// foreignKey is a constraint set aside while the big tables load.
type foreignKey struct{ table, name, def string }

// dropForeignKeys drops the foreign keys of tables (within the transaction)
// so that COPY need not check them row by row; addForeignKeys puts them back,
// checking every row at once.
func dropForeignKeys(ctx context.Context, tx pgx.Tx, tables []string) ([]foreignKey, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
		FROM pg_constraint c
		WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
		  AND c.conrelid::regclass::text = ANY($1)
		ORDER BY 1, 2`, tables)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	fks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (foreignKey, error) {
		var fk foreignKey
		err := r.Scan(&fk.table, &fk.name, &fk.def)
		return fk, err
	})
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	for _, fk := range fks {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{fk.table}.Sanitize()+
			" DROP CONSTRAINT "+pgx.Identifier{fk.name}.Sanitize()); err != nil {
			return nil, fmt.Errorf("drop foreign key %s: %w", fk.name, err)
		}
	}
	return fks, nil
}

func addForeignKeys(ctx context.Context, tx pgx.Tx, fks []foreignKey) error {
	for _, fk := range fks {
		// The definition is PostgreSQL's own text of the constraint it held.
		if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{fk.table}.Sanitize()+
			" ADD CONSTRAINT "+pgx.Identifier{fk.name}.Sanitize()+" "+fk.def); err != nil {
			return fmt.Errorf("restore foreign key %s: %w", fk.name, err)
		}
	}
	return nil
}

// stream is a pgx.CopyFromSource of one table's rows, made event by event
// from a history of its own.
type stream struct {
	h     *history
	row   func(s *stream, e *event) bool
	vals  []any
	dates map[int64]string
}

func newStream(p plan, table string) *stream {
	s := &stream{h: newHistory(p), dates: map[int64]string{}}
	switch table {
	case "design":
		s.row = designRow
	case "sales_order":
		s.row = salesOrderRow
	case "purchase_order":
		s.row = purchaseOrderRow
	case "transaction":
		s.row = transactionRow
	case "payment":
		s.row = paymentRow
	default:
		panic("totesys: no stream for table " + table)
	}
	return s
}

// Next implements pgx.CopyFromSource.
func (s *stream) Next() bool {
	for s.h.next() {
		if s.row(s, &s.h.ev) {
			return true
		}
	}
	return false
}

// Values implements pgx.CopyFromSource.
func (s *stream) Values() ([]any, error) { return s.vals, nil }

// Err implements pgx.CopyFromSource.
func (s *stream) Err() error { return nil }

// date returns Unix day d as 'YYYY-MM-DD'.
func (s *stream) date(d int64) string {
	v, ok := s.dates[d]
	if !ok {
		v = time.UnixMilli(d * msPerDay).UTC().Format(time.DateOnly)
		s.dates[d] = v
	}
	return v
}

func stamp(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// cents is money as a count of cents; it encodes as numeric with two
// decimals.
type cents int64

// NumericValue implements pgtype.NumericValuer.
func (c cents) NumericValue() (pgtype.Numeric, error) {
	return pgtype.Numeric{Int: big.NewInt(int64(c)), Exp: -2, Valid: true}, nil
}

func designRow(s *stream, e *event) bool {
	if e.kind != eventDesign {
		return false
	}
	name := designNames[e.designName]
	at := stamp(e.at)
	s.vals = append(s.vals[:0], e.id, at, name, designDirs[e.designDir],
		designFile(name, e.designFileDay, e.designSuffix), at)
	return true
}

func salesOrderRow(s *stream, e *event) bool {
	if e.kind != eventSale {
		return false
	}
	at := stamp(e.at)
	s.vals = append(s.vals[:0], e.id, at, at, e.design, e.staff, e.counterparty, e.quantity, cents(e.price),
		e.currency, s.date(e.deliveryDay), s.date(e.paymentDay), e.location)
	return true
}

func purchaseOrderRow(s *stream, e *event) bool {
	if e.kind != eventPurchase {
		return false
	}
	at := stamp(e.at)
	s.vals = append(s.vals[:0], e.id, at, at, e.staff, e.counterparty, itemCode(e.itemCode), e.quantity,
		cents(e.price), e.currency, s.date(e.deliveryDay), s.date(e.paymentDay), e.location)
	return true
}

func transactionRow(s *stream, e *event) bool {
	at := stamp(e.at)
	switch e.kind {
	case eventSale:
		s.vals = append(s.vals[:0], e.txID, "SALE", e.id, nil, at, at)
	case eventPurchase:
		s.vals = append(s.vals[:0], e.txID, "PURCHASE", nil, e.id, at, at)
	default:
		return false
	}
	return true
}

// Payment types by id, as referenceRows numbers them.
const (
	salesReceipt    int32 = 1
	purchasePayment int32 = 3
)

func paymentRow(s *stream, e *event) bool {
	paymentType := salesReceipt
	switch e.kind {
	case eventSale:
	case eventPurchase:
		paymentType = purchasePayment
	default:
		return false
	}
	created, updated := stamp(e.at), stamp(e.at)
	if e.paid {
		updated = stamp(e.paidAt)
	}
	s.vals = append(s.vals[:0], e.txID, created, updated, e.txID, e.counterparty, cents(e.amount()), e.currency,
		paymentType, e.paid, s.date(e.paymentDay), e.companyAc, e.counterpartyAc)
	return true
}
