package audit

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
)

// TestCheckpointFindsTheSame: an audit that starts from an earlier
// audit's checkpoint finds what an audit of every batch finds, and so does
// the one after it, which starts from the checkpoint the second wrote.
func TestCheckpointFindsTheSame(t *testing.T) {
	t.Parallel()
	for _, tc := range findingCases() {
		t.Run(tc.name, func(t *testing.T) {
			url, b := source(t)
			if r := audit(t, url, b); r.Checkpoint != "" {
				t.Fatalf("the first audit started from checkpoint %s", r.Checkpoint)
			}
			if tc.landed != "" {
				pgtest.Exec(t, url, tc.landed)
				ingestOnce(t, url, b)
			}
			if tc.sql != "" {
				pgtest.Exec(t, url, tc.sql)
			}
			for _, from := range []string{lake.BatchID(1), ""} {
				r := audit(t, url, b)
				if from != "" && r.Checkpoint != from {
					t.Errorf("started from checkpoint %q, want %q", r.Checkpoint, from)
				}
				if r.Checkpoint == "" {
					t.Error("read every batch")
				}
				tc.check(t, r)
			}
		})
	}
}

// TestCheckpointKeepsRepairs: what a repair landed (a version stamped back,
// tombstones) is kept by the checkpoints after it: no drift comes back.
func TestCheckpointKeepsRepairs(t *testing.T) {
	t.Parallel()
	url, b := source(t)
	pgtest.Exec(t, url, `DELETE FROM sales_order WHERE sales_order_id IN (3, 4);
		UPDATE sales_order SET last_updated = last_updated - interval '1 hour' WHERE sales_order_id = 9`)
	r, err := Run(context.Background(), Options{SourceURL: url, Bucket: b, Lookback: lookback, Repair: true})
	if err != nil || r.Repaired == nil {
		t.Fatalf("repair: %+v, %v", r.Repaired, err)
	}
	for i := range 2 {
		r := audit(t, url, b)
		so := r.Tables["sales_order"]
		if r.Drift || so.Missing != 0 || so.Deleted != 0 || so.DeletedRecorded != 2 || so.Landed != 51 || r.Checkpoint == "" {
			t.Errorf("audit %d after the repair, from checkpoint %q: %+v", i+1, r.Checkpoint, *so)
		}
	}
}

// TestCheckpointReadsOnlyNewBatches: an audit from a checkpoint reads the
// manifests and objects of the batches after it only (and the manifest of
// its batch, to verify it), as the S3 server's requests show.
func TestCheckpointReadsOnlyNewBatches(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ingest")
	var mu sync.Mutex
	var gets []string
	target, _ := url.Parse(srv.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "" {
			mu.Lock()
			gets = append(gets, strings.TrimPrefix(r.URL.Path, "/ingest/"))
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	b, err := lake.Open(context.Background(), strings.Replace(srv.URL("ingest"), srv.Endpoint, counting.URL, 1))
	if err != nil {
		t.Fatal(err)
	}
	src, _ := source(t)
	ingestOnce(t, src, b)
	pgtest.Exec(t, src, `INSERT INTO sales_order VALUES (51, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`)
	ingestOnce(t, src, b)
	audit(t, src, b) // reads batches 1 and 2, writes the checkpoint of 2
	pgtest.Exec(t, src, `INSERT INTO sales_order VALUES (52, LOCALTIMESTAMP, LOCALTIMESTAMP,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`)
	ingestOnce(t, src, b)
	mu.Lock()
	gets = nil
	mu.Unlock()
	r := audit(t, src, b)
	if r.Checkpoint != lake.BatchID(2) || r.Drift || r.Tables["sales_order"].Landed != 52 {
		t.Fatalf("from checkpoint %q: %+v", r.Checkpoint, *r.Tables["sales_order"])
	}
	mu.Lock()
	defer mu.Unlock()
	var manifests, objects int
	for _, key := range gets {
		switch {
		case strings.HasPrefix(key, lake.ManifestPrefix):
			manifests++
			if key != lake.ManifestKey(2) && key != lake.ManifestKey(3) {
				t.Errorf("read %s", key)
			}
		case strings.HasSuffix(key, ".parquet"):
			objects++
			if !strings.Contains(key, "-"+lake.BatchID(3)+"-") {
				t.Errorf("read %s", key)
			}
		}
	}
	if manifests == 0 || objects != 1 {
		t.Errorf("read %d manifests and %d objects: %v", manifests, objects, gets)
	}
}

// TestCheckpointRefused: a checkpoint that is corrupt, truncated, or of a
// batch the bucket no longer holds (wiped and refilled) is refused with a
// WARN line naming it, and the audit reads every batch, finding the same.
func TestCheckpointRefused(t *testing.T) {
	t.Parallel()
	deleted := findingCase{table: "sales_order",
		want: TableReport{SourceRows: 48, Landed: 50, Deleted: 2, DeletedExamples: []int32{3, 4}}}
	tests := []struct {
		name string
		// damage spoils the checkpoint of bucket b (directory dir) and
		// returns the bucket to audit and the checkpoint it must refuse.
		damage func(t *testing.T, url string, b *lake.Bucket, dir string) (*lake.Bucket, string)
	}{
		{"a corrupt index", func(t *testing.T, _ string, b *lake.Bucket, dir string) (*lake.Bucket, string) {
			key := checkpointFile(t, dir, ".json")
			rewrite(t, filepath.Join(dir, key), func(data []byte) []byte { return bytes.Replace(data, []byte("sales_order"), []byte("sales_ordeR"), 1) })
			return b, key
		}},
		{"a truncated table object", func(t *testing.T, _ string, b *lake.Bucket, dir string) (*lake.Bucket, string) {
			rewrite(t, filepath.Join(dir, checkpointFile(t, dir, "sales_order.bin.gz")), func(data []byte) []byte { return data[:len(data)/2] })
			return b, checkpointFile(t, dir, ".json")
		}},
		{"a bucket wiped and refilled", func(t *testing.T, url string, _ *lake.Bucket, dir string) (*lake.Bucket, string) {
			refilled := t.TempDir()
			b, err := lake.Open(context.Background(), refilled)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			pgtest.Exec(t, url, `INSERT INTO sales_order SELECT g, now() - interval '1 hour', now() - interval '1 hour',1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1 FROM generate_series(3, 4) g`)
			ingestOnce(t, url, b)
			pgtest.Exec(t, url, `DELETE FROM sales_order WHERE sales_order_id IN (3, 4)`)
			if err := os.CopyFS(filepath.Join(refilled, CheckpointPrefix), os.DirFS(filepath.Join(dir, CheckpointPrefix))); err != nil {
				t.Fatal(err)
			}
			return b, checkpointFile(t, dir, ".json")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, b := source(t)
			pgtest.Exec(t, url, `DELETE FROM sales_order WHERE sales_order_id IN (3, 4)`)
			deleted.check(t, audit(t, url, b))
			dir := strings.TrimPrefix(b.URL(), "file://")
			b, key := tc.damage(t, url, b, dir)
			var log bytes.Buffer
			r, err := Run(context.Background(), Options{SourceURL: url, Bucket: b, Lookback: lookback,
				Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if r.Checkpoint != "" {
				t.Errorf("started from checkpoint %s", r.Checkpoint)
			}
			if !strings.Contains(log.String(), `level=WARN msg="audit checkpoint refused"`) || !strings.Contains(log.String(), key) ||
				!strings.Contains(log.String(), "the audit reads every batch") {
				t.Errorf("log:\n%s\nwant a WARN refusing %s", log.String(), key)
			}
			deleted.check(t, r)
		})
	}
}

// checkpointFile is the key of the one checkpoint file in dir whose name
// ends with suffix.
func checkpointFile(t *testing.T, dir, suffix string) string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(filepath.Join(dir, CheckpointPrefix), func(path string, _ os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, suffix) {
			rel, _ := filepath.Rel(dir, path)
			found = append(found, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil || len(found) != 1 {
		t.Fatalf("checkpoint files ending %s: %v, %v", suffix, found, err)
	}
	return found[0]
}

// rewrite replaces a file's bytes with change's.
func rewrite(t *testing.T, path string, change func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, change(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointOfTheSnapshot: on the real totesys snapshot an audit from
// a checkpoint reports what the audit that wrote it reported; it logs the
// checkpoint's size (docs/deploy.md counts its storage from it).
func TestCheckpointOfTheSnapshot(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pgtest.LoadSnapshot(t, url)
	b, err := lake.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ingestOnce(t, url, b)
	full := audit(t, url, b)
	from := audit(t, url, b)
	if from.Checkpoint != lake.BatchID(1) || full.Checkpoint != "" {
		t.Fatalf("checkpoints %q, %q", full.Checkpoint, from.Checkpoint)
	}
	for name, tr := range full.Tables {
		if got := from.Tables[name]; !reflect.DeepEqual(got, tr) {
			t.Errorf("%s: from the checkpoint %+v, reading every batch %+v", name, *got, *tr)
		}
	}
	c := loadCheckpoint(context.Background(), b, 1, slog.Default())
	if c == nil {
		t.Fatal("no checkpoint")
	}
	defer c.close()
	var ids, size int64
	for _, tb := range c.index.Tables {
		ids += tb.IDs
		size += tb.Bytes
	}
	t.Logf("checkpoint of the snapshot: %d ids in %d bytes (%.2f bytes an id) and an index of %d tables",
		ids, size, float64(size)/float64(ids), len(c.index.Tables))
}
