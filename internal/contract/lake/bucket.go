// Package lake is Sandstone's access to its buckets: opening them by URL,
// write-once objects, batch manifests in sequence, and Parquet I/O.
//
// Objects are never overwritten or deleted. A batch becomes visible only
// when its manifest exists; the manifest is created last, exclusively, so
// that two writers racing for the same sequence number cannot both win.
package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob" // mem:// buckets
	_ "gocloud.dev/blob/s3blob"  // s3:// buckets
	"gocloud.dev/gcerrors"
)

// ErrExists is returned when creating an object whose key is taken.
var ErrExists = errors.New("object already exists")

// ErrNotFound is returned when reading an object that does not exist.
var ErrNotFound = errors.New("object not found")

// Bucket is one of the pipeline's buckets.
type Bucket struct {
	b   *blob.Bucket
	url string
	dir string // the directory of a file bucket, else ""
}

// Open opens the bucket at rawURL: file:///abs/dir (or a directory path,
// or a relative file://rel/dir, both relative to the current directory,
// made absolute and created), s3://name?region=..., or mem://.
func Open(ctx context.Context, rawURL string) (*Bucket, error) {
	resolved, dir, err := resolve(rawURL)
	if err != nil {
		return nil, err
	}
	bk := &Bucket{url: resolved, dir: dir}
	if dir != "" {
		if err := os.MkdirAll(bk.dir, 0o750); err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", resolved, err)
		}
		bk.b, err = fileblob.OpenBucket(bk.dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite, NoTempDir: true})
	} else {
		bk.b, err = blob.OpenBucket(ctx, resolved)
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", resolved, err)
	}
	return bk, nil
}

// URL is the bucket's URL as given (a directory or relative file:// URL
// as the absolute file:///dir it means).
func (b *Bucket) URL() string { return b.url }

// Close releases the bucket.
func (b *Bucket) Close() error { return b.b.Close() }

// Upload is a write-once object being written. Close commits it; Abort
// drops it, leaving nothing behind.
type Upload struct {
	Key    string
	w      *blob.Writer
	cancel context.CancelFunc
	sum    hash.Hash
	n      int64
}

// Create starts writing a new object. Committing fails with ErrExists when
// the key was taken meanwhile: nothing is ever overwritten.
func (b *Bucket) Create(ctx context.Context, key string) (*Upload, error) {
	ctx, cancel := context.WithCancel(ctx)
	w, err := b.b.NewWriter(ctx, key, &blob.WriterOptions{IfNotExist: true})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("create %s in %s: %w", key, b.url, err)
	}
	return &Upload{Key: key, w: w, cancel: cancel, sum: sha256.New()}, nil
}

// Write appends to the object.
func (o *Upload) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	o.sum.Write(p[:n])
	o.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (o *Upload) Size() int64 { return o.n }

// SHA256 is the hex checksum of the bytes written so far.
func (o *Upload) SHA256() string { return hex.EncodeToString(o.sum.Sum(nil)) }

// Close commits the object.
func (o *Upload) Close() error {
	defer o.cancel()
	if err := o.w.Close(); err != nil {
		if gcerrors.Code(err) == gcerrors.FailedPrecondition {
			return fmt.Errorf("commit %s: %w", o.Key, ErrExists)
		}
		return fmt.Errorf("commit %s: %w", o.Key, err)
	}
	return nil
}

// Abort drops an object that was not committed.
func (o *Upload) Abort() {
	o.cancel()
	_ = o.w.Close()
}

// Put creates the object key holding data, atomically and exclusively: it
// fails with ErrExists when the key is taken. On a file bucket the
// exclusivity holds across processes (a hard link, which never replaces).
func (b *Bucket) Put(ctx context.Context, key string, data []byte) error {
	if b.dir != "" {
		return b.putFile(key, data)
	}
	o, err := b.Create(ctx, key)
	if err != nil {
		return err
	}
	if _, err := o.Write(data); err != nil {
		o.Abort()
		return fmt.Errorf("write %s: %w", key, err)
	}
	return o.Close()
}

func (b *Bucket) putFile(key string, data []byte) error {
	path := filepath.Join(b.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".put-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("put %s: %w", key, ErrExists)
		}
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Get reads a whole (small) object.
func (b *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := b.b.ReadAll(ctx, key)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("read %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("read %s from %s: %w", key, b.url, err)
	}
	return data, nil
}

// Download copies an object into a new temporary file, positioned at its
// start, for readers that need random access (Parquet). The caller closes
// and removes the file; Temp does both.
func (b *Bucket) Download(ctx context.Context, key string) (*os.File, error) {
	f, _, err := b.download(ctx, key, io.Discard)
	return f, err
}

// download is Download that also copies the bytes to h (a hash) as they
// arrive, and returns their number.
func (b *Bucket) download(ctx context.Context, key string, h io.Writer) (*os.File, int64, error) {
	r, err := b.b.NewReader(ctx, key, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, 0, fmt.Errorf("read %s: %w", key, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("read %s from %s: %w", key, b.url, err)
	}
	defer func() { _ = r.Close() }()
	f, err := os.CreateTemp("", "sandstone-*.parquet")
	if err != nil {
		return nil, 0, fmt.Errorf("download %s: %w", key, err)
	}
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		RemoveTemp(f)
		return nil, 0, fmt.Errorf("download %s: %w", key, err)
	}
	return f, n, nil
}

// RemoveTemp closes and removes a file made by Download.
func RemoveTemp(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// List returns the keys under prefix, in lexical order; with delim "/" it
// returns the immediate "directories" (ending in "/") and objects.
func (b *Bucket) List(ctx context.Context, prefix, delim string) ([]string, error) {
	it := b.b.List(&blob.ListOptions{Prefix: prefix, Delimiter: delim})
	var keys []string
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s in %s: %w", prefix, b.url, err)
		}
		keys = append(keys, obj.Key)
	}
}
