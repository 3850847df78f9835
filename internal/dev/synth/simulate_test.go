package synth_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

func counts(t *testing.T, url string) synth.Stats {
	t.Helper()
	s := synth.Stats{}
	for _, tbl := range totesys.Tables {
		s[tbl.Name] = pgtest.QueryInt(t, url, "SELECT count(*) FROM "+pgx.Identifier{tbl.Name}.Sanitize())
	}
	return s
}

// sourceNow reads the source's clock (UTC, milliseconds).
func sourceNow(t *testing.T, url string) time.Time {
	t.Helper()
	var now time.Time
	pgtest.Scan(t, url, []any{&now}, "SELECT date_trunc('milliseconds', now() AT TIME ZONE 'UTC')")
	return now
}

// stampedSince counts the rows of table whose last_updated is at or after
// since, and those created then.
func stampedSince(t *testing.T, url, table string, since time.Time) (updated, created int64) {
	t.Helper()
	ident := pgx.Identifier{table}.Sanitize()
	updated = pgtest.QueryInt(t, url, "SELECT count(*) FROM "+ident+" WHERE last_updated >= $1 AND created_at < $1", since)
	created = pgtest.QueryInt(t, url, "SELECT count(*) FROM "+ident+" WHERE created_at >= $1", since)
	return updated, created
}

func TestSimulateAppliesWhatItSays(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 2000)
	before := counts(t, url)
	unpaid := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment WHERE NOT paid")
	began := sourceNow(t, url)
	time.Sleep(2 * time.Millisecond) // the seeded rows are stamped strictly before began

	a := synth.Activity{NewSalesOrders: 4, NewPurchaseOrders: 3, PaymentsPaid: 5, OrderChanges: 6,
		AddressChanges: 2, DepartmentChanges: 3, NewDesigns: 2}
	stats, err := synth.Simulate(ctx, url, a, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	ended := sourceNow(t, url)
	after := counts(t, url)

	// Inserted rows.
	for table, n := range map[string]int64{"sales_order": 4, "purchase_order": 3, "transaction": 7, "payment": 7, "design": 2} {
		if got := after[table] - before[table]; got != n {
			t.Errorf("%s: %d new rows, want %d", table, got, n)
		}
		if _, created := stampedSince(t, url, table, began); created != n {
			t.Errorf("%s: %d rows stamped since the step began, want %d", table, created, n)
		}
	}
	for _, table := range []string{"address", "counterparty", "currency", "department", "staff", "payment_type"} {
		if after[table] != before[table] {
			t.Errorf("%s: %d rows, was %d", table, after[table], before[table])
		}
	}
	// Updated rows.
	if got := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment WHERE NOT paid"); got != unpaid+7-5 {
		t.Errorf("%d unpaid payments, want %d", got, unpaid+7-5)
	}
	if updated, _ := stampedSince(t, url, "payment", began); updated != 5 {
		t.Errorf("%d payments stamped paid, want 5", updated)
	}
	if n := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment WHERE last_updated >= $1 AND created_at < $1 AND NOT paid", began); n != 0 {
		t.Errorf("%d updated payments not paid", n)
	}
	so, _ := stampedSince(t, url, "sales_order", began)
	po, _ := stampedSince(t, url, "purchase_order", began)
	if so+po != 6 {
		t.Errorf("%d + %d orders changed, want 6", so, po)
	}
	for table, n := range map[string]int64{"address": 2, "department": 3} {
		if updated, _ := stampedSince(t, url, table, began); updated != n {
			t.Errorf("%s: %d rows changed, want %d", table, updated, n)
		}
	}
	want := synth.Stats{"sales_order": 4 + so, "purchase_order": 3 + po, "transaction": 7, "payment": 7 + 5,
		"design": 2, "address": 2, "department": 3}
	for table, n := range want {
		if stats[table] != n {
			t.Errorf("stats[%s] = %d, want %d (stats %v)", table, stats[table], n, stats)
		}
	}
	if len(stats) != len(want) {
		t.Errorf("stats %v, want %v", stats, want)
	}

	// The new rows hang together and are stamped with the source's clock.
	for _, c := range []struct {
		name, sql string
		args      []any
	}{
		{"new payments unpaid and like their orders", `SELECT count(*) FROM payment p JOIN transaction t USING (transaction_id)
			LEFT JOIN sales_order s USING (sales_order_id) LEFT JOIN purchase_order o USING (purchase_order_id)
			WHERE p.created_at >= $1 AND (p.paid OR p.last_updated <> p.created_at
			OR p.payment_amount <> COALESCE(s.units_sold * s.unit_price, o.item_quantity * o.item_unit_price)
			OR p.created_at <> COALESCE(s.created_at, o.created_at) OR t.created_at <> p.created_at
			OR p.payment_date <> COALESCE(s.agreed_payment_date, o.agreed_payment_date))`, []any{began}},
		{"stamps within the step", `SELECT count(*) FROM (
			SELECT last_updated FROM sales_order UNION ALL SELECT last_updated FROM purchase_order UNION ALL
			SELECT last_updated FROM payment UNION ALL SELECT last_updated FROM design UNION ALL
			SELECT last_updated FROM address UNION ALL SELECT last_updated FROM department) x
			WHERE last_updated >= $1 AND (last_updated > $2 OR date_trunc('milliseconds', last_updated) <> last_updated)`,
			[]any{began, ended}},
		{"text dates", `SELECT count(*) FROM sales_order WHERE last_updated >= $1 AND
			(agreed_delivery_date !~ '^\d{4}-\d{2}-\d{2}$' OR agreed_payment_date::date < created_at::date)`, []any{began}},
		{"department 4 keeps 'Leds'", `SELECT count(*) FROM department WHERE department_id = 4 AND location <> 'Leds'`, nil},
	} {
		if n := pgtest.QueryInt(t, url, c.sql, c.args...); n != 0 {
			t.Errorf("%s: %d rows break it", c.name, n)
		}
	}
	// Ids continue the sequences.
	if got := pgtest.QueryInt(t, url, "SELECT max(sales_order_id) FROM sales_order"); got != 2004 {
		t.Errorf("max sales_order_id %d, want 2004", got)
	}
}

func TestSimulateChangesValues(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 300)
	// snapshot maps each row's id to its last_updated and its other values.
	snapshot := func(table, key string) map[int32][2]string {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		rows, err := conn.Query(ctx, "SELECT "+key+", last_updated::text, (to_jsonb(x) - 'last_updated')::text FROM "+table+" x")
		if err != nil {
			t.Fatal(err)
		}
		m := map[int32][2]string{}
		var id int32
		var stamp, rest string
		if _, err := pgx.ForEachRow(rows, []any{&id, &stamp, &rest}, func() error { m[id] = [2]string{stamp, rest}; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		table, key string
		a          synth.Activity
	}{
		{"sales_order", "sales_order_id", synth.Activity{OrderChanges: 40}},
		{"address", "address_id", synth.Activity{AddressChanges: 10}},
		{"department", "department_id", synth.Activity{DepartmentChanges: 8}},
	} {
		before := snapshot(tc.table, tc.key)
		if _, err := synth.Simulate(ctx, url, tc.a, rand.New(rand.NewPCG(3, 4))); err != nil {
			t.Fatal(err)
		}
		changed := 0
		for id, row := range snapshot(tc.table, tc.key) {
			if row[0] == before[id][0] {
				if row[1] != before[id][1] {
					t.Errorf("%s %d changed without a new last_updated", tc.table, id)
				}
				continue
			}
			changed++
			if row[1] == before[id][1] {
				t.Errorf("%s %d: only last_updated changed: %s", tc.table, id, row[1])
			}
		}
		if changed == 0 {
			t.Errorf("%s: nothing changed", tc.table)
		}
	}
	if n := pgtest.QueryInt(t, url, "SELECT count(*) FROM department WHERE location = 'Leds'"); n != 1 {
		t.Errorf("%d departments in 'Leds', want 1", n)
	}
}

func TestSimulateDoesFewerOnlyWhenThereIsNothingLeft(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 50)
	pgtest.Exec(t, url, "UPDATE payment SET paid = true")
	stats, err := synth.Simulate(ctx, url, synth.Activity{PaymentsPaid: 3, AddressChanges: 50, DepartmentChanges: 50},
		rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if stats["payment"] != 0 || stats["address"] != 30 || stats["department"] != 8 {
		t.Errorf("stats %v, want no payment, 30 addresses, 8 departments", stats)
	}
	// Orders to change come from whichever table has them.
	pgtest.Exec(t, url, "TRUNCATE sales_order CASCADE")
	stats, err = synth.Simulate(ctx, url, synth.Activity{OrderChanges: 5}, rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if stats["purchase_order"] != 5 || stats["sales_order"] != 0 {
		t.Errorf("stats %v, want 5 purchase orders changed", stats)
	}
}

func TestSimulatePaysDuePaymentsFirst(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 2000)
	due := `SELECT count(*) FROM payment WHERE NOT paid AND
		created_at BETWEEN LOCALTIMESTAMP - interval '6 days' AND LOCALTIMESTAMP - interval '13 hours'`
	n := pgtest.QueryInt(t, url, due)
	if n < 2 {
		t.Skipf("only %d payments due today", n)
	}
	if _, err := synth.Simulate(ctx, url, synth.Activity{PaymentsPaid: 2}, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryInt(t, url, due); got != n-2 {
		t.Errorf("%d payments due, want %d", got, n-2)
	}
}

func TestSimulateOnTheRealSnapshot(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.LoadSnapshot(t, url)
	rnd := rand.New(rand.NewPCG(9, 9))
	total := synth.Stats{}
	for range 5 {
		stats, err := synth.Simulate(context.Background(), url, synth.Activity{NewSalesOrders: 2, NewPurchaseOrders: 1,
			PaymentsPaid: 2, OrderChanges: 1, AddressChanges: 1, DepartmentChanges: 1, NewDesigns: 1}, rnd)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range stats {
			total[k] += v
		}
	}
	if total["sales_order"]+total["purchase_order"] != 10+5+5 || total["payment"] != 25 || total["design"] != 5 {
		t.Errorf("total %v", total)
	}
	if got := pgtest.QueryInt(t, url, "SELECT max(sales_order_id) FROM sales_order"); got != 11187+10 {
		t.Errorf("max sales_order_id %d, want %d", got, 11187+10)
	}
}

func TestSimulateErrors(t *testing.T) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 1))
	empty := pgtest.NewDatabase(t)
	for _, tc := range []struct {
		name string
		url  string
		a    synth.Activity
		kind errkind.Kind
		want string
	}{
		{"negative", empty, synth.Activity{NewSalesOrders: -1}, errkind.ConfigInvalid, "negative activity"},
		{"no schema", empty, synth.Activity{NewSalesOrders: 1}, errkind.SourceSchemaMismatch, "sandstone seed"},
		{"unreachable", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=5", synth.Activity{}, errkind.SourceUnreachable, "connect to source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := synth.Simulate(ctx, tc.url, tc.a, rnd)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errkind.Of(err) != tc.kind {
				t.Fatalf("err = %v (kind %s), want %q of kind %s", err, errkind.Of(err), tc.want, tc.kind)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	// A source whose reference tables are empty cannot take orders.
	pgtest.Exec(t, empty, totesys.Schema)
	if _, err := synth.Simulate(ctx, empty, synth.Activity{NewPurchaseOrders: 1}, rnd); err == nil ||
		!strings.Contains(err.Error(), "staff is empty") {
		t.Fatalf("err = %v", err)
	}
}

func TestTypicalStep(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 1))
	var sum synth.Activity
	for range 1000 {
		a := synth.TypicalStep(rnd)
		if a.NewSalesOrders < 0 || a.NewSalesOrders > 3 || a.AddressChanges > 1 || a.NewDesigns > 1 {
			t.Fatalf("step %+v", a)
		}
		sum.NewSalesOrders += a.NewSalesOrders
		sum.AddressChanges += a.AddressChanges
	}
	// Mostly new sales orders, a changed address now and then.
	if sum.NewSalesOrders < 1200 || sum.NewSalesOrders > 1800 || sum.AddressChanges == 0 || sum.AddressChanges > 150 {
		t.Errorf("1000 steps: %+v", sum)
	}
}

func TestChangeFraction(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 2000)
	payments := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment")
	began := sourceNow(t, url)
	time.Sleep(2 * time.Millisecond)
	unitsBefore := pgtest.QueryInt(t, url, "SELECT sum(units_sold) FROM sales_order")
	stats, err := synth.ChangeFraction(ctx, url, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	so, _ := stampedSince(t, url, "sales_order", began)
	pay, _ := stampedSince(t, url, "payment", began)
	if stats["sales_order"] != so || stats["payment"] != pay {
		t.Errorf("stats %v, but %d sales orders and %d payments stamped", stats, so, pay)
	}
	if so < 400 || so > 600 || float64(pay) < 0.2*float64(payments) || float64(pay) > 0.3*float64(payments) {
		t.Errorf("changed %d of 2000 sales orders and %d of %d payments, want about a quarter", so, pay, payments)
	}
	if unitsBefore == pgtest.QueryInt(t, url, "SELECT sum(units_sold) FROM sales_order") {
		t.Error("units_sold did not change")
	}
	if n := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment WHERE last_updated >= $1 AND NOT paid", began); n != 0 {
		t.Errorf("%d changed payments unpaid", n)
	}

	for _, f := range []float64{-0.1, 1.5} {
		if _, err := synth.ChangeFraction(ctx, url, f); err == nil || errkind.Of(err) != errkind.ConfigInvalid {
			t.Errorf("fraction %v: err = %v", f, err)
		}
	}
	if _, err := synth.ChangeFraction(ctx, pgtest.NewDatabase(t), 0.1); err == nil || !strings.Contains(err.Error(), "sandstone seed") {
		t.Errorf("no schema: err = %v", err)
	}
	if _, err := synth.ChangeFraction(ctx, "postgres://127.0.0.1:1/x?connect_timeout=5", 0.1); errkind.Of(err) != errkind.SourceUnreachable {
		t.Errorf("unreachable: err = %v", err)
	}
}
