package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// rowGroupRows bounds a row group, and so the memory a writer buffers.
const rowGroupRows = 128 * 1024

// codec compresses every Parquet object; one for all writers, since each
// codec keeps its own pool of encoders (megabytes each).
var codec = &zstd.Codec{Level: zstd.SpeedFastest}

// ParquetWriter streams rows of type T into a new Parquet object (zstd).
// For a struct T it also measures the longest value of each text column.
type ParquetWriter[T any] struct {
	obj  *Upload
	w    *parquet.GenericWriter[T]
	rows int64
	text []textField // T's string fields
	max  []int       // the longest value of each, in characters
}

// textField is a string (or *string) field of a row struct.
type textField struct {
	index int
	name  string // the Parquet column's name
	ptr   bool
}

// textFields are the top-level string fields of struct type t.
func textFields(t reflect.Type) []textField {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []textField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("parquet"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft, ptr := f.Type, false
		if ft.Kind() == reflect.Pointer {
			ft, ptr = ft.Elem(), true
		}
		if ft.Kind() == reflect.String {
			out = append(out, textField{index: i, name: name, ptr: ptr})
		}
	}
	return out
}

// NewParquetWriter starts the object key. With a nil schema the schema is
// T's; ingest passes one built from the source's columns (and T = any).
func NewParquetWriter[T any](ctx context.Context, b *Bucket, key string, schema *parquet.Schema) (*ParquetWriter[T], error) {
	obj, err := b.Create(ctx, key)
	if err != nil {
		return nil, err
	}
	opts := []parquet.WriterOption{
		parquet.Compression(codec),
		parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.PageBufferSize(256 * 1024),
		parquet.CreatedBy("sandstone", "1", ""),
	}
	if schema != nil {
		opts = append(opts, schema)
	}
	text := textFields(reflect.TypeFor[T]())
	return &ParquetWriter[T]{obj: obj, w: parquet.NewGenericWriter[T](obj, opts...), text: text, max: make([]int, len(text))}, nil
}

// Write appends typed rows.
func (w *ParquetWriter[T]) Write(rows []T) error {
	if len(w.text) > 0 {
		for i := range rows {
			v := reflect.ValueOf(&rows[i]).Elem()
			for j, tf := range w.text {
				f := v.Field(tf.index)
				if tf.ptr {
					if f.IsNil() {
						continue
					}
					f = f.Elem()
				}
				// A string of n bytes has at most n characters: count only
				// those that might be longer than the longest so far.
				if s := f.String(); len(s) > w.max[j] {
					w.max[j] = max(w.max[j], utf8.RuneCountInString(s))
				}
			}
		}
	}
	n, err := w.w.Write(rows)
	w.rows += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", w.obj.Key, err)
	}
	return nil
}

// Rows is the number of rows written.
func (w *ParquetWriter[T]) Rows() int64 { return w.rows }

// MaxLen is the length, in characters, of the longest value written to
// each text column of a struct T, for Object.MaxLen; columns with no
// non-empty value are left out, and a writer of untyped rows gives nil.
func (w *ParquetWriter[T]) MaxLen() map[string]int {
	var out map[string]int
	for j, tf := range w.text {
		if w.max[j] > 0 {
			if out == nil {
				out = map[string]int{}
			}
			out[tf.name] = w.max[j]
		}
	}
	return out
}

// Key is the object's key.
func (w *ParquetWriter[T]) Key() string { return w.obj.Key }

// Close flushes and commits the object, returning its size and checksum.
func (w *ParquetWriter[T]) Close() (size int64, sha256 string, err error) {
	if err := w.w.Close(); err != nil {
		w.obj.Abort()
		return 0, "", fmt.Errorf("write %s: %w", w.obj.Key, err)
	}
	if err := w.obj.Close(); err != nil {
		return 0, "", err
	}
	return w.obj.Size(), w.obj.SHA256(), nil
}

// Abort drops the object.
func (w *ParquetWriter[T]) Abort() { w.obj.Abort() }

// ParquetFile is a Parquet object downloaded to a temporary file, to be
// read once or more. Close removes the file.
type ParquetFile struct {
	Key  string
	f    *os.File
	file *parquet.File
}

// OpenParquet downloads the Parquet object key and opens it.
func OpenParquet(ctx context.Context, b *Bucket, key string) (*ParquetFile, error) {
	f, err := b.Download(ctx, key)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		RemoveTemp(f)
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		RemoveTemp(f)
		return nil, fmt.Errorf("read %s: not Parquet: %w", key, err)
	}
	return &ParquetFile{Key: key, f: f, file: pf}, nil
}

// ErrObjectMismatch means an object differs from its manifest entry.
var ErrObjectMismatch = errors.New("the object does not match its manifest")

// OpenObject downloads the Parquet object of manifest entry obj and opens
// it, verified: its size and SHA-256 (hashed as it downloads) and its row
// count must be those the manifest records. A difference is an error of
// kind errkind.ObjectMismatch (wrapping ErrObjectMismatch) that names the
// object, the bucket, what was expected and what was found: the object was
// replaced or damaged after its batch was committed. An entry without a
// checksum (written by hand, not by a stage) is only opened.
func OpenObject(ctx context.Context, b *Bucket, obj Object) (*ParquetFile, error) {
	h := sha256.New()
	f, n, err := b.download(ctx, obj.Key, h)
	if err != nil {
		return nil, err
	}
	mismatch := func(want, got string) error { return b.mismatch(obj, want, got) }
	if err := b.checkSum(obj, n, h.Sum(nil)); err != nil {
		RemoveTemp(f)
		return nil, err
	}
	pf, err := parquet.OpenFile(f, n)
	if err != nil {
		RemoveTemp(f)
		return nil, fmt.Errorf("read %s: not Parquet: %w", obj.Key, err)
	}
	if obj.SHA256 != "" && pf.NumRows() != obj.Rows {
		RemoveTemp(f)
		return nil, mismatch(fmt.Sprintf("%d rows", obj.Rows), fmt.Sprintf("%d rows", pf.NumRows()))
	}
	return &ParquetFile{Key: obj.Key, f: f, file: pf}, nil
}

// GetObject reads the whole object of manifest entry obj (a small one,
// such as a rejects object), verified as OpenObject verifies its size and
// SHA-256.
func GetObject(ctx context.Context, b *Bucket, obj Object) ([]byte, error) {
	data, err := b.Get(ctx, obj.Key)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if err := b.checkSum(obj, int64(len(data)), sum[:]); err != nil {
		return nil, err
	}
	return data, nil
}

// checkSum compares an object's size and SHA-256 with its manifest entry;
// an entry without a checksum (written by hand, not by a stage) is not
// checked.
func (b *Bucket) checkSum(obj Object, size int64, sum []byte) error {
	if obj.SHA256 == "" {
		return nil
	}
	if got := hex.EncodeToString(sum); size != obj.Bytes || got != obj.SHA256 {
		return b.mismatch(obj, fmt.Sprintf("%d bytes, sha256 %s", obj.Bytes, obj.SHA256), fmt.Sprintf("%d bytes, sha256 %s", size, got))
	}
	return nil
}

// mismatch is the error of an object that differs from its manifest entry.
func (b *Bucket) mismatch(obj Object, want, got string) error {
	return errkind.Wrap(errkind.ObjectMismatch, fmt.Errorf(
		"object %s in bucket %s: %w: the manifest says %s, the bucket holds %s. "+
			"The object was replaced or damaged after its batch was committed, so the batch is refused: "+
			"put the original object back, or rebuild this bucket (and those after it) from the stage before",
		obj.Key, b.url, ErrObjectMismatch, want, got))
}

// Close removes the temporary file.
func (p *ParquetFile) Close() { RemoveTemp(p.f) }

// File is the open Parquet file: its schema, statistics and raw rows.
func (p *ParquetFile) File() *parquet.File { return p.file }

// ReadRows streams the rows of p, up to batch rows at a time, to fn.
// Columns are matched by name: columns the file has and T lacks are skipped,
// columns T has and the file lacks read as zero values.
//
// A goroutine decodes the next rows while fn handles the last (decoding
// is a quarter to a third of a transform's CPU time), in order; fn must
// not keep the slice it is given once it returns.
func ReadRows[T any](ctx context.Context, p *ParquetFile, batch int, fn func([]T) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("read %s: %v", p.Key, v)
		}
	}()
	r := genericReader[T](p.file)
	defer func() { _ = r.Close() }()
	type rows struct {
		buf []T
		err error // io.EOF after the last rows
	}
	free := make(chan []T, 2)
	free <- make([]T, batch)
	free <- make([]T, batch)
	full := make(chan rows, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		for {
			var buf []T
			select {
			case <-stop: // before a free buffer, which may be there too
				return
			default:
			}
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := readInto(r, buf, p.Key)
			select {
			case full <- rows{buf[:n], err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer wg.Wait() // before the reader closes
	defer close(stop)
	for next := range full {
		if len(next.buf) > 0 {
			if err := fn(next.buf); err != nil {
				return err
			}
		}
		switch {
		case errors.Is(next.err, io.EOF):
			return nil
		case next.err != nil:
			return next.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		free <- next.buf[:cap(next.buf)]
	}
	return nil
}

// genericReader reads f as T. A file whose first columns are T's, with more
// after them (a capture batch's columns after the source's), is read as
// those columns alone, each row straight into T; any other file that is
// not T's converts every row to T's schema (parquet-go's conversion,
// several times slower).
func genericReader[T any](f *parquet.File) *parquet.GenericReader[T] {
	schema := parquet.SchemaOf(new(T))
	want, have := schema.Fields(), f.Schema().Fields()
	if len(want) == 0 || len(want) >= len(have) {
		return parquet.NewGenericReader[T](f)
	}
	for i, w := range want {
		if w.Name() != have[i].Name() || !w.Leaf() || !parquet.EqualNodes(w, have[i]) {
			return parquet.NewGenericReader[T](f)
		}
	}
	groups := f.RowGroups()
	prefix := make([]parquet.RowGroup, len(groups))
	for i, g := range groups {
		prefix[i] = prefixRowGroup{RowGroup: g, schema: schema, n: len(want)}
	}
	return parquet.NewGenericRowGroupReader[T](parquet.MultiRowGroup(prefix...))
}

// prefixRowGroup is a row group seen as its first n columns, of schema.
type prefixRowGroup struct {
	parquet.RowGroup
	schema *parquet.Schema
	n      int
}

func (g prefixRowGroup) Schema() *parquet.Schema { return g.schema }

func (g prefixRowGroup) ColumnChunks() []parquet.ColumnChunk { return g.RowGroup.ColumnChunks()[:g.n] }

func (g prefixRowGroup) Rows() parquet.Rows { return parquet.NewRowGroupRowReader(g) }

// readInto reads the next rows of r into buf; parquet-go panics on some
// damaged files, which becomes an error.
func readInto[T any](r *parquet.GenericReader[T], buf []T, key string) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, fmt.Errorf("read %s: %v", key, v)
		}
	}()
	n, err = r.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("read %s: %w", key, err)
	}
	return n, err
}

// ReadObject streams the rows of the Parquet object of manifest entry obj,
// verified as OpenObject verifies it, up to batch rows at a time, to fn, as
// ReadRows does.
func ReadObject[T any](ctx context.Context, b *Bucket, obj Object, batch int, fn func([]T) error) error {
	p, err := OpenObject(ctx, b, obj)
	if err != nil {
		return err
	}
	defer p.Close()
	return ReadRows(ctx, p, batch, fn)
}

// ReadParquet streams the rows of the Parquet object key, up to batch rows
// at a time, to fn, as ReadRows does.
func ReadParquet[T any](ctx context.Context, b *Bucket, key string, batch int, fn func([]T) error) error {
	p, err := OpenParquet(ctx, b, key)
	if err != nil {
		return err
	}
	defer p.Close()
	return ReadRows(ctx, p, batch, fn)
}
