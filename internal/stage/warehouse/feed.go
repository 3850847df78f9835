package warehouse

import (
	"context"
	"errors"
	"io"
	"reflect"
	"sync"

	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// readBatch is how many Parquet rows the reader decodes at a time; at most
// two such buffers of one table are in memory.
const readBatch = 8192

// feeder streams one table's Parquet rows into COPY.
type feeder interface {
	// bind maps the columns to the fields of the table's star struct.
	bind(cols []column) error
	// open starts reading the object of manifest entry obj, verified
	// against it (lake.OpenObject), counting the rows read on count; the
	// caller must close the source.
	open(ctx context.Context, b *lake.Bucket, obj lake.Object, count *progress.Counter) rowSource
	// encode streams the rows of the object of obj, verified, to w in
	// binary COPY form, for a table whose column types are typ (column name
	// to pg_type.typname), collecting the values of the columns in seen
	// and numbering the rows by ids when it is not nil.
	encode(ctx context.Context, b *lake.Bucket, obj lake.Object, typ map[string]string, seen map[string]*valueSet, ids *serialIDs, w io.Writer, count *progress.Counter) error
}

// rowSource is a pgx.CopyFromSource over a Parquet object. Each row ends
// with its position in the object, counted from 1 (the staging table's _row
// column), so "the last row of a key" is well defined.
type rowSource interface {
	Next() bool
	Values() ([]any, error)
	Err() error
	// readErr is the error reading the object, if that is what stopped it.
	readErr() error
	close()
}

// feedOf is the feeder of star struct T.
func feedOf[T any]() feeder { return &typedFeed[T]{} }

type typedFeed[T any] struct {
	cols   []column
	fields []int  // struct field per column
	ptr    []bool // the field is a pointer (a nullable column)
}

func (f *typedFeed[T]) bind(cols []column) error {
	fields, err := fieldsFor(reflect.TypeFor[T](), cols)
	if err != nil {
		return err
	}
	f.cols, f.fields = cols, fields
	f.ptr = make([]bool, len(cols))
	for i, c := range cols {
		f.ptr[i] = c.nullable
	}
	return nil
}

// open runs lake.ReadObject, which pushes rows to a callback, in a
// goroutine and hands its batches over one at a time, so that COPY can pull
// them: the reader waits until COPY has used a batch before it reuses the
// buffer.
func (f *typedFeed[T]) open(ctx context.Context, b *lake.Bucket, obj lake.Object, count *progress.Counter) rowSource {
	ctx, cancel := context.WithCancel(ctx) // #nosec G118 -- the source keeps cancel, and close calls it
	s := &typedSource[T]{
		feed:    f,
		vals:    make([]any, len(f.fields)+1),
		batches: make(chan []T),
		used:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.batches)
		s.err = lake.ReadObject(ctx, b, obj, readBatch, func(rows []T) error {
			count.Add(int64(len(rows)))
			select {
			case s.batches <- rows:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-s.used:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return s
}

type typedSource[T any] struct {
	feed    *typedFeed[T]
	vals    []any
	batches chan []T
	used    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	err     error // set by the reader before it closes batches
	done    bool

	cur []T
	i   int
	n   int64
}

func (s *typedSource[T]) Next() bool {
	if s.done {
		return false
	}
	s.i++
	if s.i < len(s.cur) {
		s.n++
		return true
	}
	if s.cur != nil {
		s.cur = nil
		select {
		case s.used <- struct{}{}: // the reader waits for this to reuse its buffer
		case <-s.ctx.Done(): // the reader has stopped, and closes batches
		}
	}
	rows, ok := <-s.batches
	if !ok {
		s.done = true
		return false
	}
	s.cur, s.i = rows, 0
	s.n++
	return true
}

// Values points into the current row rather than copying it: COPY encodes
// the row before it asks for the next one, so no value is boxed.
func (s *typedSource[T]) Values() ([]any, error) {
	v := reflect.ValueOf(&s.cur[s.i]).Elem()
	for j, fi := range s.feed.fields {
		fv := v.Field(fi)
		if s.feed.ptr[j] {
			s.vals[j] = fv.Interface() // a *T: nil is NULL
		} else {
			s.vals[j] = fv.Addr().Interface()
		}
	}
	s.vals[len(s.feed.fields)] = &s.n
	return s.vals, nil
}

// Err is the reader's error, once the rows have run out.
func (s *typedSource[T]) Err() error {
	if s.done {
		return s.err
	}
	return nil
}

func (s *typedSource[T]) readErr() error {
	if s.done && s.err != nil && !errors.Is(s.err, context.Canceled) {
		return s.err
	}
	return nil
}

// close stops the reader, if still running, and waits for it.
func (s *typedSource[T]) close() {
	s.cancel()
	s.wg.Wait()
}

func (f *typedFeed[T]) encode(ctx context.Context, b *lake.Bucket, obj lake.Object, typ map[string]string, seen map[string]*valueSet, ids *serialIDs, w io.Writer, count *progress.Counter) error {
	return encodeTo[T](ctx, b, obj, encodersFor(f.fields, f.cols, typ, seen), ids, w, count)
}
