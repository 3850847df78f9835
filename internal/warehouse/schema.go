package warehouse

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/sandstone-data/sandstone/internal/star"
)

// kind is the type of a warehouse column, as DESIGN.md names it.
type kind int

const (
	kInt    kind = iota // int
	kText               // varchar
	kDate               // date; days since 1970-01-01 in the Parquet
	kTime               // time with milliseconds; ms since midnight in the Parquet
	kMoney              // numeric(10,2); cents in the Parquet
	kBool               // bool
	kSerial             // serial primary key of a fact, assigned by the warehouse
)

// ddl is the column type migration 1 creates.
func (k kind) ddl() string {
	return [...]string{"int", "varchar", "date", "time", "numeric(10,2)", "bool", "serial"}[k]
}

// stage is the type of the column in the staging table, which holds the
// Parquet's values as they are: dates, times and money stay integers until
// the set-based INSERT turns them into warehouse values (see expr).
func (k kind) stage() string {
	return [...]string{"int", "text", "int", "int", "bigint", "bool", ""}[k]
}

// goType is the type of the star struct field that feeds the column.
func (k kind) goType() reflect.Type {
	switch k {
	case kText:
		return reflect.TypeFor[string]()
	case kMoney:
		return reflect.TypeFor[int64]()
	case kBool:
		return reflect.TypeFor[bool]()
	default:
		return reflect.TypeFor[int32]()
	}
}

// expr turns the staged value src (an already quoted column reference)
// into the warehouse value, exactly: integer days, milliseconds and cents
// never pass through a float or a text form.
func (k kind) expr(src string) string {
	switch k {
	case kDate:
		return "(DATE '1970-01-01' + " + src + ")"
	case kTime:
		// interval '1 ms' * n multiplies whole microseconds, exact below 2^53.
		return "(TIME '00:00' + " + src + " * INTERVAL '1 millisecond')"
	case kMoney:
		return "(" + src + " * 0.01)"
	default:
		return src
	}
}

// column is one warehouse column.
type column struct {
	name     string
	kind     kind
	nullable bool
	// ref is the dimension table the column refers to ("" for none); the
	// referenced column is that dimension's key.
	ref string
}

// role says how a table is loaded.
type role int

const (
	dimension role = iota // latest value per key: upserted
	calendar              // dim_date: rows only ever added
	fact                  // every version appended
)

// table is one warehouse table: its columns as DESIGN.md defines them and
// how load feeds it from the processed bucket.
type table struct {
	name string
	role role
	// serial is a fact's warehouse-assigned id column.
	serial string
	// key is the dimension's primary key, or the fact's version key (source
	// id, last-updated date and time), as star.Tables gives it.
	key  []string
	cols []column
	// feed streams the table's Parquet rows into COPY.
	feed feeder
}

// dataCols are the columns load writes (all but a fact's serial id).
func (t *table) dataCols() []column {
	if t.serial == "" {
		return t.cols
	}
	return t.cols[1:]
}

func (t *table) col(name string) (column, bool) {
	for _, c := range t.cols {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

// Column constructors, to keep the table list below close to DESIGN.md.
func integer(n string) column     { return column{name: n, kind: kInt} }
func nullInt(n string) column     { return column{name: n, kind: kInt, nullable: true} }
func intRef(n, dim string) column { return column{name: n, kind: kInt, ref: dim} }
func text(n string) column        { return column{name: n, kind: kText} }
func nullText(n string) column    { return column{name: n, kind: kText, nullable: true} }
func plainDate(n string) column   { return column{name: n, kind: kDate} }
func dateRef(n string) column     { return column{name: n, kind: kDate, ref: "dim_date"} }
func timeOfDay(n string) column   { return column{name: n, kind: kTime} }
func money(n string) column       { return column{name: n, kind: kMoney} }
func boolean(n string) column     { return column{name: n, kind: kBool} }
func serial(n string) column      { return column{name: n, kind: kSerial} }
func texts(ns ...string) []column {
	out := make([]column, len(ns))
	for i, n := range ns {
		out[i] = text(n)
	}
	return out
}

// tables is the warehouse: DESIGN.md's "Warehouse tables", in load order
// (dimensions before facts, as star.Tables lists them). Every column is NOT
// NULL unless nullable.
var tables = bindTables([]*table{
	{name: "dim_date", role: calendar, feed: feedOf[star.DimDate](), cols: []column{
		plainDate("date_id"), integer("year"), integer("month"), integer("day"), integer("day_of_week"),
		text("day_name"), text("month_name"), integer("quarter")}},
	{name: "dim_staff", role: dimension, feed: feedOf[star.DimStaff](), cols: append([]column{
		integer("staff_id")}, texts("first_name", "last_name", "department_name", "location", "email_address")...)},
	{name: "dim_location", role: dimension, feed: feedOf[star.DimLocation](), cols: []column{
		integer("location_id"), text("address_line_1"), nullText("address_line_2"), nullText("district"),
		text("city"), text("postal_code"), text("country"), text("phone")}},
	{name: "dim_currency", role: dimension, feed: feedOf[star.DimCurrency](), cols: []column{
		integer("currency_id"), text("currency_code"), text("currency_name")}},
	{name: "dim_design", role: dimension, feed: feedOf[star.DimDesign](), cols: []column{
		integer("design_id"), text("design_name"), text("file_location"), text("file_name")}},
	{name: "dim_counterparty", role: dimension, feed: feedOf[star.DimCounterparty](), cols: []column{
		integer("counterparty_id"), text("counterparty_legal_name"), text("counterparty_legal_address_line_1"),
		nullText("counterparty_legal_address_line_2"), nullText("counterparty_legal_district"),
		text("counterparty_legal_city"), text("counterparty_legal_postal_code"), text("counterparty_legal_country"),
		text("counterparty_legal_phone_number")}},
	{name: "dim_payment_type", role: dimension, feed: feedOf[star.DimPaymentType](), cols: []column{
		integer("payment_type_id"), text("payment_type_name")}},
	{name: "dim_transaction", role: dimension, feed: feedOf[star.DimTransaction](), cols: []column{
		integer("transaction_id"), text("transaction_type"), nullInt("sales_order_id"), nullInt("purchase_order_id")}},
	{name: "fact_sales_order", role: fact, serial: "sales_record_id", feed: feedOf[star.FactSalesOrder](), cols: []column{
		serial("sales_record_id"), integer("sales_order_id"),
		dateRef("created_date"), timeOfDay("created_time"), dateRef("last_updated_date"), timeOfDay("last_updated_time"),
		intRef("sales_staff_id", "dim_staff"), intRef("counterparty_id", "dim_counterparty"),
		integer("units_sold"), money("unit_price"), intRef("currency_id", "dim_currency"),
		intRef("design_id", "dim_design"), dateRef("agreed_payment_date"), dateRef("agreed_delivery_date"),
		intRef("agreed_delivery_location_id", "dim_location")}},
	{name: "fact_purchase_order", role: fact, serial: "purchase_record_id", feed: feedOf[star.FactPurchaseOrder](), cols: []column{
		serial("purchase_record_id"), integer("purchase_order_id"),
		dateRef("created_date"), timeOfDay("created_time"), dateRef("last_updated_date"), timeOfDay("last_updated_time"),
		intRef("staff_id", "dim_staff"), intRef("counterparty_id", "dim_counterparty"),
		text("item_code"), integer("item_quantity"), money("item_unit_price"), intRef("currency_id", "dim_currency"),
		dateRef("agreed_delivery_date"), dateRef("agreed_payment_date"),
		intRef("agreed_delivery_location_id", "dim_location")}},
	{name: "fact_payment", role: fact, serial: "payment_record_id", feed: feedOf[star.FactPayment](), cols: []column{
		serial("payment_record_id"), integer("payment_id"),
		dateRef("created_date"), timeOfDay("created_time"), dateRef("last_updated_date"), timeOfDay("last_updated"),
		intRef("transaction_id", "dim_transaction"), intRef("counterparty_id", "dim_counterparty"),
		money("payment_amount"), intRef("currency_id", "dim_currency"), intRef("payment_type_id", "dim_payment_type"),
		boolean("paid"), dateRef("payment_date")}},
})

// bindTables orders the tables as star.Tables does, takes each table's key
// from there and binds every data column to its star struct field. A
// mismatch between the two packages is a programming error: it panics at
// start-up (and in every test).
func bindTables(ts []*table) []*table {
	byName := map[string]*table{}
	for _, t := range ts {
		byName[t.name] = t
	}
	if len(star.Tables) != len(ts) {
		panic(fmt.Sprintf("warehouse: %d tables, star has %d", len(ts), len(star.Tables)))
	}
	out := make([]*table, 0, len(ts))
	for _, st := range star.Tables {
		t, ok := byName[st.Name]
		if !ok {
			panic("warehouse: no definition of star table " + st.Name)
		}
		if st.Dimension != (t.role != fact) {
			panic("warehouse: " + st.Name + ": dimension/fact disagrees with star")
		}
		for _, k := range st.Key {
			if _, ok := t.col(k); !ok {
				panic("warehouse: " + st.Name + ": key column " + k + " missing")
			}
		}
		t.key = st.Key
		if err := t.feed.bind(t.dataCols()); err != nil {
			panic(fmt.Sprintf("warehouse: %s: %v", t.name, err))
		}
		out = append(out, t)
	}
	return out
}

// tableByName finds a warehouse table.
func tableByName(name string) (*table, bool) {
	for _, t := range tables {
		if t.name == name {
			return t, true
		}
	}
	return nil, false
}

// TableNames lists the warehouse tables in load order, dimensions first.
func TableNames() []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = t.name
	}
	return out
}

// fieldsFor maps each column to the field of struct type typ whose parquet
// tag names it, checking the field's Go type fits the column.
func fieldsFor(typ reflect.Type, cs []column) ([]int, error) {
	byTag := map[string]int{}
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("parquet"), ",")
		byTag[tag] = i
	}
	out := make([]int, len(cs))
	for j, c := range cs {
		i, ok := byTag[c.name]
		if !ok {
			return nil, fmt.Errorf("no field of %s for column %s", typ, c.name)
		}
		ft := typ.Field(i).Type
		if c.nullable {
			if ft.Kind() != reflect.Pointer {
				return nil, fmt.Errorf("nullable column %s needs a pointer field, %s has %s", c.name, typ, ft)
			}
			ft = ft.Elem()
		}
		if ft != c.kind.goType() {
			return nil, fmt.Errorf("column %s (%s) is fed by a field of type %s", c.name, c.kind.ddl(), ft)
		}
		out[j] = i
	}
	return out, nil
}
