package ingest

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// Inserts and updates are most of what a slot sends. They are decoded
// here into tuples the stream reuses, their values pointing into the
// message (the landing copies what it keeps), rather than by
// pglogrepl.Parse, which allocates every column of every change anew: a
// sixth of ingest's CPU over a million changes. Every other message still
// goes to pglogrepl.

// changeDecoder decodes insert and update messages into its own tuples,
// valid until the next decode.
type changeDecoder struct {
	tuple, old tupleBuf
}

// tupleBuf is a reused TupleData and its columns.
type tupleBuf struct {
	data pglogrepl.TupleData
	cols []pglogrepl.TupleDataColumn
}

// decode decodes data, a pgoutput insert ('I') or update ('U') message,
// type byte first: the relation, the new tuple and, for an update of a
// table whose replica identity sends it, the old tuple or key.
func (d *changeDecoder) decode(data []byte) (relID uint32, tuple, old *pglogrepl.TupleData, err error) {
	if len(data) < 6 {
		return 0, nil, nil, fmt.Errorf("a change message of %d bytes", len(data))
	}
	relID, kind, src := binary.BigEndian.Uint32(data[1:]), data[5], data[6:]
	if data[0] == byte(pglogrepl.MessageTypeUpdate) && (kind == pglogrepl.UpdateMessageTupleTypeKey || kind == pglogrepl.UpdateMessageTupleTypeOld) {
		n, err := d.old.decode(src)
		if err != nil {
			return 0, nil, nil, err
		}
		if n >= len(src) {
			return 0, nil, nil, fmt.Errorf("an update of relation %d without its new tuple", relID)
		}
		old, kind, src = &d.old.data, src[n], src[n+1:]
	}
	if kind != pglogrepl.UpdateMessageTupleTypeNew {
		return 0, nil, nil, fmt.Errorf("a change of relation %d with a tuple of type %q", relID, kind)
	}
	if _, err := d.tuple.decode(src); err != nil {
		return 0, nil, nil, err
	}
	return relID, &d.tuple.data, old, nil
}

// decode decodes the tuple at the start of src into b, returning its
// length.
func (b *tupleBuf) decode(src []byte) (int, error) {
	if len(src) < 2 {
		return 0, fmt.Errorf("a tuple of %d bytes", len(src))
	}
	n := int(binary.BigEndian.Uint16(src))
	if cap(b.cols) < n {
		b.cols, b.data.Columns = make([]pglogrepl.TupleDataColumn, n), make([]*pglogrepl.TupleDataColumn, n)
	}
	b.cols, b.data.Columns, b.data.ColumnNum = b.cols[:n], b.data.Columns[:n], uint16(n) // #nosec G115 -- read from a uint16
	at := 2
	for i := range b.cols {
		c := &b.cols[i]
		b.data.Columns[i] = c
		if at >= len(src) {
			return 0, fmt.Errorf("a tuple cut short at column %d of %d", i+1, n)
		}
		c.DataType, c.Length, c.Data = src[at], 0, nil
		at++
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			if at+4 > len(src) {
				return 0, fmt.Errorf("a tuple cut short at column %d of %d", i+1, n)
			}
			c.Length = binary.BigEndian.Uint32(src[at:])
			at += 4
			if int64(c.Length) > int64(len(src)-at) {
				return 0, fmt.Errorf("column %d of a tuple says %d bytes, %d are left", i+1, c.Length, len(src)-at)
			}
			end := at + int(c.Length)
			c.Data, at = src[at:end:end], end
		default:
			return 0, fmt.Errorf("column %d of a tuple has type %q", i+1, c.DataType)
		}
	}
	return at, nil
}
