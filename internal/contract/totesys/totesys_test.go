package totesys_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// TestTablesMatchSchema: the columns derived from the row types are, table
// by table and in order, the columns of the DDL in Schema, each table keyed
// by its Key; and Schema holds no other table.
func TestTablesMatchSchema(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, totesys.Schema)
	var names []string
	pgtest.Scan(t, url, []any{&names}, `SELECT array_agg(table_name::text ORDER BY table_name)
		FROM information_schema.tables WHERE table_schema = current_schema()`)
	var want []string
	for _, tbl := range totesys.Tables {
		want = append(want, tbl.Name)
	}
	if slices.Sort(want); !slices.Equal(names, want) {
		t.Errorf("schema tables %v, want %v", names, want)
	}
	for _, tbl := range totesys.Tables {
		var cols []string
		var key string
		pgtest.Scan(t, url, []any{&cols, &key}, `SELECT
			(SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns
			  WHERE table_schema = current_schema() AND table_name = $1),
			(SELECT string_agg(a.attname, ',') FROM pg_index i
			   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			  WHERE i.indrelid = $1::regclass AND i.indisprimary)`, tbl.Name)
		if !slices.Equal(cols, tbl.Columns) {
			t.Errorf("%s: schema columns %v, row type %s gives %v", tbl.Name, cols, tbl.Row, tbl.Columns)
		}
		if key != tbl.Key {
			t.Errorf("%s: primary key %q, want %q", tbl.Name, key, tbl.Key)
		}
	}
}

func TestLookup(t *testing.T) {
	tbl, ok := totesys.Lookup("sales_order")
	if !ok || tbl.Key != "sales_order_id" || tbl.Row != reflect.TypeFor[totesys.SalesOrder]() ||
		strings.Join(tbl.Columns[:3], ",") != "sales_order_id,created_at,last_updated" {
		t.Errorf("Lookup(sales_order) = %+v, %v", tbl, ok)
	}
	if _, ok := totesys.Lookup("_prisma_migrations"); ok {
		t.Error("Lookup found a table totesys does not have")
	}
}
