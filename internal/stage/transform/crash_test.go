package transform

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// faultyS3 is an in-process S3 server (over HTTP) whose writes start to
// fail, as a bucket that becomes unwritable, after a number of them.
type faultyS3 struct {
	backend *s3mem.Backend
	url     string
	mu      sync.Mutex
	writes  int
	// failAfter is the number of writes that succeed; -1 for all.
	failAfter int
}

func newFaultyS3(t *testing.T) *faultyS3 {
	t.Helper()
	f := &faultyS3{backend: s3mem.New(), failAfter: -1}
	h := gofakes3.New(f.backend).Server()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			f.mu.Lock()
			f.writes++
			fail := f.failAfter >= 0 && f.writes > f.failAfter
			f.mu.Unlock()
			if fail {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusForbidden)
				_, _ = fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected failure</Message></Error>`)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	f.url = ts.URL
	return f
}

// failAfterWrites makes writes fail once n more have succeeded; -1 heals.
func (f *faultyS3) failAfterWrites(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 0 {
		f.failAfter = -1
		return
	}
	f.failAfter = f.writes + n
}

func (f *faultyS3) bucket(t *testing.T, name string) *lake.Bucket {
	t.Helper()
	if err := f.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
	b, err := lake.Open(context.Background(), fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1&use_path_style=true&disable_https=true", name, f.url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestCrashSafety makes the processed bucket fail at each write of a batch
// (the data objects, the rejects, the state, the manifest): the batch stays
// invisible, and the next run writes it, once.
func TestCrashSafety(t *testing.T) {
	w := world()
	w.SalesOrder = append(w.SalesOrder, w.SalesOrder[0])
	w.SalesOrder[1].SalesOrderID, w.SalesOrder[1].AgreedPaymentDate = 2, "soon" // a reject
	// 11 star tables + rejects + state + manifest.
	const writes = 14
	for n := 0; n < writes; n++ {
		t.Run(fmt.Sprintf("fail after %d writes", n), func(t *testing.T) {
			ctx := context.Background()
			s3 := newFaultyS3(t)
			ingest, proc := s3.bucket(t, "ingest"), s3.bucket(t, "processed")
			putBatch(t, ingest, 1, w)

			s3.failAfterWrites(n)
			res, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
			if err == nil {
				t.Fatalf("run succeeded on a failing bucket: %+v", res)
			}
			if errkind.Of(err) != errkind.BucketWriteFailed {
				t.Errorf("error kind %s: %v", errkind.Of(err), err)
			}
			if keys, _ := proc.List(ctx, lake.ManifestPrefix, ""); len(keys) != 0 {
				t.Fatalf("a failed batch is visible: %v", keys)
			}

			s3.failAfterWrites(-1)
			res = run(t, ingest, proc)
			if len(res.Batches) != 1 {
				t.Fatalf("rerun %+v", res)
			}
			m := processed(t, proc, 1)
			if len(m.Tables) != len(star.Tables) || m.Rejects == nil || m.Rejects.Rows != 1 {
				t.Fatalf("manifest %+v", m)
			}
			if so := rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order"); len(so) != 1 {
				t.Errorf("fact_sales_order %+v", so)
			}
			if got := rejectsOf(t, proc, 1); len(got) != 1 || !strings.Contains(got[0].Reason, `"soon"`) {
				t.Errorf("rejects %+v", got)
			}
			if res := run(t, ingest, proc); len(res.Batches) != 0 {
				t.Errorf("third run %+v", res)
			}
		})
	}
}

// TestLostRace: a run that finds its batch committed by another stops
// without a second manifest.
func TestLostRace(t *testing.T) {
	s3 := newFaultyS3(t)
	ingest, proc := s3.bucket(t, "ingest"), s3.bucket(t, "processed")
	putBatch(t, ingest, 1, world())
	putBatch(t, ingest, 2, world())
	winner := run(t, ingest, proc)
	if len(winner.Batches) != 2 {
		t.Fatalf("winner %+v", winner)
	}
	before := processed(t, proc, 1)

	// A second run that loaded the state before the winner committed.
	var im lake.Manifest
	if err := ingest.ReadManifest(context.Background(), 1, &im); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	b := newBatch(context.Background(), Options{Ingest: ingest, Processed: proc}, logs.logger(), "loser", 1, newState())
	committed, err := b.process(&im, "loser")
	if err != nil || committed {
		t.Fatalf("loser: committed %v, err %v", committed, err)
	}
	if after := processed(t, proc, 1); after.RunID != before.RunID || after.StateKey != before.StateKey {
		t.Fatalf("the manifest changed: %+v", after)
	}
	keys, _ := proc.List(context.Background(), lake.ManifestPrefix, "")
	if len(keys) != 2 {
		t.Fatalf("manifests %v", keys)
	}
}
