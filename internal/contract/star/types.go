package star

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Type is one type of star column, and everything that type decides, said
// once: the Go and Parquet types that hold its values in the processed
// bucket, the warehouse column that holds them and how load writes it, how
// the audit compares the two, and the Glue (Hive) type Athena reads the
// Parquet as. Internal/warehouse, internal/ops/audit and the Glue catalog's
// test derive all of it from here; none of them switches on a type.
//
// A value v handed to a func is the non-nil value of a row's field (the
// element of a nullable column's pointer), of type Go.
type Type struct {
	// Name names the type in messages ("int", "money").
	Name string
	// Go is the field type; Logical the parquet tag's logical type option
	// ("" for none). A field of type Go (or *Go) tagged Logical is a column
	// of this type.
	Go      reflect.Type
	Logical string
	// Glue is the column's type in the Glue Data Catalog over the Parquet,
	// and GlueComment the column's comment there ("" for none): what a
	// reader of the Glue type must know to read the value.
	Glue        string
	GlueComment string

	// DDL is the warehouse column type the migrations create.
	DDL string
	// Fits reports whether a warehouse column of type typname
	// (pg_type.typname) and type modifier mod (atttypmod) holds every
	// value exactly. Want says what does, for the mismatch's message.
	Fits func(typname string, mod int32) bool
	Want string
	// Stage is the type of the column in load's staging table, which holds
	// the Parquet's values as they are; FromStage turns a staged value, the
	// quoted SQL reference src, into the warehouse value, exactly (never
	// through a float or a text form).
	Stage     string
	FromStage func(src string) string
	// AppendCopy appends v in PostgreSQL's binary COPY form for a
	// warehouse column of type typname.
	AppendCopy func(buf []byte, v reflect.Value, typname string) []byte
	// KeyArray, for a type a foreign key may use whose values are integers
	// (v.Int()), turns the SQL of an int8[] of such values into an array of
	// warehouse values; nil for other types.
	KeyArray func(int8s string) string

	// AppendText appends v's text form, and TextSQL is the SQL of the
	// quoted warehouse column q's value in the same text form (never
	// DateStyle or a numeric's declared scale): the audit hashes both.
	AppendText func(b []byte, v reflect.Value) []byte
	TextSQL    func(q string) string
}

// Registry is a set of column types, each looked up by its Go type and
// logical type.
type Registry []*Type

// Types are the column types of the star tables.
var Types = Registry{Int, Text, DateType, TimeType, Money, Bool}

// lookup is the type of a field of Go type typ (a nullable column's
// element type) tagged logical.
func (r Registry) lookup(typ reflect.Type, logical string) (*Type, bool) {
	for _, t := range r {
		if t.Go == typ && t.Logical == logical {
			return t, true
		}
	}
	return nil, false
}

// pgEpochDays is 2000-01-01, PostgreSQL's date epoch, in days since 1970-01-01.
const pgEpochDays = 10957

// The column types.
var (
	// Int is an int32: int in the warehouse (or int8, which holds it too).
	Int = &Type{
		Name: "int", Go: reflect.TypeFor[int32](), Glue: "int",
		DDL: "int", Fits: isInt, Stage: "int", FromStage: same,
		AppendCopy: func(buf []byte, v reflect.Value, typname string) []byte {
			return AppendCopyInt(buf, v.Int(), typname == "int8")
		},
		KeyArray:   same,
		AppendText: appendInt, TextSQL: asText,
	}
	// Text is a string: varchar (or text).
	Text = &Type{
		Name: "text", Go: reflect.TypeFor[string](), Glue: "string",
		DDL: "varchar", Fits: oneOf("varchar", "text"), Stage: "text", FromStage: same,
		AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
			s := v.String()
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(s))) // #nosec G115 -- Parquet strings are < 2 GiB
			return append(buf, s...)
		},
		AppendText: func(b []byte, v reflect.Value) []byte { return append(b, v.String()...) },
		TextSQL:    asText,
	}
	// DateType is a Date, days since 1970-01-01 (Parquet DATE): date.
	DateType = &Type{
		Name: "date", Go: reflect.TypeFor[Date](), Logical: "date", Glue: "date",
		DDL: "date", Fits: oneOf("date"), Stage: "int",
		FromStage: func(src string) string { return "(DATE '1970-01-01' + " + src + ")" },
		AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
			buf = binary.BigEndian.AppendUint32(buf, 4)
			return binary.BigEndian.AppendUint32(buf, uint32(int32(v.Int())-pgEpochDays)) // #nosec G115 -- int32 days
		},
		KeyArray: func(int8s string) string {
			return "ARRAY(SELECT DATE '1970-01-01' + x::int4 FROM pg_catalog.unnest(" + int8s + ") x)"
		},
		AppendText: appendInt,
		TextSQL:    func(q string) string { return "(" + q + " - DATE '1970-01-01')::text" },
	}
	// TimeType is a TimeOfDay, milliseconds since midnight (Parquet
	// TIME(MILLIS)): time, with at least millisecond precision (time(0) to
	// time(2) would round the milliseconds away). Athena reads the
	// milliseconds as an int.
	TimeType = &Type{
		Name: "time", Go: reflect.TypeFor[TimeOfDay](), Logical: "time(millisecond)", Glue: "int",
		GlueComment: "time of day: milliseconds since midnight UTC",
		DDL:         "time", Want: "time (with at least millisecond precision)",
		Fits:  func(typname string, mod int32) bool { return typname == "time" && (mod < 0 || mod >= 3) },
		Stage: "int",
		// interval '1 ms' * n multiplies whole microseconds, exact below 2^53.
		FromStage: func(src string) string { return "(TIME '00:00' + " + src + " * INTERVAL '1 millisecond')" },
		AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
			buf = binary.BigEndian.AppendUint32(buf, 8)
			return binary.BigEndian.AppendUint64(buf, uint64(v.Int()*1000)) // #nosec G115 -- microseconds since midnight
		},
		AppendText: appendInt,
		TextSQL: func(q string) string {
			return "trim_scale((EXTRACT(EPOCH FROM " + q + ") * 1000)::numeric)::text"
		},
	}
	// Money is DECIMAL(10,2) held as an int64 count of cents.
	Money = Decimal(2, 10)
	// Bool is a bool.
	Bool = &Type{
		Name: "bool", Go: reflect.TypeFor[bool](), Glue: "boolean",
		DDL: "bool", Fits: oneOf("bool"), Stage: "bool", FromStage: same,
		AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
			buf = binary.BigEndian.AppendUint32(buf, 1)
			if v.Bool() {
				return append(buf, 1)
			}
			return append(buf, 0)
		},
		AppendText: func(b []byte, v reflect.Value) []byte { return strconv.AppendBool(b, v.Bool()) },
		TextSQL:    asText,
	}
	// Serial is the type of a fact's serial id column (Table.Serial), which
	// the warehouse assigns: no row field holds it, and it is in no
	// Registry. Load numbers it itself, at times, by AppendCopyInt.
	Serial = &Type{Name: "serial", DDL: "serial", Fits: isInt}
)

// Decimal is DECIMAL(precision, scale), held as an int64 count of
// 10^-scale (Parquet "decimal(scale:precision)"): numeric(precision,
// scale) in the warehouse, or an unconstrained numeric, or one with as
// many digits before the point and at least as many after. Scales 0 to 4
// only: the COPY form holds the fraction as one base-10000 digit.
func Decimal(scale, precision int) *Type {
	if scale < 0 || scale > 4 || precision <= scale || precision > 18 {
		panic(fmt.Sprintf("star: no Decimal(%d, %d)", scale, precision))
	}
	unit := "1"
	if scale > 0 {
		unit = "0." + strings.Repeat("0", scale-1) + "1"
	}
	return &Type{
		Name: fmt.Sprintf("decimal(%d,%d)", precision, scale), Go: reflect.TypeFor[int64](),
		Logical: fmt.Sprintf("decimal(%d:%d)", scale, precision), Glue: fmt.Sprintf("decimal(%d,%d)", precision, scale),
		DDL: fmt.Sprintf("numeric(%d,%d)", precision, scale),
		Fits: func(typname string, mod int32) bool {
			p, s := (mod-4)>>16&0xffff, (mod-4)&0xffff
			return typname == "numeric" && (mod < 0 || (int(s) >= scale && int(p-s) >= precision-scale))
		},
		Stage:     "bigint",
		FromStage: func(src string) string { return "(" + src + " * " + unit + ")" },
		AppendCopy: func(buf []byte, v reflect.Value, _ string) []byte {
			return appendNumeric(buf, v.Int(), scale)
		},
		AppendText: func(b []byte, v reflect.Value) []byte { return appendDecimal(b, v.Int(), scale) },
		TextSQL:    func(q string) string { return "trim_scale(" + q + ")::text" },
	}
}

func same(s string) string { return s }

func asText(q string) string { return q + "::text" }

func isInt(typname string, _ int32) bool { return typname == "int4" || typname == "int8" }

func oneOf(typnames ...string) func(string, int32) bool {
	return func(typname string, _ int32) bool {
		for _, n := range typnames {
			if typname == n {
				return true
			}
		}
		return false
	}
}

func appendInt(b []byte, v reflect.Value) []byte { return strconv.AppendInt(b, v.Int(), 10) }

// AppendCopyInt appends n in binary COPY form: an int8 when wide, else an
// int4 (n fits one).
func AppendCopyInt(buf []byte, n int64, wide bool) []byte {
	if wide {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		return binary.BigEndian.AppendUint64(buf, uint64(n)) // #nosec G115 -- two's complement, as int8 wants
	}
	buf = binary.BigEndian.AppendUint32(buf, 4)
	return binary.BigEndian.AppendUint32(buf, uint32(int32(n))) // #nosec G115 -- an int4 value
}

// appendNumeric appends n·10^-scale (scale at most 4) as a binary numeric
// of that scale: base-10000 digits, the weight of the first, the sign and
// the scale.
func appendNumeric(buf []byte, n int64, scale int) []byte {
	var sign uint16
	u := uint64(n) // #nosec G115 -- negated below when negative
	if n < 0 {
		sign, u = 0x4000, uint64(-n) // #nosec G115 -- |n| of a DECIMAL(18) fits
	}
	unit, shift := uint64(1), uint64(10000) // 10^scale, and 10^(4-scale)
	for range scale {
		unit, shift = unit*10, shift/10
	}
	whole, frac := u/unit, u%unit
	var digits [6]uint16 // an int64 has at most 5 base-10000 digits, and one more for the fraction
	d := 0
	for w := whole; w > 0; w /= 10000 {
		d++
	}
	weight := d - 1
	for i, w := d-1, whole; i >= 0; i, w = i-1, w/10000 {
		digits[i] = uint16(w % 10000) // #nosec G115 -- < 10000
	}
	if frac != 0 {
		digits[d] = uint16(frac * shift) // #nosec G115 -- < 10000
		d++
	}
	if d == 0 {
		weight = 0
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(8+2*d))         // #nosec G115 -- small
	buf = binary.BigEndian.AppendUint16(buf, uint16(d))             // #nosec G115 -- small
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight))) // #nosec G115 -- small
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(scale)) // #nosec G115 -- at most 4
	for _, g := range digits[:d] {
		buf = binary.BigEndian.AppendUint16(buf, g)
	}
	return buf
}

// appendDecimal appends n·10^-scale as PostgreSQL's trim_scale(numeric)::text
// writes it: "3.94", "-0.5", "12", "0".
func appendDecimal(b []byte, n int64, scale int) []byte {
	u := uint64(n) // #nosec G115 -- two's complement: negated below
	if n < 0 {
		u = -u
		b = append(b, '-')
	}
	p := uint64(1)
	for range scale {
		p *= 10
	}
	b = strconv.AppendUint(b, u/p, 10)
	frac := u % p
	if frac == 0 {
		return b
	}
	digits := scale
	for frac%10 == 0 {
		frac /= 10
		digits--
	}
	s := strconv.FormatUint(frac, 10)
	b = append(b, '.')
	for range digits - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}
