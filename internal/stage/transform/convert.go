package transform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// This file reads an ingested object into a row type T without changing a
// value on the way. When every column T needs is in the object with the
// very type T declares (and no timestamp lies outside what parquet-go
// converts correctly), the object is read as it always was, by parquet-go
// into T. Otherwise each value is converted exactly, column by column; a
// row one of whose values cannot be kept exactly is rejected, and a column
// that cannot be read as T's at all stops the stage.

// ingested is one ingested object opened for reading, verified against its
// manifest entry: data reads rows into T when the types are identical; the
// file's own schema (types, NULLs allowed, timestamp bounds) decides how the
// object is read.
type ingested struct {
	table string
	obj   lake.Object
	data  *lake.ParquetFile
	file  *parquet.File
	count *progress.Counter // the rows read, for a person watching
}

// openIngested opens the batch's object for table; nil when the batch has none.
func (b *batch) openIngested(im *lake.Manifest, table string) (*ingested, error) {
	data, err := b.open(im, table)
	if err != nil || data == nil {
		return nil, err
	}
	obj, _ := im.Table(table)
	return &ingested{table: table, obj: obj, data: data, file: data.File(), count: b.progress.Table(table, obj.Rows)}, nil
}

// Close removes the object's temporary file.
func (s *ingested) Close() {
	s.count.Done()
	s.data.Close()
}

// rejectFunc receives a row that cannot be read exactly: its source values
// as a JSON object and why.
type rejectFunc func(row json.RawMessage, p *problem) error

// readSource streams the rows of an ingested object as T, chunk at a time,
// to fn, and the rows whose values T cannot hold exactly to reject. A
// column T cannot read at all is a SourceSchemaMismatch; a read failure is
// a bucket read failure.
func readSource[T any](ctx context.Context, src *ingested, fn func([]T) error, reject rejectFunc) error {
	p, err := planFor(src, reflect.TypeFor[T]())
	if err != nil {
		return err
	}
	var fnErr error
	keep := func(rows []T) error {
		src.count.Add(int64(len(rows)))
		fnErr = fn(rows)
		return fnErr
	}
	if p.identical {
		err = lake.ReadRows(ctx, src.data, chunk, keep)
	} else {
		err = convertRows(ctx, src, p, keep, func(row json.RawMessage, pr *problem) error {
			fnErr = reject(row, pr)
			return fnErr
		})
	}
	if err != nil && fnErr == nil && ctx.Err() == nil {
		return errkind.Wrap(errkind.BucketReadFailed, err)
	}
	return err
}

// plan is how an object's columns become the fields of a row type.
type plan struct {
	// identical is set when parquet-go may read the object as it is.
	identical bool
	cols      []column
	// fileCols are the object's own columns, for rendering rejects.
	fileCols []parquet.LeafColumn
}

// column reads one field of the row type from one column of the object.
type column struct {
	src   int // the object's leaf column
	field int // the row type's field
	set   setter
}

// setter stores source value v in field f, or tells why it cannot.
type setter func(f reflect.Value, v parquet.Value) *problem

// planFor checks src's columns against row type t's and plans the reading.
func planFor(src *ingested, t reflect.Type) (*plan, error) {
	fs := src.file.Schema()
	if err := checkManifest(src, fs); err != nil {
		return nil, err
	}
	p := &plan{identical: true}
	for _, path := range fs.Columns() {
		leaf, _ := fs.Lookup(path...)
		p.fileCols = append(p.fileCols, leaf)
	}
	fields := fieldIndex(t)
	for _, f := range parquet.SchemaOf(reflect.New(t).Interface()).Fields() {
		from, ok := fs.Lookup(f.Name())
		if !ok || !from.Node.Leaf() || from.Node.Repeated() {
			return nil, mismatch(src.table, f.Name(), "the object has no such column (%s expected)", typeName(f))
		}
		set, err := setterFor(f, from.Node)
		if err != nil {
			return nil, mismatch(src.table, f.Name(), "%v", err)
		}
		idx, ok := fields[f.Name()]
		if !ok {
			return nil, errkind.Wrap(errkind.Internal, fmt.Errorf("transform: %s has no field for column %s", t, f.Name()))
		}
		p.cols = append(p.cols, column{src: from.ColumnIndex, field: idx, set: set})
		p.identical = p.identical && sameType(f, from.Node) && timestampsFit(src.file, f, from.ColumnIndex)
	}
	return p, nil
}

func mismatch(table, col, format string, args ...any) error {
	return errkind.Wrap(errkind.SourceSchemaMismatch,
		fmt.Errorf("transform: %s.%s: %s", table, col, fmt.Sprintf(format, args...)))
}

// checkManifest cross-checks the column types the manifest declares (when
// it declares them) with the object's own schema.
func checkManifest(src *ingested, fs *parquet.Schema) error {
	if len(src.obj.Columns) == 0 {
		return nil
	}
	declared := map[string]string{}
	for _, c := range src.obj.Columns {
		declared[c.Name] = c.Type
		leaf, ok := fs.Lookup(c.Name)
		if !ok {
			return mismatch(src.table, c.Name, "the manifest declares %s, the object has no such column", c.Type)
		}
		if got := typeName(leaf.Node); got != c.Type {
			return mismatch(src.table, c.Name, "the manifest declares %s, the object holds %s", c.Type, got)
		}
	}
	for _, f := range fs.Fields() {
		if _, ok := declared[f.Name()]; !ok {
			return mismatch(src.table, f.Name(), "the object holds %s, the manifest does not declare it", typeName(f))
		}
	}
	return nil
}

// fieldIndex maps the column names of struct type t to its field indexes.
func fieldIndex(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("parquet"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		m[name] = i
	}
	return m
}

// typeName is n's type as the ingest manifest names it, e.g. INT32,
// DECIMAL(12,4), STRING or TIMESTAMP(MICROS,UTC).
func typeName(n parquet.Node) string {
	t := n.Type()
	if lt := t.LogicalType(); lt != nil && lt.Value != nil {
		switch l := lt.Value.(type) {
		case *format.DecimalType:
			return l.String()
		case *format.TimestampType:
			zone := "LOCAL"
			if l.IsAdjustedToUTC {
				zone = "UTC"
			}
			return "TIMESTAMP(" + l.Unit.String() + "," + zone + ")"
		case *format.DateType:
			return "DATE"
		case *format.StringType:
			return "STRING"
		case *format.IntType:
			if l.IsSigned && (l.BitWidth == 32 || l.BitWidth == 64) {
				return fmt.Sprintf("INT%d", l.BitWidth)
			}
		}
		return lt.String()
	}
	switch t.Kind() {
	case parquet.Boolean:
		return "BOOLEAN"
	case parquet.Int32:
		return "INT32"
	case parquet.Int64:
		return "INT64"
	case parquet.Double:
		return "DOUBLE"
	}
	return t.Kind().String()
}

const timestampMicros = "TIMESTAMP(MICROS,UTC)"

// sameType tells whether parquet-go reads column from into field to as it
// is: the same type, the same physical type, NULLs allowed in both or
// neither.
func sameType(to, from parquet.Node) bool {
	return typeName(to) == typeName(from) && to.Type().Kind() == from.Type().Kind() && to.Optional() == from.Optional()
}

// parquet-go turns µs into a time.Time through int64 nanoseconds, so it
// reads only the µs within these bounds (years 1677 to 2262) correctly.
const (
	minNanoMicros = math.MinInt64 / 1000
	maxNanoMicros = math.MaxInt64 / 1000
)

// timestampsFit tells whether every value of a timestamp column lies within
// the bounds parquet-go converts correctly, by the row groups' statistics;
// true for a column of any other type.
func timestampsFit(f *parquet.File, to parquet.Node, col int) bool {
	if typeName(to) != timestampMicros {
		return true
	}
	for _, rg := range f.RowGroups() {
		cc, ok := rg.ColumnChunks()[col].(*parquet.FileColumnChunk)
		if !ok {
			return false
		}
		lo, hi, ok := cc.Bounds()
		if cc.NumValues() == cc.NullCount() {
			continue
		}
		if !ok || lo.Int64() < minNanoMicros || hi.Int64() > maxNanoMicros {
			return false
		}
	}
	return true
}

// setterFor returns how values of column from become values of field to,
// or an error when no value of from's type can be read as to's.
func setterFor(to parquet.Field, from parquet.Node) (setter, error) {
	name := to.Name()
	want, have := typeName(to), typeName(from)
	var set setter
	switch {
	case want == timestampMicros && have == timestampMicros:
		set = setTimestamp
	case isNumber(to) && (isNumber(from) || have == "STRING"):
		set = numberSetter(name, to, from)
	case want == have && to.Type().Kind() == from.Type().Kind():
		typ := to.Type()
		set = func(f reflect.Value, v parquet.Value) *problem {
			if err := typ.AssignValue(f, v); err != nil {
				return bad("%s %s cannot be read as %s: %v", name, v, want, err)
			}
			return nil
		}
	default:
		return nil, fmt.Errorf("the object holds %s, which cannot be read as %s", have, want)
	}
	return nullable(name, to.Optional(), set), nil
}

// nullable wraps set with the NULL rule: a NULL stays NULL in an optional
// field and rejects the row when the field needs a value.
func nullable(name string, optional bool, set setter) setter {
	return func(f reflect.Value, v parquet.Value) *problem {
		if v.IsNull() {
			if optional {
				f.SetZero()
				return nil
			}
			return bad("%s is NULL where a value is required", name)
		}
		if f.Kind() == reflect.Pointer {
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		return set(f, v)
	}
}

func setTimestamp(f reflect.Value, v parquet.Value) *problem {
	f.Set(reflect.ValueOf(time.UnixMicro(v.Int64()).UTC()))
	return nil
}

// isNumber tells whether n holds exact numbers: an integer or a decimal.
func isNumber(n parquet.Node) bool {
	switch name := typeName(n); {
	case name == "INT32", name == "INT64":
		return true
	case strings.HasPrefix(name, "DECIMAL("):
		k := n.Type().Kind()
		return k == parquet.Int32 || k == parquet.Int64
	}
	return false
}

// decimalOf is n's precision and scale: those of its DECIMAL, or an
// integer's (scale 0).
func decimalOf(n parquet.Node) (precision, scale int) {
	if lt := n.Type().LogicalType(); lt != nil {
		if d, ok := lt.Value.(*format.DecimalType); ok {
			return int(d.Precision), int(d.Scale)
		}
	}
	if n.Type().Kind() == parquet.Int32 {
		return 10, 0
	}
	return 19, 0
}

// numberSetter converts exact numbers (integers, decimals, or numeric text)
// into the integer or decimal field to: the value is kept exactly or the
// row is rejected.
func numberSetter(name string, to, from parquet.Node) setter {
	want := typeName(to)
	_, scale := decimalOf(to)
	_, fromScale := decimalOf(from)
	text := typeName(from) == "STRING"
	fits := rangeOf(to)
	return func(f reflect.Value, v parquet.Value) *problem {
		n, s, shown, p := numberOf(name, v, text, fromScale, scale, want)
		if p != nil {
			return p
		}
		n, ok := rescale(n, s, scale)
		if !ok {
			if s > scale {
				return bad("%s %s cannot be held in %s without losing digits", name, shown, want)
			}
			return bad("%s %s is out of range for %s", name, shown, want)
		}
		if !fits(n) {
			return bad("%s %s is out of range for %s", name, shown, want)
		}
		f.SetInt(n)
		return nil
	}
}

// numberOf reads v as an integer count of 10^-s units and the text that
// shows it; text values are parsed as PostgreSQL prints a numeric, with at
// most toScale decimals.
func numberOf(name string, v parquet.Value, text bool, scale, toScale int, want string) (n int64, s int, shown string, p *problem) {
	if !text {
		n = intOf(v)
		return n, scale, formatScaled(n, scale), nil
	}
	shown = string(v.ByteArray())
	n, s, err := parseNumeric(shown, toScale)
	switch {
	case errors.Is(err, errLosesDigits):
		return 0, 0, "", bad("%s %s cannot be held in %s without losing digits", name, shown, want)
	case errors.Is(err, errTooLarge):
		return 0, 0, "", bad("%s %s is out of range for %s", name, shown, want)
	case err != nil:
		return 0, 0, "", bad("%s %q is not a number", name, shown)
	}
	return n, s, shown, nil
}

// intOf is the integer an INT32 or INT64 value holds.
func intOf(v parquet.Value) int64 {
	if v.Kind() == parquet.Int32 {
		return int64(v.Int32())
	}
	return v.Int64()
}

var (
	errLosesDigits = errors.New("more decimals than the target holds")
	errTooLarge    = errors.New("too many digits")
)

// parseNumeric parses numeric text such as -12.50 into an integer count of
// 10^-scale units (-1250, 2), trailing zeros of the fraction dropped. It
// fails on anything else (NaN, Infinity, exponents, blanks), on more
// decimals than maxScale and on more digits than an int64 holds.
func parseNumeric(s string, maxScale int) (n int64, scale int, err error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	whole, frac, dot := strings.Cut(body, ".")
	if whole == "" || (dot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, 0, errors.New("not a number")
	}
	frac = strings.TrimRight(frac, "0")
	whole = strings.TrimLeft(whole, "0")
	if len(frac) > maxScale {
		return 0, 0, errLosesDigits
	}
	if len(whole)+len(frac) > 18 {
		return 0, 0, errTooLarge
	}
	digits := whole + frac
	if digits == "" {
		return 0, 0, nil
	}
	n, err = strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	if neg {
		n = -n
	}
	return n, len(frac), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pow10 holds the powers of ten an int64 can hold.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// rescale turns n units of 10^-from into units of 10^-to, exactly: ok is
// false when digits would be lost or the result overflows an int64.
func rescale(n int64, from, to int) (int64, bool) {
	switch {
	case from > to:
		if from-to >= len(pow10) {
			return 0, n == 0
		}
		d := pow10[from-to]
		if n%d != 0 {
			return 0, false
		}
		return n / d, true
	case from < to:
		if to-from >= len(pow10) {
			return 0, n == 0
		}
		m := pow10[to-from]
		if n > math.MaxInt64/m || n < math.MinInt64/m {
			return 0, false
		}
		return n * m, true
	}
	return n, true
}

// rangeOf returns the test of whether an integer count of units fits n: an
// INT32, an INT64 or a DECIMAL of n's precision.
func rangeOf(n parquet.Node) func(int64) bool {
	precision, _ := decimalOf(n)
	switch {
	case precision < 19 && strings.HasPrefix(typeName(n), "DECIMAL("):
		limit := pow10[precision]
		return func(v int64) bool { return v > -limit && v < limit }
	case n.Type().Kind() == parquet.Int32:
		return func(v int64) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }
	}
	return func(int64) bool { return true }
}

// formatScaled prints n units of 10^-scale as a decimal, e.g. 35012 at
// scale 4 as 3.5012.
func formatScaled(n int64, scale int) string {
	s := strconv.FormatInt(n, 10)
	if scale <= 0 {
		return s
	}
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	return sign + s[:len(s)-scale] + "." + s[len(s)-scale:]
}

// convertRows reads src value by value through plan p: the rows whose
// values all convert go to fn as T, chunk by chunk, the others to reject.
func convertRows[T any](ctx context.Context, src *ingested, p *plan, fn func([]T) error, reject rejectFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read %s: %v", src.obj.Key, r)
		}
	}()
	r := parquet.NewGenericReader[any](src.file)
	defer func() { _ = r.Close() }()
	in := make([]parquet.Row, chunk)
	out := make([]T, chunk)
	vals := make([]parquet.Value, len(p.fileCols))
	for {
		n, rerr := r.ReadRows(in)
		k := 0
		for _, row := range in[:n] {
			for _, v := range row {
				if c := v.Column(); c >= 0 && c < len(vals) {
					vals[c] = v
				}
			}
			dst := reflect.ValueOf(&out[k]).Elem()
			dst.SetZero()
			if prob := p.convert(dst, vals); prob != nil {
				if err := reject(renderRow(p.fileCols, vals), prob); err != nil {
					return err
				}
				continue
			}
			k++
		}
		if k > 0 {
			if err := fn(out[:k]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", src.obj.Key, rerr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// convert fills the fields of dst from the row's values vals, or tells
// why the row cannot be read exactly.
func (p *plan) convert(dst reflect.Value, vals []parquet.Value) *problem {
	for _, c := range p.cols {
		if prob := c.set(dst.Field(c.field), vals[c.src]); prob != nil {
			return prob
		}
	}
	return nil
}

// renderRow renders a row of source values as a JSON object keyed by the
// object's column names, in column order, each value as its type shows
// it: decimals and timestamps as text, NULL as null.
func renderRow(cols []parquet.LeafColumn, vals []parquet.Value) json.RawMessage {
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(strings.Join(c.Path, ".")))
		b.WriteByte(':')
		enc, err := json.Marshal(display(c.Node, vals[i]))
		if err != nil {
			enc = []byte(strconv.Quote(vals[i].String()))
		}
		b.Write(enc)
	}
	b.WriteByte('}')
	return json.RawMessage(b.String())
}

// display is source value v of column n as a reject shows it.
func display(n parquet.Node, v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	switch name := typeName(n); {
	case strings.HasPrefix(name, "DECIMAL(") && isNumber(n):
		_, scale := decimalOf(n)
		return formatScaled(intOf(v), scale)
	case name == timestampMicros:
		return formatMicros(v.Int64())
	case name == "DATE":
		return time.Unix(int64(v.Int32())*86400, 0).UTC().Format(time.DateOnly)
	case name == "STRING":
		return string(v.ByteArray())
	}
	switch v.Kind() {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		return v.Int32()
	case parquet.Int64:
		return v.Int64()
	case parquet.Double:
		return v.Double()
	}
	return v.String()
}

// formatMicros prints µs since the epoch as a totesys timestamp; ingest
// writes infinity and -infinity as the largest and smallest int64.
func formatMicros(us int64) string {
	return formatStamp(time.UnixMicro(us))
}

// formatStamp prints t as a totesys timestamp, or infinity or -infinity.
func formatStamp(t time.Time) string {
	switch {
	case t.Equal(infinity):
		return "infinity"
	case t.Equal(negInfinity):
		return "-infinity"
	}
	return t.UTC().Format("2006-01-02 15:04:05.999999")
}

// rejecter rejects the rows of table that cannot be read exactly.
func (b *batch) rejecter(table string) rejectFunc {
	return func(row json.RawMessage, p *problem) error { return b.reject(table, row, p) }
}

// skipRow ignores a row that cannot be read exactly.
func skipRow(json.RawMessage, *problem) error { return nil }
