package warehouse

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// designSchema is the warehouse of docs/design.md, column by column, as
// information_schema reports it.
const designSchema = `dim_counterparty: counterparty_id integer not null, counterparty_legal_name character varying not null, counterparty_legal_address_line_1 character varying not null, counterparty_legal_address_line_2 character varying null, counterparty_legal_district character varying null, counterparty_legal_city character varying not null, counterparty_legal_postal_code character varying not null, counterparty_legal_country character varying not null, counterparty_legal_phone_number character varying not null
dim_currency: currency_id integer not null, currency_code character varying not null, currency_name character varying not null
dim_date: date_id date not null, year integer not null, month integer not null, day integer not null, day_of_week integer not null, day_name character varying not null, month_name character varying not null, quarter integer not null
dim_design: design_id integer not null, design_name character varying not null, file_location character varying not null, file_name character varying not null
dim_location: location_id integer not null, address_line_1 character varying not null, address_line_2 character varying null, district character varying null, city character varying not null, postal_code character varying not null, country character varying not null, phone character varying not null
dim_payment_type: payment_type_id integer not null, payment_type_name character varying not null
dim_staff: staff_id integer not null, first_name character varying not null, last_name character varying not null, department_name character varying not null, location character varying not null, email_address character varying not null
dim_transaction: transaction_id integer not null, transaction_type character varying not null, sales_order_id integer null, purchase_order_id integer null
fact_payment: payment_record_id integer not null serial, payment_id integer not null, created_date date not null, created_time time without time zone not null, last_updated_date date not null, last_updated time without time zone not null, transaction_id integer not null, counterparty_id integer not null, payment_amount numeric(10,2) not null, currency_id integer not null, payment_type_id integer not null, paid boolean not null, payment_date date not null
fact_purchase_order: purchase_record_id integer not null serial, purchase_order_id integer not null, created_date date not null, created_time time without time zone not null, last_updated_date date not null, last_updated_time time without time zone not null, staff_id integer not null, counterparty_id integer not null, item_code character varying not null, item_quantity integer not null, item_unit_price numeric(10,2) not null, currency_id integer not null, agreed_delivery_date date not null, agreed_payment_date date not null, agreed_delivery_location_id integer not null
fact_sales_order: sales_record_id integer not null serial, sales_order_id integer not null, created_date date not null, created_time time without time zone not null, last_updated_date date not null, last_updated_time time without time zone not null, sales_staff_id integer not null, counterparty_id integer not null, units_sold integer not null, unit_price numeric(10,2) not null, currency_id integer not null, design_id integer not null, agreed_payment_date date not null, agreed_delivery_date date not null, agreed_delivery_location_id integer not null
sandstone_corrections: fact_table text not null, record_id bigint not null, source_id integer not null, batch text not null, corrected_at timestamp with time zone not null, old_values jsonb not null, new_values jsonb not null
sandstone_deletions: source_table text not null, id integer not null, seen_gone_at timestamp with time zone not null, batch text not null
sandstone_loads: sequence bigint not null, batch text not null, rows jsonb not null, source_newest timestamp with time zone null, loaded_at timestamp with time zone not null, seconds double precision not null, run_id text null, manifest_sha256 text null
sandstone_migrations: version integer not null, name text not null, applied_at timestamp with time zone not null`

// designKeys are the primary, unique and foreign keys docs/design.md asks for.
const designKeys = `dim_counterparty p (counterparty_id)
dim_currency p (currency_id)
dim_date p (date_id)
dim_design p (design_id)
dim_location p (location_id)
dim_payment_type p (payment_type_id)
dim_staff p (staff_id)
dim_transaction p (transaction_id)
fact_payment f (counterparty_id) dim_counterparty(counterparty_id)
fact_payment f (created_date) dim_date(date_id)
fact_payment f (currency_id) dim_currency(currency_id)
fact_payment f (last_updated_date) dim_date(date_id)
fact_payment f (payment_date) dim_date(date_id)
fact_payment f (payment_type_id) dim_payment_type(payment_type_id)
fact_payment f (transaction_id) dim_transaction(transaction_id)
fact_payment p (payment_record_id)
fact_payment u (last_updated_date, last_updated, payment_id)
fact_purchase_order f (agreed_delivery_date) dim_date(date_id)
fact_purchase_order f (agreed_delivery_location_id) dim_location(location_id)
fact_purchase_order f (agreed_payment_date) dim_date(date_id)
fact_purchase_order f (counterparty_id) dim_counterparty(counterparty_id)
fact_purchase_order f (created_date) dim_date(date_id)
fact_purchase_order f (currency_id) dim_currency(currency_id)
fact_purchase_order f (last_updated_date) dim_date(date_id)
fact_purchase_order f (staff_id) dim_staff(staff_id)
fact_purchase_order p (purchase_record_id)
fact_purchase_order u (last_updated_date, last_updated_time, purchase_order_id)
fact_sales_order f (agreed_delivery_date) dim_date(date_id)
fact_sales_order f (agreed_delivery_location_id) dim_location(location_id)
fact_sales_order f (agreed_payment_date) dim_date(date_id)
fact_sales_order f (counterparty_id) dim_counterparty(counterparty_id)
fact_sales_order f (created_date) dim_date(date_id)
fact_sales_order f (currency_id) dim_currency(currency_id)
fact_sales_order f (design_id) dim_design(design_id)
fact_sales_order f (last_updated_date) dim_date(date_id)
fact_sales_order f (sales_staff_id) dim_staff(staff_id)
fact_sales_order p (sales_record_id)
fact_sales_order u (last_updated_date, last_updated_time, sales_order_id)
sandstone_corrections p (fact_table, record_id, batch)
sandstone_deletions p (source_table, id)
sandstone_loads p (sequence)
sandstone_migrations p (version)`

func schemaOfDB(t *testing.T, url, s string) (cols, keys string) {
	t.Helper()
	cols = joined(query(t, url, `SELECT table_name || ': ' || string_agg(column_name || ' ' ||
			CASE WHEN data_type = 'numeric' THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) ELSE data_type END ||
			CASE WHEN is_nullable = 'YES' THEN ' null' ELSE ' not null' END ||
			CASE WHEN column_default LIKE 'nextval%' THEN ' serial' ELSE '' END, ', ' ORDER BY ordinal_position)
		FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name ORDER BY table_name`, s))
	keys = joined(query(t, url, `SELECT c.conrelid::regclass::text, c.contype::text,
			substring(pg_get_constraintdef(c.oid) from '\(.*') FROM pg_constraint c
		JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 ORDER BY 1, 2, 3`, s))
	keys = strings.ReplaceAll(keys, "|", " ")
	keys = strings.ReplaceAll(keys, ") REFERENCES ", ") ")
	return cols, keys
}

func TestMigrationCreatesTheDesignSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.load(t) // no batches: only the schema
	cols, keys := schemaOfDB(t, e.url, "public")
	if cols != designSchema {
		t.Errorf("columns:\n%s\nwant\n%s", cols, designSchema)
	}
	if keys != designKeys {
		t.Errorf("keys:\n%s\nwant\n%s", keys, designKeys)
	}
	if got := joined(query(t, e.url, "SELECT version::text, name FROM sandstone_migrations ORDER BY version")); got != "1|create the star schema and the load ledger\n"+
		"2|record each loaded batch's identity in the load ledger\n3|record the source rows found deleted\n"+
		"4|put the time first in the facts' version keys\n5|record the corrections of fact rows" {
		t.Errorf("migrations: %s", got)
	}
	e.load(t) // a second run migrates nothing
	if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM sandstone_migrations"); n != int64(len(migrations)) {
		t.Errorf("%d migrations recorded", n)
	}
}

func TestTablesMatchStar(t *testing.T) {
	t.Parallel()
	names := TableNames()
	if len(names) != len(star.Tables) {
		t.Fatalf("%d tables", len(names))
	}
	for i, st := range star.Tables {
		if names[i] != st.Name {
			t.Errorf("table %d is %s, star has %s", i, names[i], st.Name)
		}
	}
	if _, err := fieldsFor(typeOf[star.DimStaff](), []column{text("nope")}); err == nil {
		t.Error("a column without a field was bound")
	}
	if _, err := fieldsFor(typeOf[star.DimStaff](), []column{{name: "first_name", typ: star.Text, nullable: true}}); err == nil {
		t.Error("a nullable column was bound to a non-pointer field")
	}
	if _, err := fieldsFor(typeOf[star.DimStaff](), []column{{name: "first_name", typ: star.Int}}); err == nil {
		t.Error("an int column was bound to a string field")
	}
}

// text is a text column, for tests that add one to a table.
func text(name string) column { return column{name: name, typ: star.Text} }

// northcodersDDL is a warehouse as a totesys team might be given it: the
// ERD's tables with looser types (bigint, text, varchar(n), unconstrained
// numeric, time(3)) and no keys of any kind.
const northcodersDDL = `
CREATE TABLE dim_date (date_id date, year int, month int, day int, day_of_week int, day_name varchar(10), month_name varchar(10), quarter int);
CREATE TABLE dim_staff (staff_id bigint, first_name text, last_name text, department_name text, location text, email_address varchar(200));
CREATE TABLE dim_location (location_id int, address_line_1 varchar, address_line_2 varchar, district varchar, city varchar, postal_code varchar, country varchar, phone varchar);
CREATE TABLE dim_currency (currency_id int, currency_code varchar(3), currency_name varchar);
CREATE TABLE dim_design (design_id int, design_name varchar, file_location varchar, file_name varchar);
CREATE TABLE dim_counterparty (counterparty_id int, counterparty_legal_name varchar, counterparty_legal_address_line_1 varchar,
	counterparty_legal_address_line_2 varchar, counterparty_legal_district varchar, counterparty_legal_city varchar,
	counterparty_legal_postal_code varchar, counterparty_legal_country varchar, counterparty_legal_phone_number varchar);
CREATE TABLE dim_payment_type (payment_type_id int, payment_type_name varchar);
CREATE TABLE dim_transaction (transaction_id int, transaction_type varchar, sales_order_id int, purchase_order_id int);
CREATE TABLE fact_sales_order (sales_record_id bigint GENERATED ALWAYS AS IDENTITY, sales_order_id int, created_date date, created_time time(3),
	last_updated_date date, last_updated_time time, sales_staff_id int, counterparty_id int, units_sold int, unit_price numeric,
	currency_id int, design_id int, agreed_payment_date date, agreed_delivery_date date, agreed_delivery_location_id int,
	note text DEFAULT 'x' NOT NULL);
CREATE TABLE fact_purchase_order (purchase_record_id serial, purchase_order_id int, created_date date, created_time time,
	last_updated_date date, last_updated_time time, staff_id int, counterparty_id int, item_code varchar, item_quantity int,
	item_unit_price numeric(12,4), currency_id int, agreed_delivery_date date, agreed_payment_date date, agreed_delivery_location_id int);
CREATE TABLE fact_payment (payment_record_id serial, payment_id int, created_date date, created_time time, last_updated_date date,
	last_updated time, transaction_id int, counterparty_id int, payment_amount numeric(10,2), currency_id int, payment_type_id int,
	paid boolean, payment_date date);
`

func TestPreparedWarehouseWithoutKeysWorks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pgtest.Exec(t, e.url, northcodersDDL)
	put(t, e.bucket, world(1))
	b2 := batch{seq: 2,
		staff: []star.DimStaff{{StaffID: 2, FirstName: "Deron", LastName: "Beier", DepartmentName: "Dispatch",
			Location: "Leeds", EmailAddress: "d"}, {StaffID: 3, FirstName: "New", LastName: "Hire", DepartmentName: "Dispatch",
			Location: "Leeds", EmailAddress: "n"}, {StaffID: 3, FirstName: "New", LastName: "Hire", DepartmentName: "Sales",
			Location: "Leeds", EmailAddress: "n"}},
		dates: dimDates("2024-01-30", "2024-02-02"),
		// One version already loaded, one new version twice.
		sales: []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 50, 1234),
			sale(1, "2024-01-03", "10:00:00.000", 51, 1234), sale(1, "2024-01-03", "10:00:00.000", 51, 1234)}}
	put(t, e.bucket, b2)
	var logs strings.Builder
	opts := e.opts()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	res, err := e.loadWith(context.Background(), opts)
	if err != nil || len(res.Batches) != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(logs.String(), "left as they are, without Sandstone's foreign keys") || !strings.Contains(logs.String(), "fact_sales_order") {
		t.Errorf("the tables left without foreign keys are not logged:\n%s", logs.String())
	}
	if got := res.Batches[1].Rows; got["dim_staff"] != 2 || got["dim_date"] != 2 || got["fact_sales_order"] != 1 {
		t.Errorf("batch 2 wrote %v: want 2 staff (one changed, one new), 2 new dates, 1 new version", got)
	}
	checks := []struct{ sql, want string }{
		{"SELECT staff_id::text, department_name FROM dim_staff ORDER BY 1", "1|Purchasing\n2|Dispatch\n3|Sales"},
		{"SELECT count(*)::text FROM dim_date", "40"},
		{"SELECT sales_record_id::text, units_sold::text, unit_price::text, created_time::text, note FROM fact_sales_order ORDER BY 1",
			"1|50|12.34|10:11:12.345|x\n2|51|12.34|10:11:12.345|x"},
		{"SELECT item_unit_price::text FROM fact_purchase_order", "999999.9900"},
	}
	for _, c := range checks {
		if got := joined(query(t, e.url, c.sql)); got != c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.sql, got, c.want)
		}
	}
	if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'fact_sales_order'::regclass"); n != 0 {
		t.Errorf("load added %d constraints to a table it did not create", n)
	}
}

func TestPreparedWarehouseThatDoesNotFit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, alter string
		want        []string
	}{
		{"missing column", "ALTER TABLE fact_payment DROP COLUMN paid",
			[]string{"fact_payment.paid is missing (want bool)"}},
		{"mistyped column", "ALTER TABLE fact_sales_order ALTER unit_price TYPE real",
			[]string{"fact_sales_order.unit_price is real, want numeric(10,2)"}},
		{"several problems", `ALTER TABLE dim_date ALTER date_id TYPE text;
			ALTER TABLE dim_staff ALTER staff_id TYPE smallint;
			ALTER TABLE fact_payment ALTER payment_amount TYPE numeric(6,2);
			ALTER TABLE fact_payment ALTER created_time TYPE time(0);
			ALTER TABLE dim_currency ALTER currency_name TYPE char(20);`,
			[]string{"dim_date.date_id is text, want date", "dim_staff.staff_id is smallint, want int",
				"fact_payment.payment_amount is numeric(6,2), want numeric(10,2)",
				"fact_payment.created_time is time(0) without time zone, want time (with at least millisecond precision)",
				"dim_currency.currency_name is character(20), want varchar"}},
		{"nullable column declared NOT NULL", "ALTER TABLE dim_location ALTER district SET NOT NULL",
			[]string{"dim_location.district is NOT NULL, but its values may be NULL"}},
		{"fact id without a default", "ALTER TABLE fact_payment ALTER payment_record_id DROP DEFAULT",
			[]string{"fact_payment.payment_record_id has no default"}},
		{"an extra column load cannot fill", "ALTER TABLE dim_design ADD COLUMN owner text NOT NULL",
			[]string{"dim_design.owner is NOT NULL without a default"}},
		{"a generated column", "ALTER TABLE dim_design DROP COLUMN file_name, ADD COLUMN file_name text GENERATED ALWAYS AS (design_name) STORED",
			[]string{"dim_design.file_name is a generated column"}},
		{"a missing table", "DROP TABLE dim_transaction", []string{"table dim_transaction is missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			pgtest.Exec(t, e.url, northcodersDDL)
			pgtest.Exec(t, e.url, "ALTER TABLE fact_sales_order DROP COLUMN note")
			pgtest.Exec(t, e.url, tc.alter)
			if tc.name == "a missing table" {
				// A table that is missing is created, unless the check fails
				// for another reason: make it fail for one.
				pgtest.Exec(t, e.url, "ALTER TABLE dim_staff DROP COLUMN location")
				tc.want = []string{"dim_staff.location is missing"}
			}
			put(t, e.bucket, world(1))
			loadRefused(t, e, tc.want)
			// Nothing written: not even Sandstone's own tables, nor the table
			// that was missing.
			if got := joined(query(t, e.url, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables
				WHERE schemaname = 'public' AND (tablename LIKE 'sandstone%' OR tablename = 'dim_transaction' AND $1)`,
				tc.name == "a missing table")); got != "NULL" {
				t.Errorf("tables written by a refused load: %s", got)
			}
			if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM dim_date"); n != 0 {
				t.Errorf("dim_date has %d rows", n)
			}
		})
	}
}

func TestPreparedWarehouseGainsMissingTablesWithKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Only the dimensions exist, with primary keys: load creates the facts,
	// with foreign keys to them.
	pgtest.Exec(t, e.url, strings.Split(northcodersDDL, "CREATE TABLE fact_sales_order")[0])
	pgtest.Exec(t, e.url, `ALTER TABLE dim_staff ADD PRIMARY KEY (staff_id); ALTER TABLE dim_date ADD PRIMARY KEY (date_id)`)
	put(t, e.bucket, world(1))
	e.load(t)
	fks := joined(query(t, e.url, `SELECT confrelid::regclass::text FROM pg_constraint
		WHERE conrelid = 'fact_payment'::regclass AND contype = 'f' ORDER BY 1`))
	if fks != "dim_date\ndim_date\ndim_date" {
		t.Errorf("fact_payment's foreign keys reach %q, want dim_date only (the one keyed dimension it uses)", fks)
	}
	if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM fact_payment"); n != 1 {
		t.Errorf("fact_payment has %d rows", n)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.load(t)
	pgtest.Exec(t, e.url, "INSERT INTO sandstone_migrations (version, name) VALUES ($1, 'from the future')", len(migrations)+1)
	_, err := e.loadWith(context.Background(), e.opts())
	if errkind.Of(err) != errkind.WarehouseSchemaMismatch || !strings.Contains(err.Error(), fmt.Sprintf("migration %d", len(migrations)+1)) {
		t.Fatalf("load on a newer schema: %v", err)
	}
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }
