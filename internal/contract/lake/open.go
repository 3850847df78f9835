package lake

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// ErrNoBucket is returned by OpenExisting when a file bucket's directory
// does not exist: nothing has been written to it yet.
var ErrNoBucket = errors.New("no batches yet: the bucket's directory does not exist")

// resolve turns a bucket URL into the URL to open and, for a file bucket,
// its absolute directory. A plain path, and a relative file:// URL
// (file://rel/dir, file://./x, file:rel/dir), mean a directory relative to
// the current one, never to the filesystem root; file://localhost/abs is
// /abs.
func resolve(rawURL string) (resolved, dir string, err error) {
	if rawURL == "" {
		return "", "", errors.New("open bucket: no bucket URL given")
	}
	if !strings.Contains(rawURL, "://") && !strings.HasPrefix(rawURL, "file:") {
		return fileURL(rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("open bucket %s: %w (want file:///abs/dir, a directory, s3://name?region=..., or mem://)", rawURL, err)
	}
	if u.Scheme != "file" {
		return rawURL, "", nil
	}
	switch {
	case u.Opaque != "": // file:rel/dir
		return fileURL(u.Opaque)
	case u.Host != "" && u.Host != "localhost": // file://rel/dir, file://./x
		return fileURL(u.Host + u.Path)
	case u.Path == "":
		return "", "", fmt.Errorf("open bucket %s: no directory (want file:///abs/dir or a directory path)", rawURL)
	}
	return "file://" + u.Path, u.Path, nil
}

// ResolveURL is the URL Open and OpenExisting open for rawURL: a directory
// path or a relative file:// URL as the absolute file:///dir it means,
// other URLs as they are.
func ResolveURL(rawURL string) (string, error) {
	resolved, _, err := resolve(rawURL)
	return resolved, err
}

// fileURL is the file:// URL of the directory path, made absolute.
func fileURL(path string) (string, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", fmt.Errorf("open bucket %s: %w", path, err)
	}
	return "file://" + abs, abs, nil
}

// OpenExisting opens the bucket at rawURL, as Open does, for reading only:
// a file bucket's directory is not created. When it does not exist the
// error wraps ErrNoBucket (nothing has been written there yet).
func OpenExisting(ctx context.Context, rawURL string) (*Bucket, error) {
	resolved, dir, err := resolve(rawURL)
	if err != nil {
		return nil, err
	}
	bk := &Bucket{url: resolved, dir: dir}
	if dir == "" {
		if bk.b, err = blob.OpenBucket(ctx, resolved); err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", resolved, err)
		}
		return bk, nil
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("bucket %s: %w", resolved, ErrNoBucket)
	case err != nil:
		return nil, fmt.Errorf("open bucket %s: %w", resolved, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open bucket %s: %s is not a directory", resolved, dir)
	}
	if bk.b, err = fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite, NoTempDir: true}); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", resolved, err)
	}
	return bk, nil
}
