package lake

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/s3test"
)

// openS3 opens a new bucket on an in-process S3 server that enforces the
// buckets' policy of deploy/terraform (s3test.WriteOnce): a write without
// If-None-Match, or a delete, is refused.
func openS3(t *testing.T) (*Bucket, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t, s3test.WriteOnce())
	b, err := Open(context.Background(), srv.CreateBucket(t, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, srv
}

// TestS3WritesAreConditional: on S3 every write of the lake carries
// If-None-Match: * (the policy would refuse it otherwise), and a second
// write of a key, small (PutObject) or large (a multipart upload), fails
// with ErrExists and leaves the first object as it was.
func TestS3WritesAreConditional(t *testing.T) {
	ctx := context.Background()
	b, srv := openS3(t)
	if err := b.Put(ctx, "manifests/000000/000000000001.json", []byte(`{"first":true}`)); err != nil {
		t.Fatal(err)
	}
	err := b.Put(ctx, "manifests/000000/000000000001.json", []byte(`{"second":true}`))
	if !errors.Is(err, ErrExists) || !IsExists(err) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second put: %v, want ErrExists", err)
	}
	if got, _ := b.Get(ctx, "manifests/000000/000000000001.json"); string(got) != `{"first":true}` {
		t.Fatalf("the object now holds %s", got)
	}

	// 20 MiB goes up in parts (the SDK's parts are 8 MiB).
	big := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16)
	write := func(fill byte) error {
		o, err := b.Create(ctx, "fact_payment/2026/11/25/big.parquet")
		if err != nil {
			return err
		}
		data := bytes.Clone(big)
		data[0] = fill
		if _, err := o.Write(data); err != nil {
			o.Abort()
			return err
		}
		return o.Close()
	}
	if err := write('A'); err != nil {
		t.Fatal(err)
	}
	if err := write('B'); !errors.Is(err, ErrExists) {
		t.Fatalf("second multipart upload: %v, want ErrExists", err)
	}
	got, err := b.Get(ctx, "fact_payment/2026/11/25/big.parquet")
	if err != nil || len(got) != len(big) || got[0] != 'A' {
		t.Fatalf("the large object was replaced (%d bytes, first %q, %v)", len(got), got[:1], err)
	}
	if r := srv.Refusals(); len(r) != 0 {
		t.Fatalf("the bucket policy refused the lake's writes: %v", r)
	}
}

// TestS3PolicyRefusesPlainWrites: the same server refuses what the lake
// never does, so the test above could fail: a put without If-None-Match
// (here through gocloud directly) and a delete.
func TestS3PolicyRefusesPlainWrites(t *testing.T) {
	ctx := context.Background()
	b, srv := openS3(t)
	if err := b.b.WriteAll(ctx, "state/x.json.gz", []byte("x"), nil); err == nil {
		t.Fatal("a put without If-None-Match was accepted")
	}
	if err := b.Put(ctx, "state/x.json.gz", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.b.Delete(ctx, "state/x.json.gz"); err == nil {
		t.Fatal("a delete was accepted")
	}
	if got, err := b.Get(ctx, "state/x.json.gz"); err != nil || string(got) != "x" {
		t.Fatalf("after the refused delete: %q, %v", got, err)
	}
	if r := srv.Refusals(); len(r) != 2 || !strings.Contains(r[0], "PutObject") || !strings.Contains(r[1], "DeleteObject") {
		t.Fatalf("refusals %v", r)
	}
}

// TestS3ParquetAndManifestUnderPolicy: a whole batch (Parquet object, state,
// manifest) is written under the policy, and its manifest cannot be written
// twice.
func TestS3ParquetAndManifestUnderPolicy(t *testing.T) {
	ctx := context.Background()
	b, srv := openS3(t)
	w, err := NewParquetWriter[row](ctx, b, "payment/2026/11/25/a.parquet", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]row{{ID: 1, Name: "a", Price: 100}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, StateKey(1, "run"), []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutManifest(ctx, 1, &Manifest{Sequence: 1, RunID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutManifest(ctx, 1, &Manifest{Sequence: 1, RunID: "2"}); !IsExists(err) {
		t.Fatalf("second manifest of batch 1: %v, want ErrExists", err)
	}
	if r := srv.Refusals(); len(r) != 0 {
		t.Fatalf("refused: %v", r)
	}
}
