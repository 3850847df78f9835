package ingest

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// tupleBytes encodes a pgoutput tuple: each column as its type byte and,
// for 't' and 'b', its value.
func tupleBytes(cols ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(cols))) // #nosec G115 -- a test's few columns
	for _, c := range cols {
		b = append(b, c[0])
		if c[0] == 't' || c[0] == 'b' {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c)-1)) // #nosec G115 -- short
			b = append(b, c[1:]...)
		}
	}
	return b
}

// changeBytes encodes a pgoutput change message of kind ('I' or 'U') on
// relation 7 from its parts.
func changeBytes(kind byte, parts ...[]byte) []byte {
	return bytes.Join(append([][]byte{{kind, 0, 0, 0, 7}}, parts...), nil)
}

func TestChangeDecoderAgreesWithPglogrepl(t *testing.T) {
	newT := tupleBytes("b\x00\x00\x00\x2a", "n", "u", "tsome text", "b")
	oldT := tupleBytes("b\x00\x00\x00\x29", "n", "tother", "t", "b\x01")
	for name, data := range map[string][]byte{
		"insert":          changeBytes('I', []byte{'N'}, newT),
		"update":          changeBytes('U', []byte{'N'}, newT),
		"update with old": changeBytes('U', []byte{'O'}, oldT, []byte{'N'}, newT),
		"update with key": changeBytes('U', []byte{'K'}, oldT, []byte{'N'}, newT),
	} {
		t.Run(name, func(t *testing.T) {
			var d changeDecoder
			// Twice: the second decode reuses the first's tuples.
			for range 2 {
				rel, tuple, old, err := d.decode(data)
				if err != nil {
					t.Fatal(err)
				}
				m, err := pglogrepl.Parse(data)
				if err != nil {
					t.Fatal(err)
				}
				var wantRel uint32
				var want, wantOld *pglogrepl.TupleData
				switch m := m.(type) {
				case *pglogrepl.InsertMessage:
					wantRel, want = m.RelationID, m.Tuple
				case *pglogrepl.UpdateMessage:
					wantRel, want, wantOld = m.RelationID, m.NewTuple, m.OldTuple
				}
				if rel != wantRel || !sameTuple(tuple, want) || !sameTuple(old, wantOld) {
					t.Fatalf("decoded relation %d, %v, old %v; pglogrepl %d, %v, old %v", rel, tuple, old, wantRel, want, wantOld)
				}
			}
		})
	}
}

// sameTuple reports whether a and b hold the same columns.
func sameTuple(a, b *pglogrepl.TupleData) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ColumnNum != b.ColumnNum || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i, c := range a.Columns {
		o := b.Columns[i]
		if c.DataType != o.DataType || c.Length != o.Length || !bytes.Equal(c.Data, o.Data) {
			return false
		}
	}
	return true
}

func TestChangeDecoderRefusesBrokenMessages(t *testing.T) {
	good := tupleBytes("b\x00\x00\x00\x2a", "tx")
	long := tupleBytes("tabc")
	binary.BigEndian.PutUint32(long[3:], 1<<31) // says 2 GiB
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"too short", "a change message of 3 bytes", []byte{'I', 0, 0}},
		{"unknown tuple type", `tuple of type 'X'`, changeBytes('I', []byte{'X'}, good)},
		{"no column count", "a tuple of 1 bytes", changeBytes('I', []byte{'N'}, []byte{0})},
		{"columns missing", "cut short at column 3 of 3", changeBytes('I', []byte{'N'}, append([]byte{0, 3}, good[2:]...))},
		{"value cut short", "cut short at column 1 of 1", changeBytes('I', []byte{'N'}, []byte{0, 1, 't', 0, 0})},
		{"value past the end", "says 2147483648 bytes, 3 are left", changeBytes('I', []byte{'N'}, long)},
		{"unknown column type", `column 1 of a tuple has type 'z'`, changeBytes('I', []byte{'N'}, []byte{0, 1, 'z'})},
		{"update without its new tuple", "without its new tuple", changeBytes('U', []byte{'O'}, good)},
		{"broken old tuple", "cut short at column 1 of 1", changeBytes('U', []byte{'O'}, []byte{0, 1})},
		{"broken new tuple after the old", "a tuple of 0 bytes", changeBytes('U', []byte{'O'}, good, []byte{'N'})},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d changeDecoder
			if _, _, _, err := d.decode(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}
