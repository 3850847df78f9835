package lake

import (
	"context"
	"fmt"
	"testing"

	"github.com/parquet-go/parquet-go"
)

type nullableRow struct {
	ID   int32   `parquet:"id"`
	Note *string `parquet:"note,optional"`
}

func TestWriteColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	schema := parquet.SchemaOf(nullableRow{})
	w, err := NewParquetWriter[any](ctx, b, "t/x.parquet", schema)
	if err != nil {
		t.Fatal(err)
	}
	// 2.5 row groups, in chunks that straddle the row group boundaries.
	total := rowGroupRows*2 + rowGroupRows/2
	for start := 0; start < total; {
		n := min(100_000, total-start)
		ids, notes := make([]parquet.Value, n), make([]parquet.Value, n)
		for i := range n {
			id := start + i
			ids[i] = parquet.Int32Value(int32(id))
			if id%3 == 0 {
				notes[i] = parquet.NullValue()
			} else {
				notes[i] = parquet.ByteArrayValue([]byte(fmt.Sprint("n", id))).Level(0, 1, 1)
			}
		}
		if err := w.WriteColumns([][]parquet.Value{ids, notes}); err != nil {
			t.Fatal(err)
		}
		start += n
	}
	if w.Rows() != int64(total) {
		t.Fatalf("%d rows counted, want %d", w.Rows(), total)
	}
	if _, _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := b.Download(ctx, "t/x.parquet")
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTemp(f)
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pf.RowGroups()); got != 3 {
		t.Errorf("%d row groups, want 3", got)
	}
	next := 0
	err = ReadParquet(ctx, b, "t/x.parquet", 5000, func(rows []nullableRow) error {
		for _, r := range rows {
			if int(r.ID) != next || (next%3 == 0) != (r.Note == nil) || (r.Note != nil && *r.Note != fmt.Sprint("n", next)) {
				return fmt.Errorf("row %d read as %+v", next, r)
			}
			next++
		}
		return nil
	})
	if err != nil || next != total {
		t.Fatalf("read %d rows: %v", next, err)
	}
}

func TestWriteColumnsRejectsMisshapenColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := memBucket(t)
	w, err := NewParquetWriter[any](ctx, b, "x.parquet", parquet.SchemaOf(nullableRow{}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	one := []parquet.Value{parquet.Int32Value(1)}
	if err := w.WriteColumns(nil); err != nil {
		t.Errorf("no columns: %v", err)
	}
	if err := w.WriteColumns([][]parquet.Value{one, nil}); err == nil {
		t.Error("columns of different lengths were written")
	}
	if err := w.WriteColumns([][]parquet.Value{one}); err == nil {
		t.Error("one column was written for a schema of two")
	}
}
