package totesys

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTableOfRefusesBadRowTypes(t *testing.T) {
	type noKey struct {
		Name        string    `parquet:"name"`
		LastUpdated time.Time `parquet:"last_updated"`
	}
	type noStamp struct {
		ID int32 `parquet:"thing_id"`
	}
	type untagged struct {
		ID          int32 `parquet:"thing_id"`
		Note        string
		LastUpdated time.Time `parquet:"last_updated"`
	}
	for _, tc := range []struct {
		row  reflect.Type
		want string
	}{
		{reflect.TypeFor[noKey](), "no column thing_id"},
		{reflect.TypeFor[noStamp](), "no column last_updated"},
		{reflect.TypeFor[untagged](), "field Note has no parquet name"},
	} {
		if _, err := tableOf(tc.row, "thing", "thing_id"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.row, err, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("table of a row type without its key did not panic")
		}
	}()
	table[noKey]("thing", "thing_id")
}
