package star

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// TestTypesAreComplete: every registered type says all a column of it
// needs, and no two types claim the same fields.
func TestTypesAreComplete(t *testing.T) {
	for i, typ := range Types {
		if typ.Name == "" || typ.Go == nil || typ.Glue == "" || typ.DDL == "" || typ.Fits == nil || typ.Stage == "" ||
			typ.FromStage == nil || typ.AppendCopy == nil || typ.AppendText == nil || typ.TextSQL == nil {
			t.Errorf("type %d (%s) is incomplete: %+v", i, typ.Name, *typ)
		}
		for _, other := range Types[:i] {
			if other.Go == typ.Go && other.Logical == typ.Logical {
				t.Errorf("%s and %s both are a %s tagged %q", other.Name, typ.Name, typ.Go, typ.Logical)
			}
		}
	}
	if Serial.Fits == nil || Serial.DDL != "serial" {
		t.Errorf("Serial: %+v", *Serial)
	}
}

// TestRegistryTakesANewType: a field no star type holds is refused, and
// taken once a registry has a type for it.
func TestRegistryTakesANewType(t *testing.T) {
	type row struct {
		ID int32   `parquet:"id" star:"key"`
		X  float64 `parquet:"x"`
	}
	tb := Table{Name: "x", Dimension: true, Row: reflect.TypeFor[row]()}
	if _, err := Types.Derive(tb); err == nil || !strings.Contains(err.Error(), "no star column is a float64") {
		t.Errorf("a float64 field: %v", err)
	}
	float := &Type{Name: "float", Go: reflect.TypeFor[float64]()}
	got, err := append(Registry{float}, Types...).Derive(tb)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := got.Column("x"); c.Type != float {
		t.Errorf("x is %+v", c)
	}
	if c, _ := got.Column("id"); c.Type != Int {
		t.Errorf("id is %+v", c)
	}
}

// TestMoney: the binary COPY numeric, the text form and the SQL of money.
func TestMoney(t *testing.T) {
	for _, tc := range []struct {
		cents      int64
		copy, text string
	}{
		{0, "00000008" + "0000" + "0000" + "0000" + "0002", "0"},
		{394, "0000000c" + "0002" + "0000" + "0000" + "0002" + "0003" + "24b8", "3.94"},
		{-1234, "0000000c" + "0002" + "0000" + "4000" + "0002" + "000c" + "0d48", "-12.34"},
		{1_000_000, "0000000c" + "0002" + "0001" + "0000" + "0002" + "0001" + "0000", "10000"},
		{-50, "0000000a" + "0001" + "ffff" + "4000" + "0002" + "1388", "-0.5"},
	} {
		v := reflect.ValueOf(tc.cents)
		if got := hex.EncodeToString(Money.AppendCopy(nil, v, "numeric")); got != tc.copy {
			t.Errorf("%d: COPY %s, want %s", tc.cents, got, tc.copy)
		}
		if got := string(Money.AppendText(nil, v)); got != tc.text {
			t.Errorf("%d: text %s, want %s", tc.cents, got, tc.text)
		}
	}
	if got := Money.FromStage(`x."p"`); got != `(x."p" * 0.01)` {
		t.Errorf("FromStage %s", got)
	}
	if Money.DDL != "numeric(10,2)" || Money.Glue != "decimal(10,2)" || Money.Logical != "decimal(2:10)" {
		t.Errorf("Money: %s %s %s", Money.DDL, Money.Glue, Money.Logical)
	}
	for _, tc := range []struct {
		typname string
		mod     int32
		ok      bool
	}{{"numeric", -1, true}, {"numeric", 10<<16 | 2 + 4, true}, {"numeric", 12<<16 | 4 + 4, true},
		{"numeric", 9<<16 | 2 + 4, false}, {"numeric", 10<<16 | 1 + 4, false}, {"int8", -1, false}} {
		if Money.Fits(tc.typname, tc.mod) != tc.ok {
			t.Errorf("Money fits %s mod %d: want %v", tc.typname, tc.mod, tc.ok)
		}
	}
}
