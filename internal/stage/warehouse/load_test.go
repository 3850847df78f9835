package warehouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

func TestLoadWritesExactValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	res := e.load(t)
	if len(res.Batches) != 1 || res.Batches[0].Sequence != 1 || res.Pending != 0 || len(res.Skipped) != 0 {
		t.Fatalf("result %+v", res)
	}
	wantRows := map[string]int64{"dim_date": 38, "dim_staff": 2, "dim_location": 2, "dim_currency": 2, "dim_design": 2,
		"dim_counterparty": 2, "dim_payment_type": 2, "dim_transaction": 2,
		"fact_sales_order": 1, "fact_purchase_order": 1, "fact_payment": 1}
	if !maps.Equal(res.Batches[0].Rows, wantRows) {
		t.Fatalf("rows written %v, want %v", res.Batches[0].Rows, wantRows)
	}

	tests := []struct{ name, sql, want string }{
		{"dim_date leap-free new year", `SELECT date_id::text, year::text, month::text, day::text, day_of_week::text,
			day_name, month_name, quarter::text FROM dim_date WHERE date_id IN ('2023-12-31', '2024-01-01') ORDER BY 1`,
			"2023-12-31|2023|12|31|7|Sunday|December|4\n2024-01-01|2024|1|1|1|Monday|January|1"},
		{"dim_staff", `SELECT staff_id::text, first_name, last_name, department_name, location, email_address FROM dim_staff ORDER BY 1`,
			"1|Jeremie|Franey|Purchasing|Manchester|jeremie.franey@terrifictotes.com\n2|Deron|Beier|Facilities|Leds|deron.beier@terrifictotes.com"},
		{"dim_location nullable columns", `SELECT location_id::text, address_line_1, address_line_2, district, city, postal_code, country, phone
			FROM dim_location ORDER BY 1`,
			"1|6826 Herzog Via|NULL|NULL|New Patienceburgh|28441|Turkey|1803 637401\n" +
				"2|179 Alexie Cliffs|Flat 1|Avon|Aliso Viejo|99305-7380|San Marino|9621 880720"},
		{"dim_currency", `SELECT currency_id::text, currency_code, currency_name FROM dim_currency ORDER BY 1`,
			"1|GBP|Pound Sterling\n2|USD|US Dollar"},
		{"dim_design", `SELECT design_id::text, design_name, file_location, file_name FROM dim_design ORDER BY 1`,
			"1|Wooden|/usr|wooden-20220717-npgz.json\n2|Steel|/private|steel-20221103-abcd.json"},
		{"dim_counterparty", `SELECT counterparty_id::text, counterparty_legal_name, counterparty_legal_address_line_1,
			counterparty_legal_address_line_2, counterparty_legal_district, counterparty_legal_city,
			counterparty_legal_postal_code, counterparty_legal_country, counterparty_legal_phone_number FROM dim_counterparty ORDER BY 1`,
			"1|Fahey and Sons|6826 Herzog Via|NULL|NULL|New Patienceburgh|28441|Turkey|1803 637401\n" +
				"2|Leannon, Predovic and Morar|179 Alexie Cliffs|Flat 1|Avon|Aliso Viejo|99305-7380|San Marino|9621 880720"},
		{"dim_payment_type", `SELECT payment_type_id::text, payment_type_name FROM dim_payment_type ORDER BY 1`,
			"1|SALES_RECEIPT\n3|PURCHASE_PAYMENT"},
		{"dim_transaction nullable ids", `SELECT transaction_id::text, transaction_type, sales_order_id::text, purchase_order_id::text
			FROM dim_transaction ORDER BY 1`, "1|SALE|1|NULL\n2|PURCHASE|NULL|1"},
		{"fact_sales_order", `SELECT sales_record_id::text, sales_order_id::text, created_date::text, created_time::text,
			last_updated_date::text, last_updated_time::text, sales_staff_id::text, counterparty_id::text, units_sold::text,
			unit_price::text, currency_id::text, design_id::text, agreed_payment_date::text, agreed_delivery_date::text,
			agreed_delivery_location_id::text FROM fact_sales_order`,
			"1|1|2024-01-02|10:11:12.345|2024-01-02|10:11:12.345|2|1|50|12.34|1|2|2024-01-05|2024-01-07|2"},
		{"fact_purchase_order", `SELECT purchase_record_id::text, purchase_order_id::text, created_date::text, created_time::text,
			last_updated_date::text, last_updated_time::text, staff_id::text, counterparty_id::text, item_code,
			item_quantity::text, item_unit_price::text, currency_id::text, agreed_delivery_date::text,
			agreed_payment_date::text, agreed_delivery_location_id::text FROM fact_purchase_order`,
			"1|1|2024-01-02|09:00:00.001|2024-01-02|09:00:00.001|1|2|ZDOI5EA|7|999999.99|2|2024-01-10|2024-01-31|1"},
		{"fact_payment", `SELECT payment_record_id::text, payment_id::text, created_date::text, created_time::text,
			last_updated_date::text, last_updated::text, transaction_id::text, counterparty_id::text, payment_amount::text,
			currency_id::text, payment_type_id::text, paid::text, payment_date::text FROM fact_payment`,
			"1|1|2024-01-02|23:59:59.999|2024-01-02|23:59:59.999|1|1|0.02|1|1|false|2024-01-03"},
		{"ledger", `SELECT sequence::text, batch, rows->>'fact_payment', source_newest::text FROM sandstone_loads`,
			"1|000000000001|1|2024-01-02 10:11:12.345+00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := joined(query(t, e.url, tc.sql)); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestDimensionsTakeTheLatestValueFactsKeepHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	// Batch 2: staff 2 moves department, location 1 gains a second line,
	// sales order 1 changes (a new version), payment 1 is paid; the dates
	// overlap batch 1's.
	b2 := batch{seq: 2, dates: dimDates("2024-01-01", "2024-02-29"),
		staff: []star.DimStaff{{StaffID: 2, FirstName: "Deron", LastName: "Beier", DepartmentName: "Dispatch",
			Location: "Leeds", EmailAddress: "deron.beier@terrifictotes.com"}},
		locations: []star.DimLocation{
			{LocationID: 1, AddressLine1: "6826 Herzog Via", AddressLine2: ptr("Unit 2"), City: "New Patienceburgh",
				PostalCode: "28441", Country: "Turkey", Phone: "1803 637401"},
			{LocationID: 2, AddressLine1: "179 Alexie Cliffs", AddressLine2: ptr("Flat 1"), District: ptr("Avon"),
				City: "Aliso Viejo", PostalCode: "99305-7380", Country: "San Marino", Phone: "9621 880720"}, // unchanged
		},
		sales:    []star.FactSalesOrder{sale(1, "2024-02-29", "08:00:00.000", 75, 1299)},
		payments: []star.FactPayment{payment(1, "2024-01-03", "07:00:00.500", 2, true)},
	}
	put(t, e.bucket, b2)
	// Batch 3 holds two rows of the same staff key: the last one wins.
	put(t, e.bucket, batch{seq: 3, staff: []star.DimStaff{
		{StaffID: 1, FirstName: "J", LastName: "F", DepartmentName: "Purchasing", Location: "Manchester", EmailAddress: "old"},
		{StaffID: 1, FirstName: "Jeremie", LastName: "Franey", DepartmentName: "Sales", Location: "Manchester", EmailAddress: "new"},
	}})
	res := e.load(t)
	if len(res.Batches) != 3 {
		t.Fatalf("loaded %d batches, want 3", len(res.Batches))
	}
	if got, want := res.Batches[1].Rows, map[string]int64{"dim_date": 29, "dim_staff": 1, "dim_location": 1,
		"fact_sales_order": 1, "fact_payment": 1}; !maps.Equal(got, want) {
		t.Errorf("batch 2 wrote %v, want %v (unchanged location 2 untouched, only new dates)", got, want)
	}
	checks := []struct{ sql, want string }{
		{"SELECT staff_id::text, department_name, location, email_address FROM dim_staff ORDER BY 1",
			"1|Sales|Manchester|new\n2|Dispatch|Leeds|deron.beier@terrifictotes.com"},
		{"SELECT location_id::text, coalesce(address_line_2, 'NULL') FROM dim_location ORDER BY 1", "1|Unit 2\n2|Flat 1"},
		{"SELECT count(*)::text, min(date_id)::text, max(date_id)::text FROM dim_date", "67|2023-12-25|2024-02-29"},
		{`SELECT sales_record_id::text, units_sold::text, unit_price::text, last_updated_date::text, last_updated_time::text
			FROM fact_sales_order ORDER BY 1`, "1|50|12.34|2024-01-02|10:11:12.345\n2|75|12.99|2024-02-29|08:00:00"},
		{"SELECT payment_record_id::text, paid::text, last_updated::text FROM fact_payment ORDER BY 1",
			"1|false|23:59:59.999\n2|true|07:00:00.5"},
	}
	for _, c := range checks {
		if got := joined(query(t, e.url, c.sql)); got != c.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", c.sql, got, c.want)
		}
	}
}

func TestReplayChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	put(t, e.bucket, batch{seq: 2, sales: []star.FactSalesOrder{sale(1, "2024-01-03", "08:00:00.000", 1, 1)}})
	e.load(t)
	before := e.counts(t)
	snapshot := joined(query(t, e.url, "SELECT s::text FROM fact_sales_order s ORDER BY sales_record_id"))

	t.Run("a second load finds nothing to do", func(t *testing.T) {
		res := e.load(t)
		if len(res.Batches) != 0 || len(res.Skipped) != 0 {
			t.Fatalf("second load: %+v", res)
		}
	})
	t.Run("a batch present in the ledger is skipped", func(t *testing.T) {
		// As a load that listed the batches before another load applied them.
		w, err := Open(context.Background(), e.url, "")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = w.Close(context.Background()) }()
		p, err := prepare(context.Background(), w.conn, w.s, quiet, func(pgx.Tx, *plan) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		l := &loader{conn: w.conn, s: w.s, set: w.set, plan: p, bucket: e.bucket, log: quiet}
		for _, seq := range []int64{1, 2} {
			if _, applied, err := l.batch(context.Background(), seq); err != nil || applied {
				t.Fatalf("batch %d again: applied %v, %v", seq, applied, err)
			}
		}
	})
	t.Run("a version already loaded is not appended again", func(t *testing.T) {
		// Batch 3 repeats batch 2's version of sales order 1 and has a new
		// one twice.
		put(t, e.bucket, batch{seq: 3, sales: []star.FactSalesOrder{sale(1, "2024-01-03", "08:00:00.000", 1, 1),
			sale(1, "2024-01-04", "08:00:00.000", 2, 2), sale(1, "2024-01-04", "08:00:00.000", 2, 2)}})
		res := e.load(t)
		if len(res.Batches) != 1 || res.Batches[0].Rows["fact_sales_order"] != 1 {
			t.Fatalf("batch 3: %+v", res)
		}
		before["fact_sales_order"]++
	})
	if got := e.counts(t); !maps.Equal(got, before) {
		t.Fatalf("counts after replays %v, want %v", got, before)
	}
	if got := joined(query(t, e.url, "SELECT s::text FROM fact_sales_order s ORDER BY sales_record_id LIMIT 2")); got != snapshot {
		t.Fatalf("fact rows changed:\n%s\nwant\n%s", got, snapshot)
	}
}

func TestConcurrentLoadsApplyEachBatchOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	for seq := int64(2); seq <= 6; seq++ {
		put(t, e.bucket, batch{seq: seq,
			staff:    []star.DimStaff{{StaffID: 1, FirstName: fmt.Sprint(seq), LastName: "F", DepartmentName: "D", Location: "L", EmailAddress: "E"}},
			sales:    []star.FactSalesOrder{sale(int32(seq), "2024-01-03", "08:00:00.000", 1, 1)},
			payments: []star.FactPayment{payment(1, "2024-01-04", fmt.Sprintf("08:00:0%d.000", seq), 1, true)}})
	}
	const loaders = 4
	results := make([]Result, loaders)
	errs := make([]error, loaders)
	var wg sync.WaitGroup
	for i := range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.loadWith(context.Background(), e.opts())
		}()
	}
	wg.Wait()
	applied := map[int64]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("load %d: %v", i, errs[i])
		}
		for _, b := range r.Batches {
			applied[b.Sequence]++
		}
	}
	for seq := int64(1); seq <= 6; seq++ {
		if applied[seq] != 1 {
			t.Errorf("batch %d applied %d times", seq, applied[seq])
		}
	}
	if got := joined(query(t, e.url, "SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM sandstone_loads")); got != "1,2,3,4,5,6" {
		t.Errorf("ledger %s", got)
	}
	c := e.counts(t)
	if c["fact_sales_order"] != 6 || c["fact_payment"] != 6 || c["dim_staff"] != 2 {
		t.Errorf("counts %v", c)
	}
	if got := joined(query(t, e.url, "SELECT first_name FROM dim_staff WHERE staff_id = 1")); got != "6" {
		t.Errorf("dim_staff 1 has the value of batch %s, want 6: batches applied out of order", got)
	}
}

func TestFailedBatchLeavesNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"row by row", "bulk", "set-based"} {
		t.Run(mode+" foreign key check", func(t *testing.T) {
			e := newEnv(t)
			e.set.setBasedChecks = mode == "set-based"
			if mode == "bulk" {
				e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1
			}
			put(t, e.bucket, world(1))
			// Batch 2 changes a dimension, then has a fact whose design is
			// in no batch: the foreign key fails after the dimension is written.
			bad := sale(2, "2024-01-03", "08:00:00.000", 1, 1)
			bad.DesignID = 99
			put(t, e.bucket, batch{seq: 2,
				staff: []star.DimStaff{{StaffID: 1, FirstName: "Changed", LastName: "F", DepartmentName: "D", Location: "L", EmailAddress: "E"}},
				sales: []star.FactSalesOrder{sale(3, "2024-01-03", "08:00:00.000", 1, 1), bad}})
			put(t, e.bucket, world(3))
			res, err := e.loadWith(context.Background(), e.opts())
			if err == nil {
				t.Fatal("load of a fact without its dimension succeeded")
			}
			if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), "000000000002") ||
				!strings.Contains(err.Error(), "design") {
				t.Fatalf("error %q (kind %s): want load_failed naming batch 2 and the design key", err, errkind.Of(err))
			}
			if len(res.Batches) != 1 || res.Batches[0].Sequence != 1 {
				t.Fatalf("result %+v: want batch 1 only", res)
			}
			if got := joined(query(t, e.url, "SELECT first_name FROM dim_staff WHERE staff_id = 1")); got != "Jeremie" {
				t.Errorf("dim_staff changed by the failed batch: %s", got)
			}
			if c := e.counts(t); c["fact_sales_order"] != 1 {
				t.Errorf("fact_sales_order has %d rows, want batch 1's one", c["fact_sales_order"])
			}
			if seq, err := opened(context.Background(), e.url, "", (*Warehouse).LoadedSeq); err != nil || seq != 1 {
				t.Errorf("loaded seq %d, %v; want 1", seq, err)
			}
			if got := joined(query(t, e.url, `SELECT count(*)::text FROM pg_constraint
				WHERE conrelid = 'fact_sales_order'::regclass AND contype = 'f'`)); got != "9" {
				t.Errorf("fact_sales_order has %s foreign keys after the failure, want 9", got)
			}
		})
	}
}

func TestBulkForeignKeyCheckKeepsTheKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1
	put(t, e.bucket, world(1))
	e.load(t)
	fks := joined(query(t, e.url, `SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE contype = 'f' ORDER BY 1, 2`))
	if !strings.Contains(fks, "fact_payment_payment_type_id_fkey|FOREIGN KEY (payment_type_id) REFERENCES dim_payment_type(payment_type_id)") {
		t.Fatalf("foreign keys after a bulk load:\n%s", fks)
	}
	if n := strings.Count(fks, "\n") + 1; n != 9+8+7 {
		t.Fatalf("%d foreign keys after a bulk load, want 24:\n%s", n, fks)
	}
}

func TestNonDefaultSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.schema = `Sales "Mart"`
	put(t, e.bucket, world(1))
	e.load(t)
	if got := e.counts(t); got["fact_sales_order"] != 1 || got["dim_date"] != 38 {
		t.Fatalf("counts in %s: %v", e.schema, got)
	}
	if got := joined(query(t, e.url, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'`)); got != "0" {
		t.Fatalf("%s tables written to public", got)
	}
	if got := joined(query(t, e.url, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 'Sales "Mart"'`)); got != "15" {
		t.Fatalf("%s tables in the schema, want 11 + migrations + ledger + deletions + corrections", got)
	}
	if c, err := opened(context.Background(), e.url, "", (*Warehouse).Counts); err != nil || len(c) != 0 {
		t.Fatalf("public counts %v, %v: want none", c, err)
	}
}

func TestDeadlineStopsAtABatchBoundary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	put(t, e.bucket, batch{seq: 2, sales: []star.FactSalesOrder{sale(2, "2024-01-03", "08:00:00.000", 1, 1)}})
	put(t, e.bucket, batch{seq: 3, sales: []star.FactSalesOrder{sale(3, "2024-01-03", "08:00:00.000", 1, 1)}})
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := 0
	e.set.now = func() time.Time { // each batch "takes" a minute
		calls++
		return start.Add(time.Duration(calls-1) * time.Minute)
	}
	opts := e.opts()
	opts.Deadline = start.Add(30 * time.Second)
	res, err := e.loadWith(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Batches) != 1 || res.Pending != 2 {
		t.Fatalf("with the deadline passed after batch 1: %+v", res)
	}
	if seq, _ := opened(context.Background(), e.url, "", (*Warehouse).LoadedSeq); seq != 1 {
		t.Fatalf("loaded up to %d", seq)
	}
	e.set.now = time.Now
	res = e.load(t)
	if len(res.Batches) != 2 || res.Batches[0].Sequence != 2 || res.Batches[1].Sequence != 3 {
		t.Fatalf("the next run: %+v", res)
	}
}

func TestStatusHelpers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	t.Run("before any load", func(t *testing.T) {
		if c := e.counts(t); len(c) != 0 {
			t.Errorf("counts %v", c)
		}
		if seq, err := opened(ctx, e.url, "", (*Warehouse).LoadedSeq); err != nil || seq != 0 {
			t.Errorf("loaded seq %d, %v", seq, err)
		}
		if last, err := opened(ctx, e.url, "", (*Warehouse).LastLoad); err != nil || last.Sequence != 0 {
			t.Errorf("last load %+v, %v", last, err)
		}
	})
	put(t, e.bucket, world(1))
	put(t, e.bucket, batch{seq: 2}) // an empty batch: no source rows, no source_newest
	w3 := batch{seq: 3, newest: time.Date(2024, 1, 3, 8, 0, 0, 0, time.UTC),
		sales: []star.FactSalesOrder{sale(2, "2024-01-03", "08:00:00.000", 1, 1)}}
	put(t, e.bucket, w3)
	before := time.Now()
	e.load(t)
	after := time.Now()

	c := e.counts(t)
	if len(c) != 11 || c["fact_sales_order"] != 2 || c["dim_date"] != 38 || c["fact_payment"] != 1 {
		t.Errorf("counts %v", c)
	}
	if seq, err := opened(ctx, e.url, "public", (*Warehouse).LoadedSeq); err != nil || seq != 3 {
		t.Errorf("loaded seq %d, %v", seq, err)
	}
	last, err := opened(ctx, e.url, "", (*Warehouse).LastLoad)
	if err != nil {
		t.Fatal(err)
	}
	if last.Sequence != 3 || last.Batch != "000000000003" || !last.SourceNewest.Equal(w3.newest) ||
		last.LoadedAt.Before(before.Add(-time.Second)) || last.LoadedAt.After(after.Add(time.Second)) ||
		last.Lag != last.LoadedAt.Sub(w3.newest) || last.Rows["fact_sales_order"] != 1 {
		t.Errorf("last load %+v", last)
	}
	fresh, err := opened(ctx, e.url, "", func(w *Warehouse, ctx context.Context) ([]LedgerEntry, error) { return w.Freshness(ctx, 10) })
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) != 3 || fresh[0].Sequence != 3 || fresh[1].Sequence != 2 || fresh[2].Sequence != 1 {
		t.Fatalf("freshness %+v", fresh)
	}
	if !fresh[1].SourceNewest.IsZero() || fresh[1].Lag != 0 || len(fresh[1].Rows) != 0 {
		t.Errorf("empty batch entry %+v", fresh[1])
	}
	if fresh[2].Lag <= 0 || fresh[2].Rows["dim_date"] != 38 {
		t.Errorf("batch 1 entry %+v", fresh[2])
	}
}

func TestRefusesBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	cases := []struct {
		name   string
		url    string
		schema string
		opts   func() Options
		kind   errkind.Kind
		want   string
	}{
		{name: "no URL", url: "", opts: e.opts,
			kind: errkind.ConfigInvalid, want: "no warehouse URL"},
		{name: "no bucket", url: e.url, opts: func() Options { o := e.opts(); o.Processed = nil; return o },
			kind: errkind.ConfigInvalid, want: "no processed bucket"},
		{name: "schema name too long", url: e.url, schema: strings.Repeat("s", 64), opts: e.opts,
			kind: errkind.ConfigInvalid, want: "63 bytes"},
		{name: "bad URL", url: "postgres://u:hunter2@host:notaport/db", opts: e.opts,
			kind: errkind.ConfigInvalid, want: "warehouse URL"},
		{name: "unreachable", url: "postgres://sandstone:hunter2@127.0.0.1:1/warehouse?connect_timeout=5", opts: e.opts,
			kind: errkind.WarehouseUnreachable, want: "connect to warehouse postgres://sandstone:xxxxx@127.0.0.1:1/warehouse"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadInto(ctx, tc.url, tc.schema, e.set, tc.opts())
			if err == nil || errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (kind %s), want %s containing %q", err, errkind.Of(err), tc.kind, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
	if _, err := opened(ctx, "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=5", "", (*Warehouse).Counts); err == nil ||
		errkind.Of(err) != errkind.WarehouseUnreachable || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("counts on an unreachable warehouse: %v", err)
	}
	for _, f := range []func() error{
		func() error {
			_, err := opened(ctx, "postgres://127.0.0.1:1/x?connect_timeout=5", "", (*Warehouse).LoadedSeq)
			return err
		},
		func() error {
			_, err := opened(ctx, "postgres://127.0.0.1:1/x?connect_timeout=5", "", (*Warehouse).LastLoad)
			return err
		},
	} {
		if err := f(); errkind.Of(err) != errkind.WarehouseUnreachable {
			t.Fatalf("status on an unreachable warehouse: %v", err)
		}
	}
}

func TestRefusesBadBatches(t *testing.T) {
	t.Parallel()
	good := world(1)
	cases := []struct {
		name   string
		mutate func(b *lake.Bucket, m *lake.Manifest)
		kind   errkind.Kind
		want   string
	}{
		{"an ingest manifest", func(_ *lake.Bucket, m *lake.Manifest) { m.Stage = "ingest" }, errkind.LoadFailed, `stage "ingest"`},
		{"a wrong sequence", func(_ *lake.Bucket, m *lake.Manifest) { m.Sequence = 7 }, errkind.LoadFailed, "sequence 7"},
		{"an unknown table", func(_ *lake.Bucket, m *lake.Manifest) { m.Tables[0].Table = "dim_weather" }, errkind.LoadFailed, `"dim_weather"`},
		{"a table twice", func(_ *lake.Bucket, m *lake.Manifest) { m.Tables[1].Table = m.Tables[0].Table }, errkind.LoadFailed, "twice"},
		{"a row count that disagrees", func(_ *lake.Bucket, m *lake.Manifest) { m.Tables[1].Rows++ }, errkind.ObjectMismatch,
			"the manifest says 3 rows, the bucket holds 2 rows"},
		{"a missing object", func(_ *lake.Bucket, m *lake.Manifest) { m.Tables[8].Key = "nowhere.parquet" }, errkind.BucketReadFailed, "nowhere.parquet"},
		{"an object that is not Parquet", func(b *lake.Bucket, m *lake.Manifest) {
			data := []byte("not parquet")
			if err := b.Put(context.Background(), "fact_sales_order/junk.parquet", data); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			m.Tables[8].Key, m.Tables[8].Bytes, m.Tables[8].SHA256 = "fact_sales_order/junk.parquet", int64(len(data)), hex.EncodeToString(sum[:])
		}, errkind.BucketReadFailed, "not Parquet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m1 := writeObjects(t, e.bucket, good)
			tc.mutate(e.bucket, &m1)
			if err := e.bucket.PutManifest(context.Background(), 1, &m1); err != nil {
				t.Fatal(err)
			}
			_, err := e.loadWith(context.Background(), e.opts())
			if err == nil || errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "000000000001") {
				t.Fatalf("error %v (kind %s), want %s naming batch 1 and %q", err, errkind.Of(err), tc.kind, tc.want)
			}
			if c := e.counts(t); c["dim_date"] != 0 || c["dim_staff"] != 0 {
				t.Fatalf("a refused batch wrote rows: %v", c)
			}
		})
	}
	t.Run("a manifest that is not JSON", func(t *testing.T) {
		e := newEnv(t)
		put(t, e.bucket, world(1))
		if err := e.bucket.Put(context.Background(), lake.ManifestKey(2), []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		res, err := e.loadWith(context.Background(), e.opts())
		if errkind.Of(err) != errkind.BucketReadFailed || len(res.Batches) != 1 {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

// writeObjects writes bt's objects and returns its manifest, unwritten.
func writeObjects(t *testing.T, b *lake.Bucket, bt batch) lake.Manifest {
	t.Helper()
	m := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(bt.seq), Sequence: bt.seq}
	addRows(t, b, &m, "dim_date", bt.dates)
	addRows(t, b, &m, "dim_staff", bt.staff)
	addRows(t, b, &m, "dim_location", bt.locations)
	addRows(t, b, &m, "dim_currency", bt.curs)
	addRows(t, b, &m, "dim_design", bt.designs)
	addRows(t, b, &m, "dim_counterparty", bt.cps)
	addRows(t, b, &m, "dim_payment_type", bt.pts)
	addRows(t, b, &m, "dim_transaction", bt.txs)
	addRows(t, b, &m, "fact_sales_order", bt.sales)
	return m
}

func TestCancelledLoadStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.loadWith(ctx, e.opts()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load: %v", err)
	}
}
