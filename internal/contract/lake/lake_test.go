package lake

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

type row struct {
	ID    int32  `parquet:"id"`
	Name  string `parquet:"name"`
	Price int64  `parquet:"price,decimal(2:10)"`
}

func TestPutIsExclusive(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"file://" + t.TempDir(), "mem://"} {
		t.Run(url[:4], func(t *testing.T) {
			ctx := context.Background()
			b, err := Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := b.PutManifest(ctx, 7, &Manifest{Sequence: 7, RunID: strconv.Itoa(i)}); err == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					} else if !IsExists(err) {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("%d writers won batch 7, want exactly 1", wins)
			}
			if err := b.Put(ctx, "a/b", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := b.Put(ctx, "a/b", []byte("y")); !errors.Is(err, ErrExists) {
				t.Fatalf("second put: %v, want ErrExists", err)
			}
			got, _ := b.Get(ctx, "a/b")
			if string(got) != "x" {
				t.Fatalf("object rewritten: %q", got)
			}
		})
	}
}

func TestSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.LatestSeq(ctx); err != nil || n != 0 {
		t.Fatalf("empty bucket: latest %d, %v", n, err)
	}
	for _, s := range []int64{1, 2, 999, 1000, 1001, 2500} {
		if err := b.PutManifest(ctx, s, &Manifest{Sequence: s}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := b.LatestSeq(ctx); n != 2500 {
		t.Fatalf("latest %d, want 2500", n)
	}
	after, err := b.SeqsAfter(ctx, 999)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 || after[0] != 1000 || after[2] != 2500 {
		t.Fatalf("after 999: %v", after)
	}
	var m Manifest
	if err := b.ReadManifest(ctx, 1001, &m); err != nil || m.Sequence != 1001 {
		t.Fatalf("read manifest: %+v %v", m, err)
	}
	if k := DataKey("sales_order", time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), 12, "r1", "parquet"); k != "sales_order/2026/01/02/20260102T030405.006Z-000000000012-r1.parquet" {
		t.Fatalf("data key %s", k)
	}
}

func TestParquetRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, _ := Open(ctx, "mem://")
	w, err := NewParquetWriter[row](ctx, b, "t/x.parquet", nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []row
	for i := 0; i < 1000; i++ {
		want = append(want, row{ID: int32(i), Name: strconv.Itoa(i), Price: int64(i) * 101})
	}
	if err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	size, sum, err := w.Close()
	if err != nil || size == 0 || len(sum) != 64 {
		t.Fatalf("close: %d %s %v", size, sum, err)
	}
	var got []row
	if err := ReadParquet(ctx, b, "t/x.parquet", 100, func(rs []row) error { got = append(got, rs...); return nil }); err != nil {
		t.Fatal(err)
	}
	// Every row, in order, though the next rows are read while fn holds
	// the last ones.
	if !slices.Equal(got, want) {
		t.Fatalf("round trip: %d rows, last %+v", len(got), got[len(got)-1])
	}

	// fn's error, or a cancelled context, stops the read at once, and the
	// reading goroutine with it.
	stop := errors.New("enough")
	before := runtime.NumGoroutine()
	cctx, cancel := context.WithCancel(ctx)
	for name, tc := range map[string]struct {
		ctx  context.Context
		fn   func(n int) error
		want error
	}{
		"fn fails":          {ctx, func(n int) error { return map[bool]error{true: stop}[n == 2] }, stop},
		"context cancelled": {cctx, func(n int) error { cancel(); return nil }, context.Canceled},
	} {
		calls := 0
		err := ReadParquet(tc.ctx, b, "t/x.parquet", 100, func([]row) error { calls++; return tc.fn(calls) })
		if !errors.Is(err, tc.want) || calls > 2 {
			t.Errorf("%s: %v after %d chunks", name, err, calls)
		}
	}
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the stopped reads, %d before", n, before)
	}
}

func TestReadErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, _ := Open(ctx, "mem://")
	if _, err := b.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if err := ReadParquet(ctx, b, "nope", 10, func([]row) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("read missing: %v", err)
	}
	_ = b.Put(ctx, "text", []byte("not parquet"))
	if err := ReadParquet(ctx, b, "text", 10, func([]row) error { return nil }); err == nil {
		t.Error("read of a text object as Parquet succeeded")
	}
	var m Manifest
	_ = b.Put(ctx, ManifestKey(3), []byte("{"))
	if err := b.ReadManifest(ctx, 3, &m); err == nil {
		t.Error("a broken manifest was read")
	}
	if _, err := Open(ctx, ""); err == nil {
		t.Error("an empty bucket URL was accepted")
	}
	if _, err := Open(ctx, "nosuchscheme://x"); err == nil {
		t.Error("an unknown scheme was accepted")
	}
	o, err := b.Create(ctx, "aborted")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = o.Write([]byte("half"))
	o.Abort()
	if _, err := b.Get(ctx, "aborted"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an aborted object is visible: %v", err)
	}
	stop := errors.New("stop")
	w, _ := NewParquetWriter[row](ctx, b, "p", nil)
	_ = w.Write([]row{{ID: 1}, {ID: 2}})
	_, _, _ = w.Close()
	if err := ReadParquet(ctx, b, "p", 1, func([]row) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("the callback's error was not returned: %v", err)
	}
}
