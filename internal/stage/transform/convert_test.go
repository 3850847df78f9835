package transform

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// drift is one column of a table as a drifted source makes ingest write
// it: its Parquet type, the type the manifest records, and its value in
// the rows given (the others keep their own). A nil node drops the column.
type drift struct {
	column string
	node   parquet.Node
	typ    string
	values map[int]parquet.Value
}

// driftObject writes rows of table T as ingest would after the source's
// column d.column drifted: Parquet columns of the source's types (NULLs
// allowed where the source allows them) and the manifest's Columns.
func driftObject[T any](t *testing.T, b *lake.Bucket, seq int64, table string, rows []T, d drift) lake.Object {
	t.Helper()
	ts := parquet.SchemaOf(new(T))
	g := parquet.Group{}
	var names []string
	for _, f := range ts.Fields() {
		if f.Name() == d.column && d.node == nil {
			continue
		}
		g[f.Name()] = f
		names = append(names, f.Name())
	}
	if d.node != nil {
		g[d.column] = d.node
	}
	schema := parquet.NewSchema(table, g)
	cols := make([][]parquet.Value, len(schema.Columns()))
	for i := range rows {
		r := ts.Deconstruct(nil, &rows[i])
		for j, path := range schema.Columns() {
			leaf, _ := schema.Lookup(path...)
			v, ok := d.values[i]
			if path[0] != d.column || !ok {
				tl, _ := ts.Lookup(path...)
				v = r[tl.ColumnIndex]
			}
			def := 0
			if leaf.Node.Optional() && !v.IsNull() {
				def = 1
			}
			cols[j] = append(cols[j], v.Level(0, def, j))
		}
	}
	w, err := lake.NewParquetWriter[any](context.Background(), b, lake.DataKey(table, time.Now(), seq, "test", "parquet"), schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteColumns(cols); err != nil {
		t.Fatal(err)
	}
	size, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	obj := lake.Object{Table: table, Key: w.Key(), Rows: int64(len(rows)), Bytes: size, SHA256: sum}
	for _, n := range names {
		typ := typeName(g[n])
		if n == d.column && d.typ != "" {
			typ = d.typ
		}
		obj.Columns = append(obj.Columns, lake.Column{Name: n, Type: typ})
	}
	return obj
}

var null = parquet.NullValue()

// salesOrders are three orders of world(), ids 1 to 3.
func salesOrders() []totesys.SalesOrder {
	so := world().SalesOrder[0]
	out := []totesys.SalesOrder{so, so, so}
	for i := range out {
		out[i].SalesOrderID = int32(i + 1)
	}
	return out
}

// rejectRow decodes a reject line's row.
func rejectRow(t *testing.T, l rejectLine) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(l.Row, &m); err != nil {
		t.Fatalf("reject row %s: %v", l.Row, err)
	}
	return m
}

func TestTypeDrift(t *testing.T) {
	dec := func(p, s int) parquet.Node { return parquet.Decimal(s, p, parquet.Int64Type) }
	at := func(s string) parquet.Value { return parquet.Int64Value(ts(s).UnixMicro()) }
	type rejected struct {
		id     float64 // the row's id in the reject
		value  any     // the offending value as the reject shows it
		reason string
	}
	cases := []struct {
		name   string
		d      drift
		rows   []totesys.SalesOrder
		want   map[int32]func(star.FactSalesOrder) bool // ids that flow
		reject []rejected
	}{
		{"numeric(12,4) unit_price", drift{"unit_price", dec(12, 4), "DECIMAL(12,4)",
			map[int]parquet.Value{0: parquet.Int64Value(35000), 1: parquet.Int64Value(35012), 2: parquet.Int64Value(120000)}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitPrice == 350 },
				3: func(f star.FactSalesOrder) bool { return f.UnitPrice == 1200 },
			},
			[]rejected{{2, "3.5012", "unit_price 3.5012 cannot be held in DECIMAL(10,2) without losing digits"}}},
		{"numeric(10,1) unit_price scales up", drift{"unit_price", dec(10, 1), "DECIMAL(10,1)",
			map[int]parquet.Value{0: parquet.Int64Value(35), 1: parquet.Int64Value(9999999999), 2: parquet.Int64Value(39)}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitPrice == 350 },
				3: func(f star.FactSalesOrder) bool { return f.UnitPrice == 390 },
			},
			[]rejected{{2, "999999999.9", "unit_price 999999999.9 is out of range for DECIMAL(10,2)"}}},
		{"integer unit_price", drift{"unit_price", parquet.Int(32), "INT32",
			map[int]parquet.Value{0: parquet.Int32Value(4), 1: parquet.Int32Value(5), 2: parquet.Int32Value(6)}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitPrice == 400 },
				2: func(f star.FactSalesOrder) bool { return f.UnitPrice == 500 },
				3: func(f star.FactSalesOrder) bool { return f.UnitPrice == 600 },
			}, nil},
		{"bigint units_sold", drift{"units_sold", parquet.Int(64), "INT64",
			map[int]parquet.Value{0: parquet.Int64Value(7), 1: parquet.Int64Value(4294967306), 2: parquet.Int64Value(math.MaxInt32)}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitsSold == 7 },
				3: func(f star.FactSalesOrder) bool { return f.UnitsSold == math.MaxInt32 },
			},
			[]rejected{{2, 4294967306.0, "units_sold 4294967306 is out of range for INT32"}}},
		{"numeric text unit_price", drift{"unit_price", parquet.String(), "STRING",
			map[int]parquet.Value{0: parquet.ByteArrayValue([]byte("12.50")), 1: parquet.ByteArrayValue([]byte("NaN")), 2: parquet.ByteArrayValue([]byte("0012.5000"))}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitPrice == 1250 },
				3: func(f star.FactSalesOrder) bool { return f.UnitPrice == 1250 },
			},
			[]rejected{{2, "NaN", `unit_price "NaN" is not a number`}}},
		{"nullable units_sold", drift{"units_sold", parquet.Optional(parquet.Int(32)), "INT32",
			map[int]parquet.Value{1: null}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.UnitsSold == 42972 },
				3: func(f star.FactSalesOrder) bool { return f.UnitsSold == 42972 },
			},
			[]rejected{{2, nil, "units_sold is NULL where a value is required"}}},
		{"infinite last_updated", drift{"last_updated", parquet.Timestamp(parquet.Microsecond), "TIMESTAMP(MICROS,UTC)",
			map[int]parquet.Value{1: parquet.Int64Value(math.MaxInt64)}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.LastUpdatedDate == day("2024-02-29") },
				3: func(f star.FactSalesOrder) bool { return f.LastUpdatedDate == day("2024-02-29") },
			}, []rejected{{2, "infinity", "last_updated is infinity"}}},
		{"created_at in 1600", drift{"created_at", parquet.Timestamp(parquet.Microsecond), "TIMESTAMP(MICROS,UTC)",
			map[int]parquet.Value{2: at("1600-03-01 12:00:00.5")}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.CreatedDate == day("2024-02-29") },
				2: func(f star.FactSalesOrder) bool { return f.CreatedDate == day("2024-02-29") },
				3: func(f star.FactSalesOrder) bool {
					return f.CreatedDate == day("1600-03-01") && f.CreatedTime == clock("12:00:00.500")
				},
			}, nil},
		{"year 12000", drift{"created_at", parquet.Timestamp(parquet.Microsecond), "TIMESTAMP(MICROS,UTC)",
			map[int]parquet.Value{1: at("2024-02-29 10:00:00"), 2: parquet.Int64Value(time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())}}, salesOrders(),
			map[int32]func(star.FactSalesOrder) bool{
				1: func(f star.FactSalesOrder) bool { return f.CreatedDate == day("2024-02-29") },
				2: func(f star.FactSalesOrder) bool { return f.CreatedDate == day("2024-02-29") },
			},
			[]rejected{{3, "12000-01-01 00:00:00", "created_at 12000-01-01T00:00:00Z is outside 0001-9999"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ingest, proc := buckets(t)
			w := world()
			w.SalesOrder = nil
			putBatch(t, ingest, 1, w, driftObject(t, ingest, 1, "sales_order", c.rows, c.d))
			res := run(t, ingest, proc)
			facts := rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order")
			got := map[int32]star.FactSalesOrder{}
			for _, f := range facts {
				got[f.SalesOrderID] = f
			}
			if len(got) != len(c.want) {
				t.Errorf("fact_sales_order holds %+v, want ids %v", facts, reflect.ValueOf(c.want).MapKeys())
			}
			for id, ok := range c.want {
				if f, found := got[id]; !found || !ok(f) {
					t.Errorf("sales order %d: %+v (found %v)", id, f, found)
				}
			}
			// Every other table flows.
			if n := len(rowsOf[star.FactPurchaseOrder](t, proc, 1, "fact_purchase_order")); n != 1 {
				t.Errorf("fact_purchase_order: %d rows", n)
			}
			rejects := rejectsOf(t, proc, 1)
			if len(rejects) != len(c.reject) || res.Batches[0].Rejected != int64(len(c.reject)) {
				t.Fatalf("rejects %+v, want %+v", rejects, c.reject)
			}
			for i, want := range c.reject {
				l := rejects[i]
				row := rejectRow(t, l)
				col := strings.Fields(want.reason)[0]
				if l.Table != "sales_order" || l.Kind != badValue || l.Reason != want.reason ||
					row["sales_order_id"] != want.id || !reflect.DeepEqual(row[col], want.value) {
					t.Errorf("reject %+v (row %s), want %+v", l, l.Row, want)
				}
			}
		})
	}
}

// TestNullInRequiredColumn: a NOT NULL address column made nullable holds
// a NULL; that address is rejected, not given ”.
func TestNullInRequiredColumn(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	addrs := w.Address
	w.Address = nil
	putBatch(t, ingest, 1, w, driftObject(t, ingest, 1, "address", addrs, drift{"address_line_1",
		parquet.Optional(parquet.String()), "STRING", map[int]parquet.Value{1: null}}))
	run(t, ingest, proc)
	locs := rowsOf[star.DimLocation](t, proc, 1, "dim_location")
	if len(locs) != 1 || locs[0].LocationID != 1 || locs[0].AddressLine1 != "1 High St" {
		t.Fatalf("dim_location %+v", locs)
	}
	var found bool
	for _, l := range rejectsOf(t, proc, 1) {
		if l.Table == "address" {
			row := rejectRow(t, l)
			found = l.Reason == "address_line_1 is NULL where a value is required" && row["address_id"] == 2.0 &&
				row["address_line_1"] == nil && row["city"] == "Leeds"
			if !found {
				t.Errorf("reject %+v %s", l, l.Row)
			}
		}
	}
	if !found {
		t.Fatal("address 2 not rejected")
	}
}

// TestPaymentAmountText: a plain numeric payment_amount, which ingest
// writes as text, flows in cents; what cannot be held exactly is rejected.
func TestPaymentAmountText(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	pay := []totesys.Payment{w.Payment[0], w.Payment[0], w.Payment[0]}
	for i := range pay {
		pay[i].PaymentID = int32(i + 1)
	}
	w.Payment = nil
	text := func(s string) parquet.Value { return parquet.ByteArrayValue([]byte(s)) }
	putBatch(t, ingest, 1, w, driftObject(t, ingest, 1, "payment", pay, drift{"payment_amount",
		parquet.String(), "STRING", map[int]parquet.Value{0: text("12.50"), 1: text("12.505"), 2: text("123456789012345678901")}}))
	run(t, ingest, proc)
	facts := rowsOf[star.FactPayment](t, proc, 1, "fact_payment")
	if len(facts) != 1 || facts[0].PaymentID != 1 || facts[0].PaymentAmount != 1250 {
		t.Fatalf("fact_payment %+v", facts)
	}
	rejects := rejectsOf(t, proc, 1)
	want := []string{"payment_amount 12.505 cannot be held in DECIMAL(10,2) without losing digits",
		"payment_amount 123456789012345678901 is out of range for DECIMAL(10,2)"}
	if len(rejects) != 2 {
		t.Fatalf("rejects %+v", rejects)
	}
	for i, l := range rejects {
		if l.Reason != want[i] || rejectRow(t, l)["payment_id"] != float64(i+2) {
			t.Errorf("reject %+v %s", l, l.Row)
		}
	}
}

// TestUnreadableColumn: a column that cannot be read as the row type's at
// all stops transform with SourceSchemaMismatch, naming it and both types.
func TestUnreadableColumn(t *testing.T) {
	cases := []struct {
		name string
		d    drift
		want []string
	}{
		{"boolean units_sold", drift{"units_sold", parquet.Leaf(parquet.BooleanType), "BOOLEAN",
			map[int]parquet.Value{0: parquet.BooleanValue(true), 1: parquet.BooleanValue(false), 2: parquet.BooleanValue(true)}},
			[]string{"sales_order.units_sold", "BOOLEAN", "INT32"}},
		{"text created_at", drift{"created_at", parquet.String(), "STRING",
			map[int]parquet.Value{0: parquet.ByteArrayValue([]byte("x")), 1: parquet.ByteArrayValue([]byte("y")), 2: parquet.ByteArrayValue([]byte("z"))}},
			[]string{"sales_order.created_at", "STRING", "TIMESTAMP(MICROS,UTC)"}},
		{"double unit_price", drift{"unit_price", parquet.Leaf(parquet.DoubleType), "DOUBLE",
			map[int]parquet.Value{0: parquet.DoubleValue(1), 1: parquet.DoubleValue(2), 2: parquet.DoubleValue(3)}},
			[]string{"sales_order.unit_price", "DOUBLE", "DECIMAL(10,2)"}},
		{"missing agreed_delivery_date", drift{column: "agreed_delivery_date"},
			[]string{"sales_order.agreed_delivery_date", "no such column", "STRING"}},
		{"manifest disagrees", drift{"units_sold", parquet.Int(64), "INT32",
			map[int]parquet.Value{0: parquet.Int64Value(1), 1: parquet.Int64Value(2), 2: parquet.Int64Value(3)}},
			[]string{"sales_order.units_sold", "declares INT32", "holds INT64"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ingest, proc := buckets(t)
			w := world()
			w.SalesOrder = nil
			putBatch(t, ingest, 1, w, driftObject(t, ingest, 1, "sales_order", salesOrders(), c.d))
			_, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Logger: discard()})
			if errkind.Of(err) != errkind.SourceSchemaMismatch {
				t.Fatalf("error %v (kind %s), want %s", err, errkind.Of(err), errkind.SourceSchemaMismatch)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// TestInfiniteDimensionStamp: a dimension row stamped infinity is rejected
// with the reason; the state, which is JSON, never holds it.
func TestInfiniteDimensionStamp(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	stamp := parquet.Timestamp(parquet.Microsecond)
	addrs := driftObject(t, ingest, 1, "address", w.Address, drift{"last_updated", stamp, "TIMESTAMP(MICROS,UTC)",
		map[int]parquet.Value{1: parquet.Int64Value(math.MaxInt64)}})
	curs := driftObject(t, ingest, 1, "currency", w.Currency, drift{"created_at", stamp, "TIMESTAMP(MICROS,UTC)",
		map[int]parquet.Value{2: parquet.Int64Value(math.MinInt64)}})
	w.Address, w.Currency = nil, nil
	w.Counterparty = w.Counterparty[:1]
	w.PurchaseOrder, w.Payment = nil, nil
	w.SalesOrder[0].AgreedDeliveryLocationID = 1
	putBatch(t, ingest, 1, w, addrs, curs)
	run(t, ingest, proc)
	reasons := map[string]string{}
	for _, l := range rejectsOf(t, proc, 1) {
		reasons[l.Table] = l.Reason
	}
	if reasons["address"] != "last_updated is infinity" || reasons["currency"] != "created_at is -infinity" || len(reasons) != 2 {
		t.Fatalf("rejects %v", reasons)
	}
	if n := len(rowsOf[star.DimCurrency](t, proc, 1, "dim_currency")); n != 2 {
		t.Errorf("dim_currency: %d rows", n)
	}
}

// TestIdenticalSchemaReadAsIs: objects of the row types' own schemas take
// parquet-go's path, as they always did.
func TestIdenticalSchemaReadAsIs(t *testing.T) {
	ingest, _ := buckets(t)
	putBatch(t, ingest, 1, world())
	var im lake.Manifest
	if err := ingest.ReadManifest(context.Background(), 1, &im); err != nil {
		t.Fatal(err)
	}
	b := &batch{ctx: context.Background(), ingest: ingest}
	types := map[string]reflect.Type{
		"address": reflect.TypeFor[totesys.Address](), "counterparty": reflect.TypeFor[totesys.Counterparty](),
		"currency": reflect.TypeFor[totesys.Currency](), "department": reflect.TypeFor[totesys.Department](),
		"design": reflect.TypeFor[totesys.Design](), "staff": reflect.TypeFor[totesys.Staff](),
		"payment_type": reflect.TypeFor[totesys.PaymentType](), "sales_order": reflect.TypeFor[totesys.SalesOrder](),
		"purchase_order": reflect.TypeFor[totesys.PurchaseOrder](), "transaction": reflect.TypeFor[totesys.Transaction](),
		"payment": reflect.TypeFor[totesys.Payment](), "currency ": reflect.TypeFor[currencyVersion](),
	}
	for table, typ := range types {
		src, err := b.openIngested(&im, strings.TrimSpace(table))
		if err != nil {
			t.Fatal(err)
		}
		p, err := planFor(src, typ)
		src.Close()
		if err != nil || !p.identical {
			t.Errorf("%s as %s: identical %v, err %v", table, typ, p != nil && p.identical, err)
		}
	}
}

func TestTypeName(t *testing.T) {
	for _, c := range []struct {
		node parquet.Node
		want string
	}{
		// The nodes internal/stage/ingest writes, and the names its manifest gives.
		{parquet.Int(32), "INT32"}, {parquet.Int(64), "INT64"},
		{parquet.Decimal(4, 12, parquet.Int64Type), "DECIMAL(12,4)"},
		{parquet.Leaf(parquet.DoubleType), "DOUBLE"}, {parquet.Leaf(parquet.BooleanType), "BOOLEAN"},
		{parquet.Date(), "DATE"}, {parquet.Timestamp(parquet.Microsecond), "TIMESTAMP(MICROS,UTC)"},
		{parquet.String(), "STRING"}, {parquet.Optional(parquet.String()), "STRING"},
		// Others.
		{parquet.Leaf(parquet.Int32Type), "INT32"}, {parquet.Leaf(parquet.Int64Type), "INT64"},
		{parquet.Timestamp(parquet.Millisecond), "TIMESTAMP(MILLIS,UTC)"},
		{parquet.Leaf(parquet.ByteArrayType), "BYTE_ARRAY"}, {parquet.Uint(16), "INT(16,false)"},
	} {
		if got := typeName(c.node); got != c.want {
			t.Errorf("typeName(%v) = %s, want %s", c.node, got, c.want)
		}
	}
}

func TestParseNumeric(t *testing.T) {
	for _, c := range []struct {
		in       string
		maxScale int
		n        int64
		scale    int
		err      error
	}{
		{"12.50", 2, 125, 1, nil}, {"-0012.500", 2, -125, 1, nil}, {"7", 0, 7, 0, nil}, {"0.00", 2, 0, 0, nil},
		{"+3", 0, 3, 0, nil}, {"12.505", 2, 0, 0, errLosesDigits}, {"1234567890123456789", 2, 0, 0, errTooLarge},
	} {
		n, s, err := parseNumeric(c.in, c.maxScale)
		if n != c.n || s != c.scale || err != c.err {
			t.Errorf("parseNumeric(%q) = %d, %d, %v", c.in, n, s, err)
		}
	}
	for _, bad := range []string{"", "-", "1.", ".5", "1e5", "NaN", "Infinity", "1,5", " 1", "1.2.3"} {
		if _, _, err := parseNumeric(bad, 4); err == nil || err == errLosesDigits || err == errTooLarge {
			t.Errorf("parseNumeric(%q): %v", bad, err)
		}
	}
}

func TestRescale(t *testing.T) {
	for _, c := range []struct {
		n        int64
		from, to int
		want     int64
		ok       bool
	}{
		{35000, 4, 2, 350, true}, {35012, 4, 2, 0, false}, {35, 1, 2, 350, true}, {7, 0, 0, 7, true},
		{math.MaxInt64 / 5, 0, 1, 0, false}, {math.MinInt64 / 5, 0, 1, 0, false},
		{0, 40, 0, 0, true}, {1, 40, 0, 0, false}, {0, 0, 40, 0, true}, {1, 0, 40, 0, false},
	} {
		got, ok := rescale(c.n, c.from, c.to)
		if got != c.want || ok != c.ok {
			t.Errorf("rescale(%d, %d, %d) = %d, %v", c.n, c.from, c.to, got, ok)
		}
	}
	for n, want := range map[int64]string{35012: "3.5012", -5: "-0.0005", 0: "0.0000", 120000: "12.0000"} {
		if got := formatScaled(n, 4); got != want {
			t.Errorf("formatScaled(%d, 4) = %s, want %s", n, got, want)
		}
	}
}

func TestStamp(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{t0, ""}, {ts("0001-01-01 00:00:00"), ""}, {ts("9999-12-31 23:59:59.999999"), ""},
		{time.UnixMicro(math.MaxInt64), "last_updated is infinity"},
		{time.UnixMicro(math.MinInt64), "last_updated is -infinity"},
		{time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), "last_updated 0000-12-31T00:00:00Z is outside 0001-9999"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "last_updated 10000-01-01T00:00:00Z is outside 0001-9999"},
	} {
		p := stamp("last_updated", c.t)
		if got := ""; p != nil {
			got = p.reason
			if got != c.want {
				t.Errorf("stamp(%s) = %q, want %q", c.t, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("stamp(%s) passes, want %q", c.t, c.want)
		}
	}
}
