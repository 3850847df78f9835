package transform

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// fileOf is the path of object key in file bucket b.
func fileOf(b *lake.Bucket, key string) string {
	return filepath.Join(strings.TrimPrefix(b.URL(), "file://"), filepath.FromSlash(key))
}

func manifestOf(t *testing.T, b *lake.Bucket, seq int64) (lake.Manifest, string) {
	t.Helper()
	var m lake.Manifest
	sum, err := b.ReadManifestSum(context.Background(), seq, &m)
	if err != nil {
		t.Fatal(err)
	}
	return m, sum
}

// TestTransformRefusesAMismatchedObject: an ingested object replaced by
// another valid Parquet object, or one whose row count is not the
// manifest's, refuses its batch with object_mismatch; no processed manifest
// is written for it.
func TestTransformRefusesAMismatchedObject(t *testing.T) {
	ctx := context.Background()
	second := func() sourceRows {
		w := world()
		w.Design[0].DesignName = "Steel"
		return w
	}
	check := func(t *testing.T, ingest, proc *lake.Bucket, wants ...string) {
		t.Helper()
		res, err := Run(ctx, Options{Ingest: ingest, Processed: proc, Logger: discard()})
		if errkind.Of(err) != errkind.ObjectMismatch {
			t.Fatalf("run: %v (kind %s), want %s", err, errkind.Of(err), errkind.ObjectMismatch)
		}
		for _, w := range append(wants, "transform batch 000000000002", ingest.URL()) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if len(res.Batches) != 1 {
			t.Errorf("batches %+v, want batch 1 only", res.Batches)
		}
		if latest, err := proc.LatestSeq(ctx); err != nil || latest != 1 {
			t.Errorf("the processed bucket's newest batch is %d (%v), want 1", latest, err)
		}
	}
	t.Run("swapped", func(t *testing.T) {
		ingest, proc := buckets(t)
		putBatch(t, ingest, 1, world())
		putBatch(t, ingest, 2, second())
		m1, _ := manifestOf(t, ingest, 1)
		m2, _ := manifestOf(t, ingest, 2)
		o1, _ := m1.Table("design")
		o2, _ := m2.Table("design")
		data, err := os.ReadFile(fileOf(ingest, o1.Key))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fileOf(ingest, o2.Key), data, 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, ingest, proc, o2.Key, "sha256 "+o2.SHA256, "put the original object back")
	})
	t.Run("row count", func(t *testing.T) {
		ingest, proc := buckets(t)
		putBatch(t, ingest, 1, world())
		putBatch(t, ingest, 2, second())
		m2, _ := manifestOf(t, ingest, 2)
		for i := range m2.Tables {
			if m2.Tables[i].Table == "staff" {
				m2.Tables[i].Rows = 5
			}
		}
		if err := os.Remove(fileOf(ingest, lake.ManifestKey(2))); err != nil {
			t.Fatal(err)
		}
		if err := ingest.PutManifest(ctx, 2, &m2); err != nil {
			t.Fatal(err)
		}
		check(t, ingest, proc, "the manifest says 5 rows, the bucket holds 2 rows")
	})
}

// TestTransformRefusesAnotherIngestionBucket: an ingestion bucket wiped
// (or another one) numbers its batches from 1 again; transform refuses it
// with ledger_mismatch rather than go on from the processed bucket's state,
// and goes on with the right bucket, recording the source of every batch.
func TestTransformRefusesAnotherIngestionBucket(t *testing.T) {
	ctx := context.Background()
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	putBatch(t, ingest, 2, world())
	run(t, ingest, proc)
	_, sum2 := manifestOf(t, ingest, 2)
	if m, _ := manifestOf(t, proc, 2); m.Source == nil || *m.Source != (lake.BatchRef{Sequence: 2, RunID: "test", ManifestSHA256: sum2}) {
		t.Fatalf("processed batch 2's source: %+v", m.Source)
	}

	wiped, err := lake.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wiped.Close() }()
	refused := func(wants ...string) {
		t.Helper()
		res, err := Run(ctx, Options{Ingest: wiped, Processed: proc, Logger: discard()})
		if errkind.Of(err) != errkind.LedgerMismatch {
			t.Fatalf("run: %v (kind %s), want %s", err, errkind.Of(err), errkind.LedgerMismatch)
		}
		wants = append(wants, "the ingestion bucket "+wiped.URL()+" does not hold the batches the processed bucket "+proc.URL()+" was made from",
			"Point --ingest-bucket at", "or rebuild the processed bucket (and the warehouse)")
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if len(res.Batches) != 0 {
			t.Errorf("batches %+v", res.Batches)
		}
		if latest, _ := proc.LatestSeq(ctx); latest != 2 {
			t.Errorf("processed batches up to %d", latest)
		}
	}
	// Behind the processed bucket: even with nothing new, it is refused.
	putBatch(t, wiped, 1, world())
	refused("the ingestion bucket has no batch 2")
	putBatch(t, wiped, 2, world())
	putBatch(t, wiped, 3, world())
	_, other := manifestOf(t, wiped, 2)
	refused("processed batch 000000000002 was made from ingested batch 000000000002 with manifest sha256 "+sum2,
		"the ingestion bucket's has "+other)

	// The right bucket goes on.
	putBatch(t, ingest, 3, world())
	if res := run(t, ingest, proc); len(res.Batches) != 1 {
		t.Fatalf("batches %+v", res.Batches)
	}
	_, sum3 := manifestOf(t, ingest, 3)
	if m, _ := manifestOf(t, proc, 3); m.Source == nil || m.Source.ManifestSHA256 != sum3 {
		t.Fatalf("processed batch 3's source: %+v", m.Source)
	}
}

// TestProcessedObjectsRecordLongestText: each processed object records the
// longest value of each text column, in characters.
func TestProcessedObjectsRecordLongestText(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Staff[1].FirstName = "Zoë-Renée" // 9 characters, 11 bytes
	putBatch(t, ingest, 1, w)
	run(t, ingest, proc)
	m, _ := manifestOf(t, proc, 1)
	o, ok := m.Table("dim_staff")
	if !ok || o.MaxLen["first_name"] != 9 || o.MaxLen["email_address"] != len("ann@example.com") {
		t.Fatalf("dim_staff's object: %+v", o)
	}
	if o, _ := m.Table("fact_sales_order"); len(o.MaxLen) != 0 {
		t.Errorf("fact_sales_order has no text columns, but records %v", o.MaxLen)
	}
}
