package star

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTables: the tables, their keys and their references as the row types
// declare them, and the rules the warehouse relies on.
func TestTables(t *testing.T) {
	want := []struct {
		name, serial string
		dim, cal     bool
		key          string
	}{
		{"dim_date", "", true, true, "date_id"},
		{"dim_staff", "", true, false, "staff_id"},
		{"dim_location", "", true, false, "location_id"},
		{"dim_currency", "", true, false, "currency_id"},
		{"dim_design", "", true, false, "design_id"},
		{"dim_counterparty", "", true, false, "counterparty_id"},
		{"dim_payment_type", "", true, false, "payment_type_id"},
		{"dim_transaction", "", true, false, "transaction_id"},
		{"fact_sales_order", "sales_record_id", false, false, "sales_order_id,last_updated_date,last_updated_time"},
		{"fact_purchase_order", "purchase_record_id", false, false, "purchase_order_id,last_updated_date,last_updated_time"},
		{"fact_payment", "payment_record_id", false, false, "payment_id,last_updated_date,last_updated"},
	}
	if len(Tables) != len(want) {
		t.Fatalf("%d tables, want %d", len(Tables), len(want))
	}
	byName := map[string]Table{}
	for i, tb := range Tables {
		w := want[i]
		if tb.Name != w.name || tb.Serial != w.serial || tb.Dimension != w.dim || tb.Calendar != w.cal ||
			strings.Join(tb.Key, ",") != w.key {
			t.Errorf("table %d: %s serial %q dimension %v calendar %v key %v, want %+v", i, tb.Name, tb.Serial,
				tb.Dimension, tb.Calendar, tb.Key, w)
		}
		byName[tb.Name] = tb
	}
	for _, tb := range Tables {
		for i, c := range tb.Columns {
			if f := tb.Row.Field(c.Field); i != c.Field || !strings.HasPrefix(f.Tag.Get("parquet"), c.Name) {
				t.Errorf("%s.%s: field %d (%s)", tb.Name, c.Name, c.Field, f.Name)
			}
			if c.Ref == "" {
				continue
			}
			// A reference is to a dimension's single-column key, of the same kind.
			dim, ok := byName[c.Ref]
			if !ok || !dim.Dimension || len(dim.Key) != 1 {
				t.Errorf("%s.%s refers to %s, which is no dimension with a single-column key", tb.Name, c.Name, c.Ref)
				continue
			}
			if k, _ := dim.Column(dim.Key[0]); k.Type != c.Type {
				t.Errorf("%s.%s is %s, the key of %s it refers to %s", tb.Name, c.Name, c.Type.Name, c.Ref, k.Type.Name)
			}
		}
	}
	refs := func(name string) (out []string) {
		for _, c := range byName[name].Columns {
			if c.Ref != "" {
				out = append(out, c.Name+">"+c.Ref)
			}
		}
		return out
	}
	if got := strings.Join(refs("fact_payment"), " "); got != "created_date>dim_date last_updated_date>dim_date "+
		"transaction_id>dim_transaction counterparty_id>dim_counterparty currency_id>dim_currency "+
		"payment_type_id>dim_payment_type payment_date>dim_date" {
		t.Errorf("fact_payment refers: %s", got)
	}
	if c, _ := byName["dim_location"].Column("district"); !c.Nullable || c.Type != Text {
		t.Errorf("dim_location.district: %+v", c)
	}
	if c, _ := byName["fact_sales_order"].Column("unit_price"); c.Type != Money {
		t.Errorf("fact_sales_order.unit_price: %+v", c)
	}
	if _, ok := byName["fact_sales_order"].Column("sales_record_id"); ok {
		t.Error("a fact's serial id is a column of its rows")
	}
}

func TestDeriveRefusesBadRowTypes(t *testing.T) {
	type noKey struct {
		ID int32 `parquet:"id"`
	}
	type float struct {
		ID int32   `parquet:"id" star:"key"`
		X  float64 `parquet:"x"`
	}
	type pointerNotOptional struct {
		ID int32   `parquet:"id" star:"key"`
		S  *string `parquet:"s"`
	}
	type optionalNotPointer struct {
		ID int32  `parquet:"id" star:"key"`
		S  string `parquet:"s,optional"`
	}
	type badRef struct {
		ID int32 `parquet:"id" star:"key,ref=dim_weather"`
	}
	type badOption struct {
		ID int32 `parquet:"id" star:"primary"`
	}
	type untagged struct {
		ID int32 `star:"key"`
	}
	type wrongLogical struct {
		ID int32 `parquet:"id,time(microsecond)" star:"key"`
	}
	for _, tc := range []struct {
		t    Table
		want string
	}{
		{dimension[noKey]("x"), "no field"},
		{dimension[float]("x"), "column x: no star column is a float64"},
		{dimension[pointerNotOptional]("x"), "column s: a pointer field"},
		{dimension[optionalNotPointer]("x"), "column s: a pointer field"},
		{dimension[badRef]("x"), "refers to dim_weather"},
		{dimension[badOption]("x"), `unknown star tag option "primary"`},
		{dimension[untagged]("x"), "field ID has no parquet name"},
		{dimension[wrongLogical]("x"), "no star column is a int32"},
		{fact[noKeyFact]("x", ""), "only a fact, has a serial"},
	} {
		if err := derive(&tc.t, map[string]bool{"x": true}, Types); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.t.Row, err, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("mustTables took a row type without a key")
		}
	}()
	mustTables(dimension[noKey]("x"))
}

type noKeyFact struct {
	ID int32 `parquet:"id" star:"key"`
}

func TestDates(t *testing.T) {
	at := time.Date(2024, 2, 29, 13, 14, 15, 678_900_000, time.FixedZone("x", 3600))
	d, ms := DateOf(at), TimeOf(at)
	if got := DateTime(d, ms); !got.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("DateTime(DateOf, TimeOf) = %s, want %s", got, at)
	}
	if d != 19782 || ms != (12*3600+14*60+15)*1000+678 {
		t.Errorf("DateOf %d, TimeOf %d", d, ms)
	}
	if !slices.ContainsFunc(Tables, func(t Table) bool { return t.Row == reflect.TypeFor[DimDate]() }) {
		t.Error("no table of DimDate")
	}
}
