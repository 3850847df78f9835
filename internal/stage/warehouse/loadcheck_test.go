package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// laterSales is batch seq: n new sales versions, on top of world(1).
func laterSales(seq int64, n int) batch {
	b := batch{seq: seq}
	for i := range n {
		b.sales = append(b.sales, sale(int32(100*seq)+int32(i), "2024-01-03", "08:00:00.000", int32(i+1), 100)) // #nosec G115 -- small
	}
	return b
}

// loadLogged loads with a recorder for a logger, failing the test on an error.
func loadLogged(t *testing.T, e *env) *recorder {
	t.Helper()
	rec := &recorder{}
	opts := e.opts()
	opts.Logger = slog.New(rec)
	if _, err := e.loadWith(context.Background(), opts); err != nil {
		t.Fatalf("load: %v", err)
	}
	return rec
}

// loggedPath is what the "table loaded" line of table says of how its rows
// went in: "checked=true table_locks=…", or "" when not set-based.
func loggedPath(rec *recorder, table string) string {
	for _, l := range rec.lines {
		if strings.HasPrefix(l, "table loaded") && strings.Contains(l, "table="+table+" ") && strings.Contains(l, "checked=true") {
			_, locks, _ := strings.Cut(l, "table_locks=")
			locks, _, _ = strings.Cut(locks, " ")
			return "checked=true table_locks=" + locks
		}
	}
	return ""
}

func validForeignKeys(t *testing.T, url string) string {
	t.Helper()
	return joined(query(t, url, `SELECT count(*)::text, bool_and(convalidated)::text FROM pg_constraint
		WHERE contype = 'f' AND conrelid::regclass::text LIKE 'fact\_%'`))
}

func TestSetBasedCheckKeepsTheKeysValid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	e.load(t)
	put(t, e.bucket, laterSales(2, 5))
	rec := loadLogged(t, e)
	if got := loggedPath(rec, "fact_sales_order"); got != "checked=true table_locks=true" {
		t.Errorf("fact_sales_order went in by %q, want checked with the tables locked:\n%s", got, strings.Join(rec.lines, "\n"))
	}
	if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != "6" {
		t.Errorf("fact_sales_order has %s rows, want 6", got)
	}
	if got := validForeignKeys(t, e.url); got != "24|true" {
		t.Errorf("fact table foreign keys (count|validated): %s, want 24|true", got)
	}
}

func TestSetBasedCheckLocksRowsWhenATableIsBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	e.load(t)
	// Another session writes dim_date meanwhile: its lock conflicts with
	// SHARE, so the check locks the referenced rows instead of waiting.
	lockedTx(t, e.url, "LOCK TABLE dim_date IN ROW EXCLUSIVE MODE")
	put(t, e.bucket, laterSales(2, 3))
	rec := loadLogged(t, e)
	if got := loggedPath(rec, "fact_sales_order"); got != "checked=true table_locks=false" {
		t.Errorf("fact_sales_order went in by %q, want checked with row locks:\n%s", got, strings.Join(rec.lines, "\n"))
	}
	// The referenced rows are locked, not the tables: the other session
	// could still write dim_date, and the batch's rows are all there.
	if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != "4" {
		t.Errorf("fact_sales_order has %s rows, want 4", got)
	}
}

func TestSetBasedCheckRefusesAMissingDimension(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		busy   bool // another session writes the referenced table: rows are locked
		values int  // maxKeyValues: 0 reads every key from the new rows
		alter  string
		break_ func(*star.FactSalesOrder)
		fkey   string
		detail string
	}{
		{"tables locked, by values", false, 1 << 18, "", func(s *star.FactSalesOrder) { s.AgreedDeliveryLocationID = 77 },
			"fact_sales_order_agreed_delivery_location_id_fkey", "(agreed_delivery_location_id)=(77)"},
		{"rows locked, by values", true, 1 << 18, "", func(s *star.FactSalesOrder) { s.AgreedDeliveryLocationID = 77 },
			"fact_sales_order_agreed_delivery_location_id_fkey", "(agreed_delivery_location_id)=(77)"},
		{"tables locked, from the rows", false, 0, "", func(s *star.FactSalesOrder) { s.AgreedDeliveryLocationID = 77 },
			"fact_sales_order_agreed_delivery_location_id_fkey", "(agreed_delivery_location_id)=(77)"},
		{"rows locked, from the rows", true, 0, "", func(s *star.FactSalesOrder) { s.AgreedDeliveryLocationID = 77 },
			"fact_sales_order_agreed_delivery_location_id_fkey", "(agreed_delivery_location_id)=(77)"},
		{"a date before 1970, by values", false, 1 << 18, "", func(s *star.FactSalesOrder) { s.AgreedPaymentDate = day("1969-12-31") },
			"fact_sales_order_agreed_payment_date_fkey", "(agreed_payment_date)=(1969-12-31)"},
		{"a date past the dimension, from the rows", true, 0, "", func(s *star.FactSalesOrder) { s.AgreedDeliveryDate = day("2031-06-01") },
			"fact_sales_order_agreed_delivery_date_fkey", "(agreed_delivery_date)=(2031-06-01)"},
		{"an int8 key, by values", false, 1 << 18, "ALTER TABLE fact_sales_order ALTER COLUMN design_id TYPE bigint",
			func(s *star.FactSalesOrder) { s.DesignID = 99 }, "fact_sales_order_design_id_fkey", "(design_id)=(99)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.set.maxKeyValues = tc.values
			put(t, e.bucket, world(1))
			e.load(t)
			if tc.alter != "" {
				pgtest.Exec(t, e.url, tc.alter)
			}
			if tc.busy {
				lockedTx(t, e.url, "LOCK TABLE dim_location, dim_date IN ROW EXCLUSIVE MODE")
			}
			b := laterSales(2, 3)
			tc.break_(&b.sales[1])
			put(t, e.bucket, b)
			_, err := e.loadWith(context.Background(), e.opts())
			if err == nil || !strings.Contains(err.Error(), tc.fkey) || !strings.Contains(err.Error(), tc.detail) ||
				!strings.Contains(err.Error(), "SQLSTATE 23503") {
				t.Fatalf("load of a fact without its dimension row: %v", err)
			}
			if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != "1" {
				t.Errorf("fact_sales_order has %s rows after the failed batch, want 1", got)
			}
			if got := validForeignKeys(t, e.url); got != "24|true" {
				t.Errorf("fact table foreign keys (count|validated): %s, want 24|true", got)
			}
		})
	}
}

func TestSetBasedCheckFindsRowsBelowTheLastID(t *testing.T) {
	t.Parallel()
	// Someone deleted fact rows and set the sequence back, so the batch's
	// ids lie below the table's highest: the keys checked by their values
	// do not care; those read back from the new rows, which are found by
	// their ids, are left to PostgreSQL.
	cases := []struct {
		name   string
		values int // maxKeyValues
		logged string
		detail string
	}{
		{"by values", 1 << 18, "", "Key (design_id) has a value not present in table public.dim_design."},
		{"from the rows", 0, "the new rows' ids are not all past the table's", "violates foreign key constraint"}, // PostgreSQL's own
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.set.maxKeyValues = tc.values
			put(t, e.bucket, world(1))
			put(t, e.bucket, laterSales(2, 3))
			e.load(t)
			pgtest.Exec(t, e.url, `DELETE FROM fact_sales_order WHERE sales_record_id IN (2, 3);
				SELECT setval(pg_get_serial_sequence('fact_sales_order', 'sales_record_id'), 1)`)
			b := laterSales(3, 2)
			b.sales[1].DesignID = 99
			put(t, e.bucket, b)
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			_, err := e.loadWith(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), "fact_sales_order_design_id_fkey") ||
				!strings.Contains(err.Error(), tc.detail) || !strings.Contains(err.Error(), "SQLSTATE 23503") {
				t.Fatalf("load of a fact without its design, below the last id: %v", err)
			}
			if tc.logged != "" && !rec.has(tc.logged) {
				t.Errorf("the load did not notice the ids below the table's:\n%s", strings.Join(rec.snapshot(), "\n"))
			}
			if got := joined(query(t, e.url, "SELECT string_agg(sales_record_id::text, ',' ORDER BY 1) FROM fact_sales_order")); got != "1,4" {
				t.Errorf("fact_sales_order ids after the failed batch: %s, want 1,4", got)
			}
		})
	}
}

func TestSetBasedCheckSkipsATableWithItsOwnTrigger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	e.load(t)
	// Replica mode would silence this trigger too: the table is checked
	// row by row, and the trigger fires.
	pgtest.Exec(t, e.url, `CREATE TABLE sale_audit (sales_order_id int);
		CREATE FUNCTION note_sale() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN INSERT INTO public.sale_audit VALUES (NEW.sales_order_id); RETURN NEW; END $$;
		CREATE TRIGGER note_sale AFTER INSERT ON fact_sales_order FOR EACH ROW EXECUTE FUNCTION note_sale()`)
	put(t, e.bucket, laterSales(2, 2))
	rec := loadLogged(t, e)
	if got := loggedPath(rec, "fact_sales_order"); got != "" {
		t.Errorf("fact_sales_order went in by %q, want row by row", got)
	}
	if got := joined(query(t, e.url, "SELECT count(*)::text FROM sale_audit")); got != "2" {
		t.Errorf("the table's own trigger fired %s times, want 2", got)
	}
}

// TestSetBasedCheckNeedsThePrivilege loads as a role that owns nothing
// and may only write rows: without the right to set
// session_replication_role PostgreSQL checks the keys row by row; with it
// (GRANT SET ON PARAMETER, PostgreSQL 15, the way a managed server's admin
// grants it) the set-based check runs, keeps the keys valid, and still
// refuses a row whose dimension is missing.
func TestSetBasedCheckNeedsThePrivilege(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		role, grant, path string
	}{
		{"sandstone_writer", "", ""},
		{"sandstone_setter", "GRANT SET ON PARAMETER session_replication_role TO sandstone_setter", "checked=true table_locks=true"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			e := newEnv(t)
			owner := e.url
			put(t, e.bucket, world(1))
			e.load(t) // the owner migrates and loads
			e.url = asRole(t, owner, tc.role)
			pgtest.Exec(t, owner, `GRANT USAGE ON SCHEMA public TO `+tc.role+`;
				GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO `+tc.role+`;
				GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO `+tc.role)
			if tc.grant != "" {
				pgtest.Exec(t, owner, tc.grant)
			}
			b := laterSales(2, 2)
			b.payments = []star.FactPayment{payment(1, "2024-01-04", "10:00:00.000", 3, true)}
			put(t, e.bucket, b)
			rec := loadLogged(t, e)
			if got := loggedPath(rec, "fact_sales_order"); got != tc.path {
				t.Errorf("fact_sales_order went in by %q, want %q:\n%s", got, tc.path, strings.Join(rec.lines, "\n"))
			}
			if got := joined(query(t, owner, "SELECT count(*)::text FROM fact_sales_order UNION ALL SELECT count(*)::text FROM fact_payment")); got != "3\n2" {
				t.Errorf("fact row counts:\n%s", got)
			}
			if got := validForeignKeys(t, owner); got != "24|true" {
				t.Errorf("fact table foreign keys (count|validated): %s, want 24|true", got)
			}
			bad := laterSales(3, 1)
			bad.sales[0].DesignID = 999 // no such design
			put(t, e.bucket, bad)
			if _, err := e.loadWith(context.Background(), e.opts()); err == nil || !strings.Contains(err.Error(), "fact_sales_order_design_id_fkey") {
				t.Errorf("a sale of a missing design loaded: %v", err)
			}
			if got := joined(query(t, owner, "SELECT count(*)::text FROM fact_sales_order")); got != "3" {
				t.Errorf("fact_sales_order has %s rows after the refused batch, want 3", got)
			}
		})
	}
}

func TestBulkCheckedInitialLoad(t *testing.T) {
	t.Parallel()
	type breaks struct{ key, detail string }
	design := &breaks{"fact_sales_order_design_id_fkey", "(design_id)=(99)"}
	date := &breaks{"fact_sales_order_agreed_delivery_date_fkey", "(agreed_delivery_date)=(2031-06-01)"}
	for _, tc := range []struct {
		name   string
		busy   bool
		values int // maxKeyValues: 0 leaves every key to the join
		broken *breaks
	}{
		{"values looked up", false, 1 << 18, nil},
		{"values looked up, a design missing", false, 1 << 18, design},
		{"values looked up, a date missing", false, 1 << 18, date},
		{"joined", false, 0, nil},
		{"joined, a design missing", false, 0, design},
		{"joined, a date missing", false, 0, date},
		{"a referenced table busy", true, 1 << 18, nil},
		{"a referenced table busy, a design missing", true, 1 << 18, design},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1 // every batch is big
			e.set.maxKeyValues = tc.values
			e.load(t) // migrates: empty tables
			b := world(1)
			b.sales = append(b.sales, sale(2, "2024-01-02", "11:00:00.000", 3, 300), sale(3, "2024-01-02", "12:00:00.000", 4, 400))
			switch tc.broken {
			case design:
				b.sales[1].DesignID = 99
			case date:
				b.sales[2].AgreedDeliveryDate = day("2031-06-01")
			}
			put(t, e.bucket, b)
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			var other pgx.Tx
			if tc.busy {
				// Another session writes dim_date: the tables cannot be
				// locked at once, and load drops the keys and adds them
				// back instead, which waits for that session to end.
				other = lockedTx(t, e.url, "LOCK TABLE dim_date IN ROW EXCLUSIVE MODE")
			}
			done := make(chan error, 1)
			go func() {
				_, err := e.loadWith(context.Background(), opts)
				done <- err
			}()
			if tc.busy {
				waitFor(t, rec, "is busy: they are dropped and added back")
				if err := other.Rollback(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			err := <-done

			wantRows := "3"
			if tc.broken != nil {
				wantRows = "0"
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "23503" || pgErr.ConstraintName != tc.broken.key ||
					!strings.Contains(pgErr.Detail, tc.broken.detail) {
					t.Fatalf("load of a fact with a key missing: %v; want %s %s", err, tc.broken.key, tc.broken.detail)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != wantRows {
				t.Errorf("fact_sales_order has %s rows, want %s", got, wantRows)
			}
			if got := validForeignKeys(t, e.url); got != "24|true" {
				t.Errorf("fact table foreign keys (count|validated): %s, want 24|true", got)
			}
			if keys := keysOf(t, e.url, `fact\_%`); len(keys) != 6 {
				t.Errorf("fact table keys: %v", keys)
			}
			if tc.broken != nil {
				return
			}
			// Sales orders go first: when busy, only they wait.
			for table, keys := range map[string]int{"fact_sales_order": 9, "fact_purchase_order": 8, "fact_payment": 7} {
				byValues := keys
				if tc.values == 0 {
					byValues = 0
				}
				setBased := rec.has(fmt.Sprintf("foreign keys checked set-based table=%s keys=%d by_values=%d ", table, keys, byValues))
				dropped := rec.has("foreign keys checked in bulk table=" + table + " ")
				if wantDropped := tc.busy && table == "fact_sales_order"; setBased == wantDropped || dropped != wantDropped {
					t.Errorf("%s: checked set-based %v (%d keys by their values), keys dropped and added back %v; want the second only when busy:\n%s",
						table, setBased, byValues, dropped, strings.Join(rec.snapshot(), "\n"))
				}
			}
		})
	}
}

// lockedTx runs lock in a transaction of another session, which holds it
// until the test ends unless rolled back before.
func lockedTx(t *testing.T, url, lock string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close(ctx) })
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, lock); err != nil {
		t.Fatal(err)
	}
	return tx
}

// waitFor waits until rec has a line containing s.
func waitFor(t *testing.T, rec *recorder, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !rec.has(s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q:\n%s", s, strings.Join(rec.snapshot(), "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
