package warehouse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// Direct loading. A fact table with a unique version key, or an empty
// dimension with a unique key, takes the batch's rows by one binary COPY
// straight into the table, with the warehouse's own types encoded here
// (PostgreSQL's binary COPY format): no staging table, no second pass, no
// ON CONFLICT. The unique key still refuses a version (or dimension key)
// that is already there or twice in the batch; the COPY runs under a
// savepoint, and on that refusal load rolls back to it and takes the staged
// path, which skips such rows as it always did. (A big batch into an empty
// fact table is copied without the table's keys, which are built after it,
// under the same savepoint, and with ids numbered by load: see
// dropIndexKeysForBulk and reserveIDs.)

// copyHeader starts a binary COPY stream: signature, flags, extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// encoder writes one column of a row, in binary COPY form.
type encoder struct {
	field    int  // the star struct's field
	nullable bool // the field is a pointer
	typ      *star.Type
	dbType   string    // the database column's type (pg_type.typname)
	seen     *valueSet // when set, collects the column's values (a type with a KeyArray)
}

// encodersFor are the encoders of columns cs of a table whose database
// column types are typ (column name to pg_type.typname), collecting the
// values of the columns in seen.
func encodersFor(fields []int, cs []column, typ map[string]string, seen map[string]*valueSet) []encoder {
	out := make([]encoder, len(cs))
	for i, c := range cs {
		out[i] = encoder{field: fields[i], nullable: c.nullable, typ: c.typ, dbType: typ[c.name], seen: seen[c.name]}
	}
	return out
}

// serialIDs numbers the rows of a COPY, from next on, for a fact table
// whose serial column is int8 when wide (see reserveIDs).
type serialIDs struct {
	next int64
	wide bool
}

// appendRow appends the binary COPY form of struct value v, led by its id
// when ids is not nil.
func appendRow(buf []byte, v reflect.Value, encs []encoder, ids *serialIDs) []byte {
	cols := len(encs)
	if ids != nil {
		cols++
	}
	buf = binary.BigEndian.AppendUint16(buf, uint16(cols)) // #nosec G115 -- a few columns
	if ids != nil {
		buf = star.AppendCopyInt(buf, ids.next, ids.wide)
		ids.next++
	}
	for _, e := range encs {
		f := v.Field(e.field)
		if e.nullable {
			if f.IsNil() {
				buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
				continue
			}
			f = f.Elem()
		}
		if e.seen != nil {
			e.seen.add(f.Int())
		}
		buf = e.typ.AppendCopy(buf, f, e.dbType)
	}
	return buf
}

// copyDirect copies the object of manifest entry obj of table t by a
// binary COPY into into (quoted: the table itself, or a table of the same
// column types), returning the rows copied. When keys is not nil, it
// collects the values of the foreign-key columns on the way; when ids is
// not nil, it numbers the rows' serial column itself.
func (l *loader) copyDirect(ctx context.Context, tx pgx.Tx, t *table, into string, obj lake.Object, keys *keyValues, ids *serialIDs) (int64, error) {
	cs := t.dataCols()
	names := make([]string, 0, len(cs)+1)
	if ids != nil {
		names = append(names, q(t.serial))
	}
	for _, c := range cs {
		names = append(names, q(c.name))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	readErr := make(chan error, 1)
	count := l.progress.Table(t.name, obj.Rows)
	defer count.Done()
	go func() {
		err := t.feed.encode(ctx, l.bucket, obj, l.plan.types[t.name], keys.sets(), ids, pw, count)
		_ = pw.CloseWithError(err) // nil: EOF for COPY
		readErr <- err
	}()
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, pr,
		"COPY "+into+" ("+strings.Join(names, ", ")+") FROM STDIN (FORMAT binary)")
	_ = pr.CloseWithError(errCopyDone) // unblocks the encoder if COPY stopped first
	cancel()
	rerr := <-readErr
	if rerr != nil && !errors.Is(rerr, errCopyDone) && !errors.Is(rerr, context.Canceled) {
		return 0, errkind.Default(errkind.BucketReadFailed, rerr)
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", obj.Key, err)
	}
	return tag.RowsAffected(), nil
}

var errCopyDone = errors.New("copy finished")

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// encodeTo streams the rows of the object of manifest entry obj, verified
// against it, in binary COPY form (numbered by ids, when not nil), to w,
// counting them on count.
func encodeTo[T any](ctx context.Context, b *lake.Bucket, obj lake.Object, encs []encoder, ids *serialIDs, w io.Writer, count *progress.Counter) error {
	buf := make([]byte, 0, 256*1024)
	buf = append(buf, copyHeader...)
	err := lake.ReadObject(ctx, b, obj, readBatch, func(rows []T) error {
		count.Add(int64(len(rows)))
		for i := range rows {
			buf = appendRow(buf, reflect.ValueOf(&rows[i]).Elem(), encs, ids)
			if len(buf) >= 192*1024 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	buf = binary.BigEndian.AppendUint16(buf, math.MaxUint16) // the trailer: -1
	_, err = w.Write(buf)
	return err
}
