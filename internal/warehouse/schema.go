package warehouse

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/sandstone-data/sandstone/internal/star"
)

// kind is the type of a warehouse column.
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

// ddl is the column type the migrations create for the kind.
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

// table is one warehouse table: its columns, derived from its star table,
// and how load feeds it from the processed bucket.
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

// kindOf is the warehouse kind of a star column kind.
func kindOf(k star.Kind) (kind, error) {
	switch k {
	case star.KindInt:
		return kInt, nil
	case star.KindText:
		return kText, nil
	case star.KindDate:
		return kDate, nil
	case star.KindTime:
		return kTime, nil
	case star.KindMoney:
		return kMoney, nil
	case star.KindBool:
		return kBool, nil
	}
	return 0, fmt.Errorf("no warehouse type for star kind %s", k)
}

// rowFeed is the feeder of one star row type. Go generics need each type
// named once: rowFeeds does it, and nothing else about the tables is said
// here.
type rowFeed struct {
	row  reflect.Type
	feed func() feeder
}

func feedFor[T any]() rowFeed { return rowFeed{reflect.TypeFor[T](), feedOf[T]} }

var rowFeeds = []rowFeed{
	feedFor[star.DimDate](), feedFor[star.DimStaff](), feedFor[star.DimLocation](), feedFor[star.DimCurrency](),
	feedFor[star.DimDesign](), feedFor[star.DimCounterparty](), feedFor[star.DimPaymentType](),
	feedFor[star.DimTransaction](), feedFor[star.FactSalesOrder](), feedFor[star.FactPurchaseOrder](),
	feedFor[star.FactPayment](),
}

// tables is the warehouse, in load order (dimensions before facts, as
// star.Tables lists them): each star table with its columns as star
// declares them, and a fact's serial id first. Every column is NOT NULL
// unless nullable.
var tables = bindTables(fromStar(star.Tables))

// fromStar makes the warehouse tables of the star tables. A star table it
// cannot make is a programming error: it panics at start-up (and in every
// test).
func fromStar(sts []star.Table) []*table {
	out := make([]*table, 0, len(sts))
	for _, st := range sts {
		t, err := tableOf(st)
		if err != nil {
			panic(fmt.Sprintf("warehouse: %s: %v", st.Name, err))
		}
		out = append(out, t)
	}
	return out
}

func tableOf(st star.Table) (*table, error) {
	t := &table{name: st.Name, role: dimension, serial: st.Serial}
	switch {
	case !st.Dimension:
		t.role = fact
		t.cols = append(t.cols, column{name: st.Serial, kind: kSerial})
	case st.Calendar:
		t.role = calendar
	}
	for _, sc := range st.Columns {
		k, err := kindOf(sc.Kind)
		if err != nil {
			return nil, err
		}
		t.cols = append(t.cols, column{name: sc.Name, kind: k, nullable: sc.Nullable, ref: sc.Ref})
	}
	for _, rf := range rowFeeds {
		if rf.row == st.Row {
			t.feed = rf.feed()
		}
	}
	if t.feed == nil {
		return nil, fmt.Errorf("no feeder of %s in rowFeeds", st.Row)
	}
	return t, nil
}

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
