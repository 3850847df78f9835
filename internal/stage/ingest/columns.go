package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// kind is how one source column travels: the SQL that selects it (in
// binary), the Parquet node that holds it, and the decoder between them.
type kind int

const (
	kInt32 kind = iota
	kInt64
	kDecimal
	kDouble
	kBool
	kDate
	kTimestamp
	kString
)

// column is one source column as ingest reads and writes it.
type column struct {
	Name     string
	Nullable bool
	kind     kind
	scale    int // decimals
	prec     int
	leaf     int // index of the Parquet leaf column
}

// sourceTable is one source table as ingest reads it: its columns in
// source order, where its key and last_updated are, and its Parquet schema.
type sourceTable struct {
	cols             []column
	key, lastUpdated int
	schema           *parquet.Schema
}

// querier runs a query: a transaction or a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// describeTable reads table's columns from the source's catalogue and checks
// them (see newSourceTable).
func describeTable(ctx context.Context, q querier, table totesys.Table, log *slog.Logger) (*sourceTable, error) {
	cols, err := describe(ctx, q, table.Name)
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("describe: %w", err))
	}
	return newSourceTable(table, cols, log)
}

// newSourceTable checks that cols hold every column the pipeline needs,
// its key an integer and last_updated a timestamp, and lays out their
// Parquet schema. A column the pipeline does not know is carried along,
// with a warning.
func newSourceTable(table totesys.Table, cols []column, log *slog.Logger) (*sourceTable, error) {
	if len(cols) == 0 {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("table %s not found in the source", table.Name))
	}
	for _, name := range table.Columns {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.Name == name }) {
			return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("column %s.%s not found in the source", table.Name, name))
		}
	}
	t := &sourceTable{cols: cols}
	group := orderedGroup{Group: parquet.Group{}}
	for i, c := range cols {
		if !slices.Contains(table.Columns, c.Name) && !lake.IsCaptureColumn(c.Name) {
			log.Warn("source has a column the pipeline does not know; it is carried along", "table", table.Name, "column", c.Name)
		}
		switch c.Name {
		case table.Key:
			t.key = i
		case totesys.LastUpdated:
			t.lastUpdated = i
		}
		group.Group[c.Name] = c.node()
		group.names = append(group.names, c.Name)
	}
	if cols[t.key].kind != kInt32 || cols[t.lastUpdated].kind != kTimestamp {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("table %s: %s must be an integer and %s a timestamp", table.Name, table.Key, totesys.LastUpdated))
	}
	t.schema = parquet.NewSchema(table.Name, group)
	for i := range t.cols {
		leaf, _ := t.schema.Lookup(t.cols[i].Name)
		t.cols[i].leaf = leaf.ColumnIndex
	}
	return t, nil
}

// captureCols are the columns capture adds (lake.CaptureColumns), as
// ingest writes them.
var captureCols = []column{
	{Name: lake.OpColumn, kind: kString},
	{Name: lake.LSNColumn, kind: kInt64},
	{Name: lake.CommitTimeColumn, kind: kTimestamp},
}

// withCapture is t with the capture columns after its own: each row then
// ends with its operation, commit LSN and commit time (see captureValues).
func (t *sourceTable) withCapture(table totesys.Table) (*sourceTable, error) {
	return newSourceTable(table, append(slices.Clone(t.cols), captureCols...), slog.New(slog.DiscardHandler))
}

// captureValues are a row's capture columns in PostgreSQL's binary form.
func captureValues(op string, lsn lake.LSN, commit time.Time) [][]byte {
	return [][]byte{[]byte(op),
		binary.BigEndian.AppendUint64(nil, uint64(lsn)),
		binary.BigEndian.AppendUint64(nil, uint64(commit.UnixMicro()-pgEpochMicros))} // #nosec G115 -- two's complement
}

// selectList selects every column in the binary form decode expects.
func (t *sourceTable) selectList() string {
	exprs := make([]string, len(t.cols))
	for i, c := range t.cols {
		exprs[i] = c.selectExpr()
	}
	return strings.Join(exprs, ", ")
}

// manifestColumns are the columns and types the manifest records.
func (t *sourceTable) manifestColumns() []lake.Column {
	out := make([]lake.Column, len(t.cols))
	for i, c := range t.cols {
		out[i] = lake.Column{Name: c.Name, Type: c.typeName()}
	}
	return out
}

// describe reads the columns of table from the source's catalogue.
func describe(ctx context.Context, q querier, table string) ([]column, error) {
	rows, err := q.Query(ctx, `
		SELECT column_name, is_nullable = 'YES', data_type,
		       coalesce(numeric_precision, 0), coalesce(numeric_scale, 0)
		  FROM information_schema.columns
		 WHERE table_schema = current_schema() AND table_name = $1
		 ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		var dataType string
		if err := rows.Scan(&c.Name, &c.Nullable, &dataType, &c.prec, &c.scale); err != nil {
			return nil, err
		}
		c.kind = kindOf(dataType, c.prec)
		if c.kind != kDecimal { // information_schema gives an integer's bits, a float's mantissa
			c.prec, c.scale = 0, 0
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

func kindOf(dataType string, precision int) kind {
	switch dataType {
	case "smallint", "integer":
		return kInt32
	case "bigint":
		return kInt64
	case "numeric":
		if precision > 0 && precision <= 18 {
			return kDecimal
		}
		return kString
	case "real", "double precision":
		return kDouble
	case "boolean":
		return kBool
	case "date":
		return kDate
	case "timestamp without time zone", "timestamp with time zone":
		return kTimestamp
	}
	return kString
}

// selectExpr is the SQL expression that selects c in the binary form
// decode expects (a numeric travels as it is). The identifier is quoted by
// pgx.
func (c column) selectExpr() string {
	id := pgx.Identifier{c.Name}.Sanitize()
	switch c.kind {
	case kInt32:
		return id + "::int4"
	case kDouble:
		return id + "::float8"
	case kTimestamp:
		return id + "::timestamp"
	case kString:
		return id + "::text"
	}
	return id
}

// node is c's Parquet type.
func (c column) node() parquet.Node {
	var n parquet.Node
	switch c.kind {
	case kInt32:
		n = parquet.Int(32)
	case kInt64:
		n = parquet.Int(64)
	case kDecimal:
		n = parquet.Decimal(c.scale, c.prec, parquet.Int64Type)
	case kDouble:
		n = parquet.Leaf(parquet.DoubleType)
	case kBool:
		n = parquet.Leaf(parquet.BooleanType)
	case kDate:
		n = parquet.Date()
	case kTimestamp:
		n = parquet.Timestamp(parquet.Microsecond)
	default:
		n = parquet.String()
	}
	if c.Nullable {
		return parquet.Optional(n)
	}
	return n
}

// typeName is c's type as the manifest records it.
func (c column) typeName() string {
	switch c.kind {
	case kInt32:
		return "INT32"
	case kInt64:
		return "INT64"
	case kDecimal:
		return fmt.Sprintf("DECIMAL(%d,%d)", c.prec, c.scale)
	case kDouble:
		return "DOUBLE"
	case kBool:
		return "BOOLEAN"
	case kDate:
		return "DATE"
	case kTimestamp:
		return "TIMESTAMP(MICROS,UTC)"
	}
	return "STRING"
}

// PostgreSQL's binary dates and timestamps count from 2000-01-01.
const (
	pgEpochDays   = 10957
	pgEpochMicros = 946684800000000
)

// decode turns c's binary value into a Parquet value; raw is nil for NULL.
// Byte arrays are copied into *arena, since the driver reuses raw's memory;
// the values stay valid until the arena is reused. Only values of nullable
// columns carry levels: WriteColumns needs nothing else.
func (c *column) decode(raw []byte, arena *[]byte) (parquet.Value, error) {
	if raw == nil {
		if !c.Nullable {
			return parquet.Value{}, fmt.Errorf("column %s: NULL in a NOT NULL column", c.Name)
		}
		return parquet.NullValue(), nil
	}
	var v parquet.Value
	switch c.kind {
	case kInt32:
		if len(raw) != 4 {
			return v, fmt.Errorf("column %s: %d bytes for an int4", c.Name, len(raw))
		}
		v = parquet.Int32Value(int32(binary.BigEndian.Uint32(raw))) // #nosec G115 -- two's complement
	case kDecimal:
		n, err := scaledNumeric(raw, c.scale)
		if err != nil {
			return v, fmt.Errorf("column %s: %w", c.Name, err)
		}
		v = parquet.Int64Value(n)
	case kInt64:
		if len(raw) != 8 {
			return v, fmt.Errorf("column %s: %d bytes for an int8", c.Name, len(raw))
		}
		v = parquet.Int64Value(int64(binary.BigEndian.Uint64(raw))) // #nosec G115 -- two's complement
	case kDouble:
		if len(raw) != 8 {
			return v, fmt.Errorf("column %s: %d bytes for a float8", c.Name, len(raw))
		}
		v = parquet.DoubleValue(math.Float64frombits(binary.BigEndian.Uint64(raw)))
	case kBool:
		if len(raw) != 1 {
			return v, fmt.Errorf("column %s: %d bytes for a bool", c.Name, len(raw))
		}
		v = parquet.BooleanValue(raw[0] != 0)
	case kDate:
		if len(raw) != 4 {
			return v, fmt.Errorf("column %s: %d bytes for a date", c.Name, len(raw))
		}
		v = parquet.Int32Value(int32(binary.BigEndian.Uint32(raw)) + pgEpochDays) // #nosec G115 -- two's complement
	case kTimestamp:
		us, ok := microsOf(raw)
		if !ok {
			return v, fmt.Errorf("column %s: %d bytes for a timestamp", c.Name, len(raw))
		}
		v = parquet.Int64Value(us)
	default:
		start := len(*arena)
		*arena = append(*arena, raw...)
		v = parquet.ByteArrayValue((*arena)[start:len(*arena):len(*arena)])
	}
	if c.Nullable {
		return v.Level(0, 1, c.leaf), nil
	}
	return v, nil
}

// orderedGroup is a Parquet group whose columns keep the source's order
// (parquet.Group sorts them by name). In source order the schema of a
// known table is the very schema of its totesys row type, so readers of
// those types read the file as it is, without converting it.
type orderedGroup struct {
	parquet.Group
	names []string
}

// Fields implements parquet.Node.
func (g orderedGroup) Fields() []parquet.Field {
	fields := g.Group.Fields()
	out := make([]parquet.Field, 0, len(fields))
	for _, name := range g.names {
		for _, f := range fields {
			if f.Name() == name {
				out = append(out, f)
			}
		}
	}
	return out
}

// int32Of decodes a binary int4.
func int32Of(raw []byte) (int32, bool) {
	if len(raw) != 4 {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(raw)), true // #nosec G115 -- two's complement
}

// microsOf decodes a binary timestamp as µs since the Unix epoch.
// PostgreSQL's 'infinity' and '-infinity' are math.MaxInt64 and
// math.MinInt64 µs after 2000-01-01; they stay so, as does a time too far
// off for an int64 to count its µs since 1970.
func microsOf(raw []byte) (int64, bool) {
	if len(raw) != 8 {
		return 0, false
	}
	us := int64(binary.BigEndian.Uint64(raw)) // #nosec G115 -- two's complement
	switch {
	case us == math.MinInt64:
		return us, true
	case us > math.MaxInt64-pgEpochMicros:
		return math.MaxInt64, true
	}
	return us + pgEpochMicros, true
}

// pow10 holds the powers of ten an int64 can hold.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// scaledNumeric decodes a binary numeric as an integer count of
// 10^-scale units (1234.5 at scale 2 is 123450), exactly: it fails on a NaN
// or an infinity, on digits below the scale and on a value an int64 cannot
// hold. The binary form is a count of base-10000 digits, the weight of the
// first, a sign and a display scale, then the digits.
func scaledNumeric(raw []byte, scale int) (int64, error) {
	if len(raw) < 8 {
		return 0, fmt.Errorf("%d bytes for a numeric", len(raw))
	}
	ndigits := int(binary.BigEndian.Uint16(raw[0:2]))
	weight := int(int16(binary.BigEndian.Uint16(raw[2:4]))) // #nosec G115 -- two's complement
	sign := binary.BigEndian.Uint16(raw[4:6])
	if len(raw) != 8+2*ndigits {
		return 0, fmt.Errorf("%d bytes for a numeric of %d digits", len(raw), ndigits)
	}
	if sign != 0 && sign != 0x4000 {
		return 0, errors.New("numeric is NaN or infinite")
	}
	var n int64
	for i := range ndigits {
		d := int64(binary.BigEndian.Uint16(raw[8+2*i:]))
		if d == 0 {
			continue
		}
		switch e := 4*(weight-i) + scale; {
		case e >= len(pow10):
			return 0, errors.New("numeric too large")
		case e >= 0:
			if d > (math.MaxInt64-n)/pow10[e] {
				return 0, errors.New("numeric too large")
			}
			n += d * pow10[e]
		case e > -4 && d%pow10[-e] == 0:
			n += d / pow10[-e]
		default:
			return 0, fmt.Errorf("numeric has more than %d decimals", scale)
		}
	}
	if sign == 0x4000 {
		n = -n
	}
	return n, nil
}
