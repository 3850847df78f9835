package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"
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

// describe reads the columns of table from the source's catalogue.
func describe(ctx context.Context, tx pgx.Tx, table string) ([]column, error) {
	rows, err := tx.Query(ctx, `
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
// decode expects. The identifier is quoted by pgx; only integers from the
// catalogue are formatted in.
func (c column) selectExpr() string {
	id := pgx.Identifier{c.Name}.Sanitize()
	switch c.kind {
	case kInt32:
		return id + "::int4"
	case kDecimal:
		return fmt.Sprintf("(%s * 1%s)::int8", id, strings.Repeat("0", c.scale))
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
// Byte arrays are copied, since the driver reuses raw's memory.
func (c column) decode(raw []byte) (parquet.Value, error) {
	def := 0
	if c.Nullable {
		def = 1
	}
	if raw == nil {
		if !c.Nullable {
			return parquet.Value{}, fmt.Errorf("column %s: NULL in a NOT NULL column", c.Name)
		}
		return parquet.NullValue().Level(0, 0, c.leaf), nil
	}
	var v parquet.Value
	switch c.kind {
	case kInt32:
		if len(raw) != 4 {
			return v, fmt.Errorf("column %s: %d bytes for an int4", c.Name, len(raw))
		}
		v = parquet.Int32Value(int32(binary.BigEndian.Uint32(raw))) // #nosec G115 -- two's complement
	case kInt64, kDecimal:
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
		if len(raw) != 8 {
			return v, fmt.Errorf("column %s: %d bytes for a timestamp", c.Name, len(raw))
		}
		v = parquet.Int64Value(int64(binary.BigEndian.Uint64(raw)) + pgEpochMicros) // #nosec G115 -- two's complement
	default:
		v = parquet.ByteArrayValue(append([]byte(nil), raw...))
	}
	return v.Level(0, def, c.leaf), nil
}

// timestampOf decodes a binary timestamp.
func timestampOf(raw []byte) (time.Time, bool) {
	if len(raw) != 8 {
		return time.Time{}, false
	}
	us := int64(binary.BigEndian.Uint64(raw)) + pgEpochMicros // #nosec G115 -- two's complement
	return time.UnixMicro(us).UTC(), true
}

// int32Of decodes a binary int4.
func int32Of(raw []byte) (int32, bool) {
	if len(raw) != 4 {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(raw)), true // #nosec G115 -- two's complement
}
