package synth

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/brianvoe/gofakeit/v7"
	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Activity is what one step of live activity does to the source.
type Activity struct {
	// NewSalesOrders and NewPurchaseOrders are new orders, each with its
	// transaction and its (unpaid) payment.
	NewSalesOrders, NewPurchaseOrders int
	// PaymentsPaid are unpaid payments marked paid.
	PaymentsPaid int
	// OrderChanges are orders (sales or purchase) whose quantity, price or
	// agreed dates change.
	OrderChanges int
	// AddressChanges, DepartmentChanges: changed reference rows.
	AddressChanges, DepartmentChanges int
	// NewDesigns are new designs.
	NewDesigns int
}

// DefaultInterval is the time between two steps of `sandstone simulate`.
const DefaultInterval = 2 * time.Second

// TypicalStep draws the activity of one step of `sandstone simulate`: a
// few new orders and paid payments, and now and then a changed order, a
// changed address or department, a new design. Far faster than the pace
// of the real totesys (about 20 sales orders a working day), so that a demo
// shows changes every few seconds.
func TypicalStep(rnd *rand.Rand) Activity {
	chance := func(p float64) int {
		if rnd.Float64() < p {
			return 1
		}
		return 0
	}
	return Activity{
		NewSalesOrders:    rnd.IntN(4),
		NewPurchaseOrders: chance(0.6),
		PaymentsPaid:      rnd.IntN(4),
		OrderChanges:      chance(0.2),
		AddressChanges:    chance(0.05),
		DepartmentChanges: chance(0.02),
		NewDesigns:        chance(0.1),
	}
}

// Simulate applies one step of live activity to the totesys source at url,
// each kind of change in a source transaction of its own, every row stamped
// with the source's clock in UTC (the transaction's start, to the
// millisecond) as totesys stamps its rows. It applies exactly the activity
// asked, fewer only when there is nothing left to pay or change, and returns
// the rows inserted or updated per table (on error, those of the
// transactions that committed). rnd draws the values.
func Simulate(ctx context.Context, url string, a Activity, rnd *rand.Rand) (Stats, error) {
	if a.NewSalesOrders < 0 || a.NewPurchaseOrders < 0 || a.PaymentsPaid < 0 || a.OrderChanges < 0 ||
		a.AddressChanges < 0 || a.DepartmentChanges < 0 || a.NewDesigns < 0 {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("simulate: negative activity %+v", a))
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := requireSchema(ctx, conn); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	s := &simulator{conn: conn, rnd: rnd, fake: gofakeit.NewFaker(rnd, false), stats: Stats{}}
	steps := []struct {
		n    int
		what string
		do   func(context.Context, pgx.Tx, int) error
	}{
		{a.NewDesigns, "new designs", s.newDesigns},
		{a.NewSalesOrders, "new sales orders", s.newSalesOrders},
		{a.NewPurchaseOrders, "new purchase orders", s.newPurchaseOrders},
		{a.PaymentsPaid, "pay payments", s.payPayments},
		{a.OrderChanges, "change orders", s.changeOrders},
		{a.AddressChanges, "change addresses", s.changeAddresses},
		{a.DepartmentChanges, "change departments", s.changeDepartments},
	}
	for _, st := range steps {
		if st.n == 0 {
			continue
		}
		s.pending = Stats{}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return st.do(ctx, tx, st.n) }); err != nil {
			return s.stats, fmt.Errorf("simulate: %s: %w", st.what, err)
		}
		for k, v := range s.pending {
			s.stats[k] += v
		}
	}
	return s.stats, nil
}

// simulator holds one step's connection, randomness and counts: stats of
// the committed transactions, pending of the current one.
type simulator struct {
	conn           *pgx.Conn
	rnd            *rand.Rand
	fake           *gofakeit.Faker
	stats, pending Stats
}

// nowSQL is the transaction's start on the source's clock, in UTC (the
// session's time zone), truncated to the columns' milliseconds so that no
// stamp lies in the future.
const nowSQL = "date_trunc('milliseconds', LOCALTIMESTAMP)"

// ids returns the ids of a (small) reference table.
func ids(ctx context.Context, tx pgx.Tx, table, key string) ([]int32, error) {
	rows, err := tx.Query(ctx, "SELECT "+pgx.Identifier{key}.Sanitize()+" FROM "+pgx.Identifier{table}.Sanitize()+
		" ORDER BY 1")
	if err != nil {
		return nil, fmt.Errorf("read %s ids: %w", table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("read %s ids: %w", table, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("table %s is empty", table)
	}
	return out, nil
}

// orderRefs are the ids an order refers to.
type orderRefs struct{ designs, staff, counterparties, currencies, addresses []int32 }

func loadOrderRefs(ctx context.Context, tx pgx.Tx, sales bool) (orderRefs, error) {
	var r orderRefs
	var err error
	for _, x := range []struct {
		dst        *[]int32
		table, key string
		need       bool
	}{
		{&r.designs, "design", "design_id", sales},
		{&r.staff, "staff", "staff_id", true},
		{&r.counterparties, "counterparty", "counterparty_id", true},
		{&r.currencies, "currency", "currency_id", true},
		{&r.addresses, "address", "address_id", true},
	} {
		if x.need {
			if *x.dst, err = ids(ctx, tx, x.table, x.key); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

func pick(rnd *rand.Rand, ids []int32) int32 { return ids[rnd.IntN(len(ids))] }

// reserve takes n ids from a table's sequence.
func reserve(ctx context.Context, tx pgx.Tx, table, key string, n int) ([]int32, error) {
	rows, err := tx.Query(ctx, "SELECT nextval(pg_get_serial_sequence($1, $2))::int FROM generate_series(1, $3)",
		pgx.Identifier{table}.Sanitize(), key, n)
	if err != nil {
		return nil, fmt.Errorf("reserve %s ids: %w", table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("reserve %s ids: %w", table, err)
	}
	return out, nil
}

// newOrders holds the values of new orders of one kind, column by column.
type newOrders struct {
	ids, txIDs, designs, staff, counterparties, quantities, currencies []int32
	deliveryDays, paymentDays, locations, companyAcs, counterpartyAcs  []int32
	prices                                                             []int64
	itemCodes                                                          []string
}

func (s *simulator) drawOrders(ctx context.Context, tx pgx.Tx, sales bool, n int) (*newOrders, error) {
	refs, err := loadOrderRefs(ctx, tx, sales)
	if err != nil {
		return nil, err
	}
	table, key := "purchase_order", "purchase_order_id"
	if sales {
		table, key = "sales_order", "sales_order_id"
	}
	o := &newOrders{}
	if o.ids, err = reserve(ctx, tx, table, key, n); err != nil {
		return nil, err
	}
	if o.txIDs, err = reserve(ctx, tx, "transaction", "transaction_id", n); err != nil {
		return nil, err
	}
	r := s.rnd
	for range n {
		if sales {
			o.designs = append(o.designs, pick(r, refs.designs))
			o.quantities = append(o.quantities, 1001+r.Int32N(99000))
			o.prices = append(o.prices, 200+r.Int64N(201))
		} else {
			o.itemCodes = append(o.itemCodes, itemCode(r.Uint64()))
			o.quantities = append(o.quantities, 1+r.Int32N(999))
			o.prices = append(o.prices, 100+r.Int64N(99_900))
		}
		o.staff = append(o.staff, pick(r, refs.staff))
		o.counterparties = append(o.counterparties, pick(r, refs.counterparties))
		o.currencies = append(o.currencies, pick(r, refs.currencies))
		o.locations = append(o.locations, pick(r, refs.addresses))
		o.deliveryDays = append(o.deliveryDays, r.Int32N(8))
		o.paymentDays = append(o.paymentDays, r.Int32N(7))
		o.companyAcs = append(o.companyAcs, 10_000_000+r.Int32N(90_000_000))
		o.counterpartyAcs = append(o.counterpartyAcs, 10_000_000+r.Int32N(90_000_000))
	}
	return o, nil
}

// The new orders' rows, from arrays of their values. The payment of an
// order copies its counterparty, currency and agreed payment date, and its
// amount is quantity times price, as in totesys.
const (
	insertSalesOrders = `
		INSERT INTO sales_order (sales_order_id, created_at, last_updated, design_id, staff_id, counterparty_id,
			units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)
		SELECT id, ` + nowSQL + `, ` + nowSQL + `, design, staff, cp, qty, price / 100.0, cur,
			to_char(LOCALTIMESTAMP::date + dd, 'YYYY-MM-DD'), to_char(LOCALTIMESTAMP::date + pd, 'YYYY-MM-DD'), loc
		FROM unnest($1::int[], $2::int[], $3::int[], $4::int[], $5::int[], $6::bigint[], $7::int[], $8::int[], $9::int[], $10::int[])
			AS x(id, design, staff, cp, qty, price, cur, dd, pd, loc)`
	insertPurchaseOrders = `
		INSERT INTO purchase_order (purchase_order_id, created_at, last_updated, staff_id, counterparty_id,
			item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date,
			agreed_delivery_location_id)
		SELECT id, ` + nowSQL + `, ` + nowSQL + `, staff, cp, code, qty, price / 100.0, cur,
			to_char(LOCALTIMESTAMP::date + dd, 'YYYY-MM-DD'), to_char(LOCALTIMESTAMP::date + pd, 'YYYY-MM-DD'), loc
		FROM unnest($1::int[], $2::text[], $3::int[], $4::int[], $5::int[], $6::bigint[], $7::int[], $8::int[], $9::int[], $10::int[])
			AS x(id, code, staff, cp, qty, price, cur, dd, pd, loc)`
	insertTransactions = `
		INSERT INTO transaction (transaction_id, transaction_type, sales_order_id, purchase_order_id, created_at, last_updated)
		SELECT tx, $3::"TransactionType",
			CASE WHEN $3 = 'SALE' THEN id END, CASE WHEN $3 = 'PURCHASE' THEN id END, ` + nowSQL + `, ` + nowSQL + `
		FROM unnest($1::int[], $2::int[]) AS x(tx, id)`
	insertPayments = `
		INSERT INTO payment (payment_id, created_at, last_updated, transaction_id, counterparty_id, payment_amount,
			currency_id, payment_type_id, paid, payment_date, company_ac_number, counterparty_ac_number)
		SELECT tx, ` + nowSQL + `, ` + nowSQL + `, tx, cp, qty * price / 100.0, cur,
			(SELECT min(payment_type_id) FROM payment_type WHERE payment_type_name = $9::"PaymentTypeName"),
			false, to_char(LOCALTIMESTAMP::date + pd, 'YYYY-MM-DD'), cac, pac
		FROM unnest($1::int[], $2::int[], $3::int[], $4::bigint[], $5::int[], $6::int[], $7::int[], $8::int[])
			AS x(tx, cp, qty, price, cur, pd, cac, pac)`
)

func (s *simulator) newSalesOrders(ctx context.Context, tx pgx.Tx, n int) error {
	o, err := s.drawOrders(ctx, tx, true, n)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, insertSalesOrders, o.ids, o.designs, o.staff, o.counterparties, o.quantities,
		o.prices, o.currencies, o.deliveryDays, o.paymentDays, o.locations)
	if err != nil {
		return fmt.Errorf("insert sales orders: %w", err)
	}
	s.pending["sales_order"] += tag.RowsAffected()
	return s.insertTxPayments(ctx, tx, o, "SALE", "SALES_RECEIPT")
}

func (s *simulator) newPurchaseOrders(ctx context.Context, tx pgx.Tx, n int) error {
	o, err := s.drawOrders(ctx, tx, false, n)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, insertPurchaseOrders, o.ids, o.itemCodes, o.staff, o.counterparties, o.quantities,
		o.prices, o.currencies, o.deliveryDays, o.paymentDays, o.locations)
	if err != nil {
		return fmt.Errorf("insert purchase orders: %w", err)
	}
	s.pending["purchase_order"] += tag.RowsAffected()
	return s.insertTxPayments(ctx, tx, o, "PURCHASE", "PURCHASE_PAYMENT")
}

func (s *simulator) insertTxPayments(ctx context.Context, tx pgx.Tx, o *newOrders, txType, paymentType string) error {
	tag, err := tx.Exec(ctx, insertTransactions, o.txIDs, o.ids, txType)
	if err != nil {
		return fmt.Errorf("insert transactions: %w", err)
	}
	s.pending["transaction"] += tag.RowsAffected()
	tag, err = tx.Exec(ctx, insertPayments, o.txIDs, o.counterparties, o.quantities, o.prices, o.currencies,
		o.paymentDays, o.companyAcs, o.counterpartyAcs, paymentType)
	if err != nil {
		return fmt.Errorf("insert payments: %w", err)
	}
	s.pending["payment"] += tag.RowsAffected()
	return nil
}

// payPayments marks unpaid payments paid: first those created 13 hours to
// 6 days ago (when totesys pays), the latest first, then any other, the
// latest first. A payment created in the same millisecond is left alone, so
// that its paid version has a later last_updated than its unpaid one.
func (s *simulator) payPayments(ctx context.Context, tx pgx.Tx, n int) error {
	tag, err := tx.Exec(ctx, `
		WITH due AS (
			SELECT payment_id FROM payment
			WHERE NOT paid AND created_at < `+nowSQL+`
			ORDER BY created_at BETWEEN LOCALTIMESTAMP - interval '6 days' AND LOCALTIMESTAMP - interval '13 hours' DESC,
				created_at DESC, payment_id DESC
			LIMIT $1
			FOR UPDATE SKIP LOCKED)
		UPDATE payment p SET paid = true, last_updated = `+nowSQL+`
		FROM due WHERE p.payment_id = due.payment_id`, n)
	if err != nil {
		return fmt.Errorf("pay payments: %w", err)
	}
	s.pending["payment"] += tag.RowsAffected()
	return nil
}

// Changes to an order: a kind each, and a random amount.
const (
	changeQuantity int32 = iota
	changePrice
	changeDeliveryDate
	changePaymentDate
	changeKinds
)

// changeOrders changes random orders, three in four a sales order: their
// quantity, price, agreed delivery or agreed payment date, bumping
// last_updated.
func (s *simulator) changeOrders(ctx context.Context, tx pgx.Tx, n int) error {
	sales := 0
	for range n {
		if s.rnd.IntN(4) > 0 {
			sales++
		}
	}
	if _, err := tx.Exec(ctx, "SELECT setseed($1)", s.rnd.Float64()*2-1); err != nil {
		return fmt.Errorf("seed the source's random: %w", err)
	}
	changeSales := func(k int) (int64, error) {
		n, err := s.changeOrderTable(ctx, tx, "sales_order", "sales_order_id", "units_sold", "unit_price", k)
		s.pending["sales_order"] += n
		return n, err
	}
	changePurchases := func(k int) (int64, error) {
		n, err := s.changeOrderTable(ctx, tx, "purchase_order", "purchase_order_id", "item_quantity", "item_unit_price", k)
		s.pending["purchase_order"] += n
		return n, err
	}
	// Whatever one table lacks, the other makes up (a changed row is
	// stamped now, so it is not picked twice).
	gotSales, err := changeSales(sales)
	if err != nil {
		return err
	}
	gotPurchases, err := changePurchases(n - int(gotSales))
	if err != nil {
		return err
	}
	if left := n - int(gotSales+gotPurchases); left > 0 {
		_, err = changeSales(left)
	}
	return err
}

func (s *simulator) changeOrderTable(ctx context.Context, tx pgx.Tx, table, key, quantity, price string, n int) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	ident, keyIdent := pgx.Identifier{table}.Sanitize(), pgx.Identifier{key}.Sanitize()
	rows, err := tx.Query(ctx, "SELECT "+keyIdent+" FROM "+ident+" WHERE last_updated < "+nowSQL+
		" ORDER BY random() LIMIT $1 FOR UPDATE", n)
	if err != nil {
		return 0, fmt.Errorf("pick %s rows: %w", table, err)
	}
	picked, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, fmt.Errorf("pick %s rows: %w", table, err)
	}
	kinds, deltas := make([]int32, len(picked)), make([]int32, len(picked))
	for i := range picked {
		kinds[i] = s.rnd.Int32N(changeKinds)
		switch kinds[i] {
		case changeQuantity:
			deltas[i] = 1 + s.rnd.Int32N(500)
		case changePrice:
			deltas[i] = 1 + s.rnd.Int32N(50) // cents
		default:
			deltas[i] = 1 + s.rnd.Int32N(5) // days
		}
		if s.rnd.IntN(2) == 0 {
			deltas[i] = -deltas[i]
		}
	}
	q, p := pgx.Identifier{quantity}.Sanitize(), pgx.Identifier{price}.Sanitize()
	// A change that would take a value below its floor goes the other way,
	// so every change changes something.
	tag, err := tx.Exec(ctx, `
		UPDATE `+ident+` o SET
			`+q+` = CASE WHEN x.kind = 0 THEN
				CASE WHEN o.`+q+` + x.delta >= 1 THEN o.`+q+` + x.delta ELSE o.`+q+` - x.delta END ELSE o.`+q+` END,
			`+p+` = CASE WHEN x.kind = 1 THEN
				CASE WHEN o.`+p+` + x.delta / 100.0 >= 0.01 THEN o.`+p+` + x.delta / 100.0 ELSE o.`+p+` - x.delta / 100.0 END
				ELSE o.`+p+` END,
			agreed_delivery_date = CASE WHEN x.kind = 2 THEN
				to_char(o.agreed_delivery_date::date + abs(x.delta), 'YYYY-MM-DD') ELSE o.agreed_delivery_date END,
			agreed_payment_date = CASE WHEN x.kind = 3 THEN
				to_char(o.agreed_payment_date::date + abs(x.delta), 'YYYY-MM-DD') ELSE o.agreed_payment_date END,
			last_updated = `+nowSQL+`
		FROM unnest($1::int[], $2::int[], $3::int[]) AS x(id, kind, delta)
		WHERE o.`+keyIdent+` = x.id`, picked, kinds, deltas)
	if err != nil {
		return 0, fmt.Errorf("change %s: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

// distinct picks up to n different ids.
func distinct(rnd *rand.Rand, all []int32, n int) []int32 {
	out := append([]int32(nil), all...)
	rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(n, len(out))]
}

// changeAddresses gives addresses a new phone number or first line.
func (s *simulator) changeAddresses(ctx context.Context, tx pgx.Tx, n int) error {
	all, err := ids(ctx, tx, "address", "address_id")
	if err != nil {
		return err
	}
	picked := distinct(s.rnd, all, n)
	phones, lines := make([]string, len(picked)), make([]*string, len(picked))
	for i := range picked {
		phones[i] = phone(s.fake)
		if s.rnd.IntN(2) == 0 {
			l := s.fake.Street()
			lines[i] = &l
		}
	}
	tag, err := tx.Exec(ctx, `
		UPDATE address a SET
			phone = CASE WHEN x.line IS NULL OR x.line = a.address_line_1 THEN x.phone ELSE a.phone END,
			address_line_1 = COALESCE(x.line, a.address_line_1),
			last_updated = `+nowSQL+`
		FROM unnest($1::int[], $2::text[], $3::text[]) AS x(id, phone, line)
		WHERE a.address_id = x.id AND a.last_updated < `+nowSQL, picked, phones, lines)
	if err != nil {
		return fmt.Errorf("change addresses: %w", err)
	}
	s.pending["address"] += tag.RowsAffected()
	return nil
}

// changeDepartments gives departments a new manager or a new location (but
// department 4 keeps its misspelt 'Leds', and gets a new manager).
func (s *simulator) changeDepartments(ctx context.Context, tx pgx.Tx, n int) error {
	all, err := ids(ctx, tx, "department", "department_id")
	if err != nil {
		return err
	}
	picked := distinct(s.rnd, all, n)
	managers, towns, others := make([]string, len(picked)), make([]*string, len(picked)), make([]string, len(picked))
	for i := range picked {
		managers[i] = s.fake.Name()
		k := s.rnd.IntN(len(departmentTowns))
		others[i] = departmentTowns[(k+1)%len(departmentTowns)]
		if s.rnd.IntN(2) == 0 {
			towns[i] = &departmentTowns[k]
		}
	}
	tag, err := tx.Exec(ctx, `
		UPDATE department d SET
			location = CASE WHEN x.town IS NULL OR d.location = 'Leds' THEN d.location
				WHEN x.town IS DISTINCT FROM d.location THEN x.town ELSE x.other END,
			manager = CASE WHEN x.town IS NULL OR d.location = 'Leds' THEN x.manager ELSE d.manager END,
			last_updated = `+nowSQL+`
		FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS x(id, manager, town, other)
		WHERE d.department_id = x.id AND d.last_updated < `+nowSQL, picked, managers, towns, others)
	if err != nil {
		return fmt.Errorf("change departments: %w", err)
	}
	s.pending["department"] += tag.RowsAffected()
	return nil
}

// newDesigns adds designs.
func (s *simulator) newDesigns(ctx context.Context, tx pgx.Tx, n int) error {
	names, dirs, files := make([]string, n), make([]string, n), make([]string, n)
	today := time.Now().UTC().UnixMilli() / msPerDay
	for i := range n {
		names[i] = designNames[s.rnd.IntN(len(designNames))]
		dirs[i] = designDirs[s.rnd.IntN(len(designDirs))]
		files[i] = designFile(names[i], today-s.rnd.Int64N(730), s.rnd.Uint64())
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO design (created_at, design_name, file_location, file_name, last_updated)
		SELECT `+nowSQL+`, name, dir, file, `+nowSQL+`
		FROM unnest($1::text[], $2::text[], $3::text[]) AS x(name, dir, file)`, names, dirs, files)
	if err != nil {
		return fmt.Errorf("insert designs: %w", err)
	}
	s.pending["design"] += tag.RowsAffected()
	return nil
}

// ChangeFraction changes about fraction (0..1) of all sales orders and of
// all payments, each a new version stamped now: a sales order's units_sold
// moves by one; a payment becomes paid, or if it was, its amount moves by a
// cent. It is set-based SQL (one transaction, two UPDATEs), for the
// benchmark's incremental cycle on large sources.
func ChangeFraction(ctx context.Context, url string, fraction float64) (Stats, error) {
	if fraction < 0 || fraction > 1 || math.IsNaN(fraction) {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("change fraction: %v is not between 0 and 1", fraction))
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("change fraction: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := requireSchema(ctx, conn); err != nil {
		return nil, fmt.Errorf("change fraction: %w", err)
	}
	stats := Stats{}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE sales_order SET
				units_sold = CASE WHEN units_sold > 1 THEN units_sold - 1 ELSE units_sold + 1 END,
				last_updated = `+nowSQL+`
			WHERE random() < $1 AND last_updated < `+nowSQL, fraction)
		if err != nil {
			return fmt.Errorf("sales orders: %w", err)
		}
		stats["sales_order"] = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `
			UPDATE payment SET
				payment_amount = CASE WHEN paid THEN payment_amount + 0.01 ELSE payment_amount END,
				paid = true,
				last_updated = `+nowSQL+`
			WHERE random() < $1 AND last_updated < `+nowSQL, fraction)
		if err != nil {
			return fmt.Errorf("payments: %w", err)
		}
		stats["payment"] = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("change fraction: %w", err)
	}
	return stats, nil
}
