package warehouse

import (
	"context"
	"encoding/binary"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// float is a column type no star table has: a float64, double precision
// in the warehouse. Everything the warehouse needs of it is here.
var float = &star.Type{
	Name: "float", Go: reflect.TypeFor[float64](), Glue: "double",
	DDL: "double precision", Fits: func(typname string, _ int32) bool { return typname == "float8" },
	Stage: "float8", FromStage: func(src string) string { return src },
	AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		return binary.BigEndian.AppendUint64(buf, math.Float64bits(v.Float()))
	},
	AppendText: func(b []byte, v reflect.Value) []byte { return strconv.AppendFloat(b, v.Float(), 'g', -1, 64) },
	TextSQL:    func(q string) string { return q + "::text" },
}

// newTypes is a row with columns of the float type and of a decimal of
// another scale than money's, beside an int key.
type newTypes struct {
	ID    int32    `parquet:"id" star:"key"`
	F     float64  `parquet:"f"`
	NF    *float64 `parquet:"nf,optional"`
	Price int64    `parquet:"price,decimal(4:12)"`
}

// TestNewColumnType: a column type registered in a star.Registry, and
// nothing else, is enough for the warehouse to derive a table of it, find
// whether a database column fits it, and write its values both ways load
// does (binary COPY straight into the table, and staged then converted by
// SQL), exactly. A new column type touches internal/contract/star and a migration.
func TestNewColumnType(t *testing.T) {
	types := append(star.Registry{float, star.Decimal(4, 12)}, star.Types...)
	st, err := types.Derive(star.Table{Name: "new_types", Dimension: true, Row: reflect.TypeFor[newTypes]()})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := tableOf(st, []rowFeed{feedFor[newTypes]()})
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.feed.bind(wt.dataCols()); err != nil {
		t.Fatal(err)
	}
	// The table as a migration would create it, from the types' DDL.
	defs := make([]string, len(wt.cols))
	for i, c := range wt.cols {
		defs[i] = q(c.name) + " " + c.typ.DDL
	}
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, "CREATE TABLE new_types ("+strings.Join(defs, ", ")+"); CREATE TABLE staged (LIKE new_types)")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()

	have, err := dbColumns(ctx, conn, "public", "new_types")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range wt.cols {
		if why := fits(c, have[c.name]); why != "" {
			t.Errorf("%s %s: %s", c.name, c.typ.DDL, why)
		}
	}
	narrow := have["price"]
	narrow.typ, narrow.mod, narrow.format = "numeric", (10<<16|2)+4, "numeric(10,2)"
	if why := fits(wt.cols[3], narrow); why != "is numeric(10,2), want numeric(12,4)" {
		t.Errorf("price in a numeric(10,2): %q", why)
	}

	half := 0.5
	rows := []newTypes{{1, 0, nil, 0}, {2, -2.25, &half, 1}, {3, 1234.5, nil, -123456789}, {4, 0.1, &half, 99_999_999_9999}}
	want := make([]string, len(rows))
	for i, r := range rows {
		var line []byte
		v := reflect.ValueOf(r)
		for j, c := range st.Columns {
			if j > 0 {
				line = append(line, '|')
			}
			f := v.Field(c.Field)
			if c.Nullable {
				if f.IsNil() {
					line = append(line, "NULL"...)
					continue
				}
				f = f.Elem()
			}
			line = c.Type.AppendText(line, f)
		}
		want[i] = string(line)
	}
	var text []string
	for _, c := range wt.cols {
		text = append(text, "coalesce("+c.typ.TextSQL(q(c.name))+", 'NULL')")
	}
	readBack := func(table string) string {
		return joined(query(t, url, "SELECT "+strings.Join(text, ", ")+" FROM "+table+" ORDER BY id"))
	}

	// Straight into the table: binary COPY, each value in its type's form.
	encs := encodersFor(wt.feed.(*typedFeed[newTypes]).fields, wt.dataCols(), map[string]string{}, nil)
	buf := append([]byte{}, copyHeader...)
	for _, r := range rows {
		buf = appendRow(buf, reflect.ValueOf(r), encs, nil)
	}
	buf = binary.BigEndian.AppendUint16(buf, math.MaxUint16)
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(string(buf)),
		"COPY new_types FROM STDIN (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if got := readBack("new_types"); got != strings.Join(want, "\n") {
		t.Errorf("copied:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}

	// Staged: the Parquet's values as they are, converted by the INSERT.
	stage := make([]string, len(wt.cols))
	for i, c := range wt.cols {
		stage[i] = q(c.name) + " " + c.typ.Stage
	}
	pgtest.Exec(t, url, "CREATE TABLE stage ("+strings.Join(stage, ", ")+")")
	src := wt.feed.(*typedFeed[newTypes])
	var values [][]any
	for _, r := range rows {
		v := reflect.ValueOf(r)
		vals := make([]any, len(src.fields))
		for j, fi := range src.fields {
			vals[j] = v.Field(fi).Interface()
		}
		values = append(values, vals)
	}
	names := make([]string, len(wt.cols))
	for i, c := range wt.cols {
		names[i] = c.name
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"stage"}, names, pgx.CopyFromRows(values)); err != nil {
		t.Fatal(err)
	}
	a := apply{t: wt, stage: "stage"}
	pgtest.Exec(t, url, "INSERT INTO staged SELECT "+a.selectList("x")+" FROM stage x")
	if got := readBack("staged"); got != strings.Join(want, "\n") {
		t.Errorf("staged:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}
