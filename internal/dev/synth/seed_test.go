package synth_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// seeded returns a database seeded with n sales orders up to now.
func seeded(t testing.TB, n int) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if _, err := synth.Seed(context.Background(), url, synth.SeedOptions{SalesOrders: n, RandomSeed: 42}); err != nil {
		t.Fatal(err)
	}
	return url
}

func TestSeedMakesATotesysShapedLikeTheSnapshot(t *testing.T) {
	url := pgtest.NewDatabase(t)
	stats, err := synth.Seed(context.Background(), url, synth.SeedOptions{SalesOrders: 3000, RandomSeed: 42})
	if err != nil {
		t.Fatal(err)
	}
	purchases := int64(math.Round(3000 * 4649.0 / 11187))
	want := map[string]int64{
		"address": 30, "counterparty": 20, "currency": 3, "department": 8, "staff": 20, "payment_type": 4,
		"design":      10 + int64(math.Round(3000*463.0/11187)),
		"sales_order": 3000, "purchase_order": purchases, "transaction": 3000 + purchases, "payment": 3000 + purchases,
	}
	for table, n := range want {
		if stats[table] != n {
			t.Errorf("stats[%s] = %d, want %d", table, stats[table], n)
		}
		if got := pgtest.QueryInt(t, url, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()); got != n {
			t.Errorf("%s has %d rows, want %d", table, got, n)
		}
	}
	if stats.Total() != 3000*3+purchases*3+want["design"]+85 {
		t.Errorf("total %d", stats.Total())
	}

	// Each check counts the rows that break a rule: all must be 0.
	for _, c := range []struct{ name, sql string }{
		{"currencies are GBP, USD, EUR",
			`SELECT count(*) FROM currency WHERE currency_code <> (ARRAY['GBP','USD','EUR'])[currency_id]`},
		{"department 4 is in 'Leds'", `SELECT count(*) FROM department WHERE department_id = 4 AND location <> 'Leds'`},
		{"payment types", `SELECT 4 - count(*) FROM payment_type WHERE payment_type_name::text IN
			('SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND')`},
		{"every sales order has a transaction", `SELECT count(*) FROM sales_order s
			WHERE NOT EXISTS (SELECT 1 FROM transaction t WHERE t.sales_order_id = s.sales_order_id AND t.transaction_type = 'SALE')`},
		{"every purchase order has a transaction", `SELECT count(*) FROM purchase_order p
			WHERE NOT EXISTS (SELECT 1 FROM transaction t WHERE t.purchase_order_id = p.purchase_order_id AND t.transaction_type = 'PURCHASE')`},
		{"every transaction has a payment", `SELECT count(*) FROM transaction t
			WHERE NOT EXISTS (SELECT 1 FROM payment p WHERE p.transaction_id = t.transaction_id)`},
		{"a transaction is one kind", `SELECT count(*) FROM transaction WHERE (sales_order_id IS NULL) = (purchase_order_id IS NULL)`},
		{"sales payments follow their order", `SELECT count(*) FROM payment p JOIN transaction t USING (transaction_id)
			JOIN sales_order s USING (sales_order_id) JOIN payment_type pt USING (payment_type_id)
			WHERE p.payment_amount <> s.units_sold * s.unit_price OR p.counterparty_id <> s.counterparty_id
			OR p.currency_id <> s.currency_id OR p.created_at <> s.created_at OR t.created_at <> s.created_at
			OR p.payment_date <> s.agreed_payment_date OR pt.payment_type_name <> 'SALES_RECEIPT'`},
		{"purchase payments follow their order", `SELECT count(*) FROM payment p JOIN transaction t USING (transaction_id)
			JOIN purchase_order o USING (purchase_order_id) JOIN payment_type pt USING (payment_type_id)
			WHERE p.payment_amount <> o.item_quantity * o.item_unit_price OR p.counterparty_id <> o.counterparty_id
			OR p.currency_id <> o.currency_id OR p.created_at <> o.created_at OR t.created_at <> o.created_at
			OR p.payment_date <> o.agreed_payment_date OR pt.payment_type_name <> 'PURCHASE_PAYMENT'`},
		{"paid 13h to 6d after creation", `SELECT count(*) FROM payment
			WHERE paid AND last_updated - created_at NOT BETWEEN interval '13 hours' AND interval '6 days'`},
		{"unpaid payments never changed", `SELECT count(*) FROM payment WHERE NOT paid AND last_updated <> created_at`},
		{"orders never changed", `SELECT count(*) FROM (SELECT created_at, last_updated FROM sales_order
			UNION ALL SELECT created_at, last_updated FROM purchase_order UNION ALL SELECT created_at, last_updated FROM transaction) o
			WHERE last_updated <> created_at`},
		{"orders in working-hour bursts at about HH:MM:10", `SELECT count(*) FROM (SELECT created_at FROM sales_order
			UNION ALL SELECT created_at FROM purchase_order) o
			WHERE extract(isodow FROM created_at) > 5 OR extract(hour FROM created_at) NOT BETWEEN 8 AND 18
			OR extract(second FROM created_at) NOT BETWEEN 9.5 AND 10.6`},
		{"orders after the reference data", `SELECT count(*) FROM sales_order WHERE created_at <= '2022-11-03 14:20:51.563'`},
		{"text dates", `SELECT count(*) FROM (
			SELECT created_at, agreed_delivery_date AS d, 7 AS days FROM sales_order UNION ALL
			SELECT created_at, agreed_payment_date, 6 FROM sales_order UNION ALL
			SELECT created_at, agreed_delivery_date, 7 FROM purchase_order UNION ALL
			SELECT created_at, agreed_payment_date, 6 FROM purchase_order UNION ALL
			SELECT created_at, payment_date, 6 FROM payment) x
			WHERE d !~ '^\d{4}-\d{2}-\d{2}$' OR d::date NOT BETWEEN created_at::date AND created_at::date + days`},
		{"money has cents", `SELECT count(*) FROM sales_order WHERE unit_price NOT BETWEEN 2 AND 4 OR scale(unit_price) <> 2`},
	} {
		if n := pgtest.QueryInt(t, url, c.sql); n != 0 {
			t.Errorf("%s: %d rows break it", c.name, n)
		}
	}

	// Every timestamp has milliseconds at most and none is in the future.
	for _, tbl := range totesys.Tables {
		ident := pgx.Identifier{tbl.Name}.Sanitize()
		if n := pgtest.QueryInt(t, url, `SELECT count(*) FROM `+ident+`
			WHERE greatest(created_at, last_updated) > now() AT TIME ZONE 'UTC'
			OR created_at > last_updated
			OR date_trunc('milliseconds', created_at) <> created_at OR date_trunc('milliseconds', last_updated) <> last_updated`); n != 0 {
			t.Errorf("%s: %d rows with bad timestamps", tbl.Name, n)
		}
		// The sequence is past the data: the next id is max + 1.
		next := pgtest.QueryInt(t, url, "SELECT nextval(pg_get_serial_sequence($1, $2))", tbl.Name, tbl.Key)
		if max := pgtest.QueryInt(t, url, "SELECT max("+pgx.Identifier{tbl.Key}.Sanitize()+") FROM "+ident); next != max+1 {
			t.Errorf("%s: next id %d, max %d", tbl.Name, next, max)
		}
	}

	// Shares like the snapshot's.
	paid := pgtest.QueryInt(t, url, "SELECT count(*) FROM payment WHERE paid")
	if share := float64(paid) / float64(want["payment"]); share < 0.5 || share > 0.7 {
		t.Errorf("%.2f of payments paid, want about 0.61", share)
	}
	if n := pgtest.QueryInt(t, url, "SELECT count(DISTINCT created_at::date) FROM design WHERE design_id > 10"); n < 50 {
		t.Errorf("designs were added on %d days only", n)
	}
	// As in the snapshot, an order now and then refers to a design stamped
	// later than itself, but most designs exist before their orders.
	if n := pgtest.QueryInt(t, url, `SELECT count(*) FROM sales_order s JOIN design d USING (design_id)
		WHERE d.created_at > s.created_at`); n > 30 {
		t.Errorf("%d of 3000 orders refer to designs made after them", n)
	}
	// The schema's foreign keys are all there (Seed sets them aside while
	// loading): the same as a database made from the plain DDL.
	plain := pgtest.NewDatabase(t)
	pgtest.Exec(t, plain, totesys.Schema)
	if got, want := foreignKeys(t, url), foreignKeys(t, plain); got != want || !strings.Contains(got, "payment_transaction_id_fkey") {
		t.Errorf("foreign keys after seeding:\n%s\nwant:\n%s", got, want)
	}
}

func foreignKeys(t *testing.T, url string) string {
	t.Helper()
	var s string
	pgtest.Scan(t, url, []any{&s}, `SELECT string_agg(fk, E'\n' ORDER BY fk) FROM (
		SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS fk
		FROM pg_constraint WHERE contype = 'f') x`)
	return s
}

// digest returns an md5 of every row of every table.
func digest(t *testing.T, url string) string {
	t.Helper()
	var parts []string
	for _, tbl := range totesys.Tables {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		var s string
		err = conn.QueryRow(ctx, "SELECT md5(string_agg(x::text, '|' ORDER BY "+pgx.Identifier{tbl.Key}.Sanitize()+
			")) FROM "+pgx.Identifier{tbl.Name}.Sanitize()+" x").Scan(&s)
		_ = conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, tbl.Name+"="+s)
	}
	return strings.Join(parts, " ")
}

func TestSeedIsDeterministic(t *testing.T) {
	ctx := context.Background()
	opts := synth.SeedOptions{SalesOrders: 500, RandomSeed: 7, End: time.Date(2024, 11, 15, 14, 40, 10, 188_000_000, time.UTC)}
	var digests []string
	for _, seed := range []int64{7, 7, 8} {
		url := pgtest.NewDatabase(t)
		o := opts
		o.RandomSeed = seed
		if _, err := synth.Seed(ctx, url, o); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, digest(t, url))
	}
	if digests[0] != digests[1] {
		t.Errorf("the same seed gave different data:\n%s\n%s", digests[0], digests[1])
	}
	if digests[0] == digests[2] {
		t.Error("different seeds gave the same data")
	}
}

func TestSeedWithoutOrdersMakesReferenceDataOnly(t *testing.T) {
	url := pgtest.NewDatabase(t)
	stats, err := synth.Seed(context.Background(), url, synth.SeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats["sales_order"] != 0 || stats["payment"] != 0 || stats["design"] != 10 || stats["address"] != 30 {
		t.Errorf("stats %v", stats)
	}
	if next := pgtest.QueryInt(t, url, "SELECT nextval(pg_get_serial_sequence('sales_order', 'sales_order_id'))"); next != 1 {
		t.Errorf("next sales order id %d, want 1", next)
	}
}

func TestSeedRefusesADatabaseWithTotesys(t *testing.T) {
	ctx := context.Background()
	url := seeded(t, 100)
	before := digest(t, url)
	_, err := synth.Seed(ctx, url, synth.SeedOptions{SalesOrders: 100})
	if err == nil || !strings.Contains(err.Error(), "already has totesys objects (address, counterparty,") ||
		errkind.Of(err) != errkind.SourceSchemaMismatch {
		t.Fatalf("seeding a seeded database: err = %v", err)
	}
	if digest(t, url) != before {
		t.Error("the refused seed changed the data")
	}

	// A lone totesys type is enough to refuse; other tables are no bar.
	url = pgtest.NewDatabase(t)
	pgtest.Exec(t, url, `CREATE TYPE "TransactionType" AS ENUM ('SALE'); CREATE TABLE _prisma_migrations (id int)`)
	if _, err := synth.Seed(ctx, url, synth.SeedOptions{}); err == nil || !strings.Contains(err.Error(), "(TransactionType)") {
		t.Fatalf("err = %v", err)
	}
	url = pgtest.NewDatabase(t)
	pgtest.Exec(t, url, `CREATE TABLE _prisma_migrations (id int)`)
	if _, err := synth.Seed(ctx, url, synth.SeedOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestSeedErrors(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	for _, tc := range []struct {
		name string
		url  string
		opts synth.SeedOptions
		kind errkind.Kind
		want string
	}{
		{"negative size", url, synth.SeedOptions{SalesOrders: -5}, errkind.ConfigInvalid, "0 or more"},
		{"end before start", url, synth.SeedOptions{SalesOrders: 5, Start: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC),
			End: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}, errkind.ConfigInvalid, "must end after it starts"},
		{"unreachable", "postgres://sandstone:s3cret@127.0.0.1:1/totesys?connect_timeout=5", synth.SeedOptions{},
			errkind.SourceUnreachable, "connect to source"},
		{"bad URL", "postgres://sandstone:s3cret@127.0.0.1:notaport/totesys", synth.SeedOptions{},
			errkind.ConfigInvalid, "source URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := synth.Seed(ctx, tc.url, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errkind.Of(err) != tc.kind {
				t.Fatalf("err = %v (kind %s), want %q of kind %s", err, errkind.Of(err), tc.want, tc.kind)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	if n := pgtest.QueryInt(t, url, "SELECT count(*) FROM pg_class WHERE relname = 'address'"); n != 0 {
		t.Error("a failed seed left tables behind")
	}
}

func TestSeedStopsWhenCancelled(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := synth.Seed(ctx, url, synth.SeedOptions{SalesOrders: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestStats(t *testing.T) {
	s := synth.Stats{"payment": 4, "sales_order": 3, "design": 0}
	if s.Total() != 7 || s.String() != "sales_order 3, payment 4" {
		t.Errorf("Total %d, String %q", s.Total(), s.String())
	}
	if (synth.Stats{}).String() != "no rows" {
		t.Error("empty stats")
	}
}

// BenchmarkSeed seeds 20,000 sales orders (about 86,000 rows) per op.
func BenchmarkSeed(b *testing.B) {
	const orders = 20000
	var rows int64
	for b.Loop() {
		b.StopTimer()
		url := pgtest.NewDatabase(b)
		b.StartTimer()
		stats, err := synth.Seed(context.Background(), url, synth.SeedOptions{SalesOrders: orders, RandomSeed: 1})
		if err != nil {
			b.Fatal(err)
		}
		rows = stats.Total()
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
