package lake

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestReadRowsOfAWiderFile: a file with columns after the row type's (a
// capture batch's) reads as the row type, every value kept, over several
// row groups; a file whose columns are in another order is converted.
func TestReadRowsOfAWiderFile(t *testing.T) {
	t.Parallel()
	type wide struct {
		ID   int32     `parquet:"id"`
		Name *string   `parquet:"name,optional"`
		At   time.Time `parquet:"at,timestamp(microsecond)"`
		Op   string    `parquet:"_op"`
		LSN  int64     `parquet:"_lsn"`
	}
	type narrow struct {
		ID   int32     `parquet:"id"`
		Name *string   `parquet:"name,optional"`
		At   time.Time `parquet:"at,timestamp(microsecond)"`
	}
	type reordered struct {
		Name *string `parquet:"name,optional"`
		ID   int32   `parquet:"id"`
	}
	ctx := context.Background()
	const n = rowGroupRows + 1000 // two row groups
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	rows := make([]wide, n)
	for i := range rows {
		rows[i] = wide{ID: int32(i), At: base.Add(time.Duration(i) * time.Microsecond), Op: "u", LSN: int64(i)}
		if i%3 != 0 {
			s := fmt.Sprint("name ", i)
			rows[i].Name = &s
		}
	}
	p := writtenFile(t, rows)
	var i int
	err := ReadRows(ctx, p, 1000, func(got []narrow) error {
		for _, r := range got {
			want := rows[i]
			if r.ID != want.ID || !r.At.Equal(want.At) || (r.Name == nil) != (want.Name == nil) || r.Name != nil && *r.Name != *want.Name {
				return fmt.Errorf("row %d: %+v, want %+v", i, r, want)
			}
			i++
		}
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("read %d of %d rows: %v", i, n, err)
	}
	i = 0
	err = ReadRows(ctx, p, 1000, func(got []reordered) error {
		for _, r := range got {
			if r.ID != rows[i].ID || (r.Name == nil) != (rows[i].Name == nil) {
				return fmt.Errorf("row %d: %+v", i, r)
			}
			i++
		}
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("reordered: read %d of %d rows: %v", i, n, err)
	}
}

// TestReadVersionsStreams: ReadVersions pairs every id with its stamp over
// several row groups and many pages of each, whose boundaries differ
// between the two columns (the stamps take twice the ids' bytes).
func TestReadVersionsStreams(t *testing.T) {
	t.Parallel()
	type row struct {
		ID   int32     `parquet:"id"`
		Text string    `parquet:"text"`
		At   time.Time `parquet:"at,timestamp(microsecond)"`
	}
	const n = 2*rowGroupRows + 777
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	rows := make([]row, n)
	for i := range rows {
		// Random-looking values, so that no page compresses to nothing.
		rows[i] = row{ID: int32(i*7919) % n, Text: fmt.Sprint(i), At: base.Add(time.Duration(i*104729%n) * time.Microsecond)}
	}
	p := writtenFile(t, rows)
	i := 0
	err := ReadVersions(p, "id", "at", func(id int32, us int64) {
		if i < n && (id != rows[i].ID || us != rows[i].At.UnixMicro()) {
			t.Fatalf("row %d: (%d, %d), want (%d, %d)", i, id, us, rows[i].ID, rows[i].At.UnixMicro())
		}
		i++
	})
	if err != nil || i != n {
		t.Fatalf("read %d versions of %d: %v", i, n, err)
	}
	if err := ReadVersions(p, "id", "nope", func(int32, int64) {}); err == nil {
		t.Error("a missing column read without an error")
	}
}

// writtenFile writes rows to an object of a memory bucket and opens it
// for reading, closed when the test ends.
func writtenFile[T any](t *testing.T, rows []T) *ParquetFile {
	t.Helper()
	ctx := context.Background()
	b, err := Open(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewParquetWriter[T](ctx, b, "t/x.parquet", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := OpenParquet(ctx, b, "t/x.parquet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
