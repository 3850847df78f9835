package ingest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// BenchmarkIngest lands a whole seeded source of 50,000 sales orders (about
// 215,000 rows) into a fresh file bucket: the initial ingest's hot path
// (binary rows off the wire, decoded into Parquet values, encoded column by
// column, compressed and written).
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	url := pgtest.NewDatabase(b)
	stats, err := synth.Seed(ctx, url, synth.SeedOptions{SalesOrders: 50_000, RandomSeed: 1})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		bucket, err := lake.Open(ctx, "file://"+b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := Run(ctx, Options{SourceURL: url, Bucket: bucket, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		if res.Total() != stats.Total() {
			b.Fatalf("landed %d rows of %d", res.Total(), stats.Total())
		}
		b.StopTimer()
		_ = bucket.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(stats.Total())*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
