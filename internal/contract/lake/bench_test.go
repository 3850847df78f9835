package lake

import (
	"context"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/star"
)

const benchRows = 200_000

func factPayments(n int) []star.FactPayment {
	rows := make([]star.FactPayment, n)
	for i := range rows {
		rows[i] = star.FactPayment{PaymentID: int32(i), CreatedDate: 19300 + int32(i%700), CreatedTime: int32(i % 86_400_000),
			LastUpdatedDate: 19300 + int32(i%700), LastUpdated: int32(i % 86_400_000), TransactionID: int32(i),
			CounterpartyID: int32(i%20 + 1), PaymentAmount: int64(i) * 37, CurrencyID: int32(i%3 + 1),
			PaymentTypeID: int32(i%4 + 1), Paid: i%2 == 0, PaymentDate: 19305 + int32(i%700)}
	}
	return rows
}

// BenchmarkParquetWrite encodes fact_payment rows into a Parquet object
// (zstd), as transform writes them.
func BenchmarkParquetWrite(b *testing.B) {
	ctx := context.Background()
	rows := factPayments(benchRows)
	bk, _ := Open(ctx, "mem://")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := NewParquetWriter[star.FactPayment](ctx, bk, BatchID(int64(i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(rows); off += 8192 {
			if err := w.Write(rows[off:min(off+8192, len(rows))]); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkParquetRead decodes them back, as load reads them.
func BenchmarkParquetRead(b *testing.B) {
	ctx := context.Background()
	bk, _ := Open(ctx, "mem://")
	w, _ := NewParquetWriter[star.FactPayment](ctx, bk, "p", nil)
	if err := w.Write(factPayments(benchRows)); err != nil {
		b.Fatal(err)
	}
	if _, _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := ReadParquet(ctx, bk, "p", 8192, func(rs []star.FactPayment) error { n += len(rs); return nil }); err != nil || n != benchRows {
			b.Fatalf("%d rows, %v", n, err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
