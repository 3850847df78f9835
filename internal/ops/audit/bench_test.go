package audit

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
)

// BenchmarkReadManifests reads the manifests of many small batches from
// the in-process S3 server, one at a time and readers at a time
// (SANDSTONE_AUDIT_BENCH_BATCHES batches, 5000 unless set;
// docs/benchmarks.md has the figures).
func BenchmarkReadManifests(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("SANDSTONE_AUDIT_BENCH_BATCHES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	srv := s3test.Start(b)
	bucket, err := lake.Open(ctx, srv.CreateBucket(b, "ingest"))
	if err != nil {
		b.Fatal(err)
	}
	for seq := int64(1); seq <= int64(n); seq++ {
		m := lake.Manifest{Version: 1, Stage: "ingest", Batch: lake.BatchID(seq), Sequence: seq,
			Tables: []lake.Object{{Table: "sales_order", Key: "sales_order/x.parquet", Rows: 3}}}
		if err := bucket.PutManifest(ctx, seq, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			for seq := int64(1); seq <= int64(n); seq++ {
				var m lake.Manifest
				if err := bucket.ReadManifest(ctx, seq, &m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		for b.Loop() {
			bs, err := readBatches(ctx, bucket, 0, int64(n), readers)
			if err != nil || len(bs.objects["sales_order"]) != n {
				b.Fatalf("%d objects, %v", len(bs.objects["sales_order"]), err)
			}
		}
	})
}
