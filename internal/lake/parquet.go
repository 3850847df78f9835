package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// rowGroupRows bounds a row group, and so the memory a writer buffers.
const rowGroupRows = 128 * 1024

// codec compresses every Parquet object; one for all writers, since each
// codec keeps its own pool of encoders (megabytes each).
var codec = &zstd.Codec{Level: zstd.SpeedFastest}

// ParquetWriter streams rows of type T into a new Parquet object (zstd).
type ParquetWriter[T any] struct {
	obj  *Upload
	w    *parquet.GenericWriter[T]
	rows int64
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
	return &ParquetWriter[T]{obj: obj, w: parquet.NewGenericWriter[T](obj, opts...)}, nil
}

// Write appends typed rows.
func (w *ParquetWriter[T]) Write(rows []T) error {
	n, err := w.w.Write(rows)
	w.rows += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", w.obj.Key, err)
	}
	return nil
}

// Rows is the number of rows written.
func (w *ParquetWriter[T]) Rows() int64 { return w.rows }

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

// Close removes the temporary file.
func (p *ParquetFile) Close() { RemoveTemp(p.f) }

// ReadRows streams the rows of p, up to batch rows at a time, to fn.
// Columns are matched by name: columns the file has and T lacks are skipped,
// columns T has and the file lacks read as zero values.
func ReadRows[T any](ctx context.Context, p *ParquetFile, batch int, fn func([]T) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read %s: %v", p.Key, r)
		}
	}()
	r := parquet.NewGenericReader[T](p.file)
	defer func() { _ = r.Close() }()
	buf := make([]T, batch)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := fn(buf[:n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", p.Key, rerr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
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
