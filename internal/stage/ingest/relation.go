package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// relation is one published table as a relation message describes it:
// its columns as the poll would read them (sourceTable, with the capture
// columns after them), and each column's type in the stream, from which
// its values are converted to the binary form the poll's query returns
// (see convert).
type relation struct {
	table totesys.Table
	src   *sourceTable
	oids  []uint32
	// enums are the types among oids that are enums, whose binary form is
	// their label's text.
	enums map[uint32]bool
	// key is the index of the table's key among the relation's columns.
	key int
}

// newRelation reads a relation message: the columns' names and types come
// from it, whether each may be NULL from the catalogue (q) when it still
// agrees with the message, and every column nullable but the key and
// last_updated when it does not (a later change of the table).
func newRelation(ctx context.Context, q querier, m *pglogrepl.RelationMessage, log *slog.Logger) (*relation, error) {
	i := slices.IndexFunc(totesys.Tables, func(t totesys.Table) bool { return t.Name == m.RelationName })
	if i < 0 {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch,
			fmt.Errorf("the publication sends %s.%s, which is not a totesys table: publish the eleven tables only", m.Namespace, m.RelationName))
	}
	table := totesys.Tables[i]
	cat, err := describe(ctx, q, table.Name)
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("describe %s: %w", table.Name, err))
	}
	r := &relation{table: table, key: -1}
	cols := make([]column, len(m.Columns))
	agrees := len(cat) == len(m.Columns)
	for j, mc := range m.Columns {
		c := columnOfType(mc.Name, mc.DataType, mc.TypeModifier)
		if agrees && (cat[j].Name != c.Name || cat[j].kind != c.kind || cat[j].prec != c.prec || cat[j].scale != c.scale) {
			agrees = false
		}
		cols[j] = c
		r.oids = append(r.oids, mc.DataType)
		if c.Name == table.Key {
			r.key = j
		}
	}
	for j := range cols {
		cols[j].Nullable = cols[j].Name != table.Key && cols[j].Name != totesys.LastUpdated
		if agrees {
			cols[j].Nullable = cat[j].Nullable
		}
	}
	src, err := newSourceTable(table, cols, log)
	if err != nil {
		return nil, err
	}
	if r.src, err = src.withCapture(table); err != nil {
		return nil, err
	}
	if r.enums, err = enumTypes(ctx, q, r.oids); err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("describe %s: %w", table.Name, err))
	}
	return r, nil
}

// enumTypes are those of oids that are enum types.
func enumTypes(ctx context.Context, q querier, oids []uint32) (map[uint32]bool, error) {
	rows, err := q.Query(ctx, "SELECT oid FROM pg_catalog.pg_type WHERE typtype = 'e' AND oid = ANY($1)", oids)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	enums := map[uint32]bool{}
	for _, oid := range found {
		enums[oid] = true
	}
	return enums, err
}

// columnOfType is a column of the type the stream names, read as the
// catalogue's data type of that name would be (see kindOf).
func columnOfType(name string, oid uint32, typmod int32) column {
	c := column{Name: name}
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID:
		c.kind = kInt32
	case pgtype.Int8OID:
		c.kind = kInt64
	case pgtype.NumericOID:
		if typmod >= 4 {
			c.prec, c.scale = int((typmod-4)>>16)&0xffff, int(typmod-4)&0xffff
		}
		c.kind = kindOf("numeric", c.prec)
		if c.kind != kDecimal {
			c.prec, c.scale = 0, 0
		}
	case pgtype.Float4OID, pgtype.Float8OID:
		c.kind = kDouble
	case pgtype.BoolOID:
		c.kind = kBool
	case pgtype.DateOID:
		c.kind = kDate
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		c.kind = kTimestamp
	default:
		c.kind = kString
	}
	return c
}

// sameColumns reports whether r and o lay out the same columns, so that
// their rows fit one object.
func (r *relation) sameColumns(o *relation) bool {
	return slices.EqualFunc(r.src.cols, o.src.cols, func(a, b column) bool {
		return a.Name == b.Name && a.kind == b.kind && a.prec == b.prec && a.scale == b.scale && a.Nullable == b.Nullable
	})
}

// convert turns column j's value as the stream sends it (binary, in its
// own type) into what the poll's select list returns (see selectExpr): a
// smallint widened to int4, a real to float8, a char(n) without its
// padding, an enum's label as it comes, and any type read as text in
// PostgreSQL's text form, which typeMap (one per stream: a map is not
// safe for concurrent use) prints.
func (r *relation) convert(typeMap *pgtype.Map, j int, raw []byte) ([]byte, error) {
	c, oid := &r.src.cols[j], r.oids[j]
	switch {
	case oid == pgtype.Int2OID && len(raw) == 2:
		return binary.BigEndian.AppendUint32(nil, uint32(int32(int16(binary.BigEndian.Uint16(raw))))), nil // #nosec G115 -- sign-extended
	case oid == pgtype.Float4OID && len(raw) == 4:
		f := float64(math.Float32frombits(binary.BigEndian.Uint32(raw)))
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case c.kind != kString, oid == pgtype.TextOID, oid == pgtype.VarcharOID, oid == pgtype.NameOID, r.enums[oid]:
		return raw, nil
	case oid == pgtype.BPCharOID:
		return []byte(strings.TrimRight(string(raw), " ")), nil
	case oid == pgtype.JSONOID, oid == pgtype.XMLOID:
		return raw, nil
	case oid == pgtype.JSONBOID && len(raw) > 0 && raw[0] == 1: // a version, then the text
		return raw[1:], nil
	}
	t, ok := typeMap.TypeForOID(oid)
	if !ok {
		return nil, errkind.Wrap(errkind.SourceSchemaMismatch,
			fmt.Errorf("column %s.%s: type %d is not one capture can read", r.table.Name, c.Name, oid))
	}
	v, err := t.Codec.DecodeValue(typeMap, oid, pgx.BinaryFormatCode, raw)
	if err == nil {
		var text []byte
		if text, err = typeMap.Encode(oid, pgx.TextFormatCode, v, nil); err == nil {
			return text, nil
		}
	}
	return nil, errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf("column %s.%s: %w", r.table.Name, c.Name, err))
}
