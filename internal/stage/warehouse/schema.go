package warehouse

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// column is one warehouse column.
type column struct {
	name string
	// typ is the column's star type: its DDL, staging type, COPY form and
	// what warehouse column fits it (star.Serial for a fact's id).
	typ      *star.Type
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
		t, err := tableOf(st, rowFeeds)
		if err != nil {
			panic(fmt.Sprintf("warehouse: %s: %v", st.Name, err))
		}
		out = append(out, t)
	}
	return out
}

// tableOf is the warehouse table of st, fed by the feeder of its row type
// in feeds. Its columns' types come with st: a new column type needs
// nothing here.
func tableOf(st star.Table, feeds []rowFeed) (*table, error) {
	t := &table{name: st.Name, role: dimension, serial: st.Serial}
	switch {
	case !st.Dimension:
		t.role = fact
		t.cols = append(t.cols, column{name: st.Serial, typ: star.Serial})
	case st.Calendar:
		t.role = calendar
	}
	for _, sc := range st.Columns {
		t.cols = append(t.cols, column{name: sc.Name, typ: sc.Type, nullable: sc.Nullable, ref: sc.Ref})
	}
	for _, rf := range feeds {
		if rf.row == st.Row {
			t.feed = rf.feed()
		}
	}
	if t.feed == nil {
		return nil, fmt.Errorf("no feeder of %s", st.Row)
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
		if ft != c.typ.Go {
			return nil, fmt.Errorf("column %s (%s) is fed by a field of type %s", c.name, c.typ.DDL, ft)
		}
		out[j] = i
	}
	return out, nil
}
