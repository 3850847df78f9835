package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

type verifyRow struct {
	ID   int32   `parquet:"id"`
	Name string  `parquet:"name"`
	Note *string `parquet:"note,optional"`
}

func writeVerifyRows(t *testing.T, b *Bucket, key string, rows []verifyRow) (Object, *ParquetWriter[verifyRow]) {
	t.Helper()
	w, err := NewParquetWriter[verifyRow](context.Background(), b, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	size, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return Object{Table: "t", Key: key, Rows: w.Rows(), Bytes: size, SHA256: sum, MaxLen: w.MaxLen()}, w
}

func TestOpenObjectVerifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	note := "één"
	a, _ := writeVerifyRows(t, b, "t/a.parquet", []verifyRow{{1, "x", nil}, {2, "Zoë", &note}})
	other, _ := writeVerifyRows(t, b, "t/b.parquet", []verifyRow{{3, "y", nil}})
	if a.MaxLen["name"] != 3 || a.MaxLen["note"] != 3 || len(a.MaxLen) != 2 {
		t.Errorf("MaxLen %v, want name 3 and note 3 (characters)", a.MaxLen)
	}

	p, err := OpenObject(ctx, b, a)
	if err != nil {
		t.Fatalf("the object as committed: %v", err)
	}
	p.Close()

	mismatch := func(obj Object, wants ...string) {
		t.Helper()
		_, err := OpenObject(ctx, b, obj)
		if errkind.Of(err) != errkind.ObjectMismatch || !errors.Is(err, ErrObjectMismatch) {
			t.Fatalf("open %+v: %v (kind %s)", obj, err, errkind.Of(err))
		}
		for _, w := range append(wants, obj.Key, b.URL(), "put the original object back") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	}
	// Another valid Parquet object under the entry's key and size.
	swapped := a
	swapped.Key = other.Key
	mismatch(swapped, "the manifest says ", "sha256 "+a.SHA256, "sha256 "+other.SHA256)
	sameSize := a
	sameSize.SHA256 = strings.Repeat("0", 64)
	mismatch(sameSize, "sha256 "+a.SHA256)
	rows := a
	rows.Rows = 3
	mismatch(rows, "the manifest says 3 rows, the bucket holds 2 rows")

	// A missing object is a read failure, not a mismatch.
	gone := a
	gone.Key = "t/gone.parquet"
	if _, err := OpenObject(ctx, b, gone); !errors.Is(err, ErrNotFound) || errkind.Of(err) == errkind.ObjectMismatch {
		t.Errorf("missing object: %v", err)
	}
	// A verified object that is not Parquet is a read failure too.
	if err := b.Put(ctx, "t/junk.parquet", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("junk"))
	junk := Object{Key: "t/junk.parquet", Bytes: 4, SHA256: hex.EncodeToString(sum[:])}
	if _, err := OpenObject(ctx, b, junk); err == nil || !strings.Contains(err.Error(), "not Parquet") || errkind.Of(err) == errkind.ObjectMismatch {
		t.Errorf("junk: %v", err)
	}

	var got []verifyRow
	if err := ReadObject(ctx, b, a, 10, func(rs []verifyRow) error { got = append(got, rs...); return nil }); err != nil || len(got) != 2 {
		t.Errorf("read %v: %v", got, err)
	}
	if err := ReadObject(ctx, b, swapped, 10, func([]verifyRow) error { return nil }); errkind.Of(err) != errkind.ObjectMismatch {
		t.Errorf("read swapped: %v", err)
	}
}

func TestReadManifestSum(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := memBucket(t)
	m := Manifest{Stage: "transform", Sequence: 4, RunID: "r", Source: &BatchRef{Sequence: 4, RunID: "i", ManifestSHA256: "abc"}}
	if err := b.PutManifest(ctx, 4, &m); err != nil {
		t.Fatal(err)
	}
	data, err := b.Get(ctx, ManifestKey(4))
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	sum, err := b.ReadManifestSum(ctx, 4, &back)
	want := sha256.Sum256(data)
	if err != nil || sum != hex.EncodeToString(want[:]) || back.Source == nil || *back.Source != *m.Source {
		t.Fatalf("sum %s (want %x), manifest %+v, %v", sum, want, back, err)
	}
	if _, err := b.ReadManifestSum(ctx, 5, &back); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing manifest: %v", err)
	}
}

// TestGetObjectVerifies: a small object read whole is checked as a Parquet
// one is: its own bytes pass, other bytes under its key do not.
func TestGetObjectVerifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"table":"sales_order"}` + "\n")
	sum := sha256.Sum256(data)
	obj := Object{Key: "rejects/a.jsonl", Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	if err := b.Put(ctx, obj.Key, data); err != nil {
		t.Fatal(err)
	}
	if got, err := GetObject(ctx, b, obj); err != nil || string(got) != string(data) {
		t.Fatalf("its own bytes: %q %v", got, err)
	}
	other := obj
	other.SHA256 = strings.Repeat("0", 64)
	if _, err := GetObject(ctx, b, other); errkind.Of(err) != errkind.ObjectMismatch || !errors.Is(err, ErrObjectMismatch) {
		t.Fatalf("other bytes: %v (kind %s)", err, errkind.Of(err))
	}
	if _, err := GetObject(ctx, b, Object{Key: "rejects/none.jsonl"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a missing object: %v", err)
	}
}
