package lake

import (
	"fmt"

	"github.com/parquet-go/parquet-go"
)

// WriteColumns appends rows given column by column, for flat schemas (no
// repeated column): columns[i] holds the values of leaf column i, one per
// row, every column as long as the others. Values of optional columns must
// carry their definition level (parquet.Value.Level: 1 for a value, 0 for a
// NULL). This skips the assembly and disassembly of rows that WriteRows
// does, for writers that produce values column by column (ingest). Row
// groups are cut at the same size as WriteRows cuts them. Do not mix it with
// Write or WriteRows on one writer.
func (w *ParquetWriter[T]) WriteColumns(columns [][]parquet.Value) error {
	if len(columns) == 0 {
		return nil
	}
	n := len(columns[0])
	for _, c := range columns {
		if len(c) != n {
			return fmt.Errorf("write %s: columns of %d and %d values", w.obj.Key, n, len(c))
		}
	}
	for done := 0; done < n; {
		cws := w.w.ColumnWriters()
		if len(cws) != len(columns) {
			return fmt.Errorf("write %s: %d columns for a schema of %d", w.obj.Key, len(columns), len(cws))
		}
		k := min(n-done, rowGroupRows-int(w.rows%rowGroupRows))
		for i, cw := range cws {
			if _, err := cw.WriteRowValues(columns[i][done : done+k]); err != nil {
				return fmt.Errorf("write %s: %w", w.obj.Key, err)
			}
		}
		done += k
		w.rows += int64(k)
		if w.rows%rowGroupRows == 0 {
			if err := w.w.Flush(); err != nil {
				return fmt.Errorf("write %s: %w", w.obj.Key, err)
			}
		}
	}
	return nil
}
