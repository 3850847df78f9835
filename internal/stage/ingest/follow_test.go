package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// next has the follower land the next batch, waiting for it up to wait.
func (f *fixture) next(fl *Follower, wait time.Duration) Result {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := fl.Next(context.Background(), f.opts(), wait)
		if errkind.Of(err) == errkind.CaptureSlotBusy && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			f.t.Fatalf("follow: %v", err)
		}
		return res
	}
}

// walSender is the pid of the WAL sender streaming the fixture's slot; 0
// when none is.
func (f *fixture) walSender() int32 {
	f.t.Helper()
	var pid *int32
	pgtest.Scan(f.t, f.url, []any{&pid}, "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", config.DefaultSlot(f.url))
	if pid == nil {
		return 0
	}
	return *pid
}

// following is a fixture of the small source and its follower, which has
// landed the slot's snapshot and streams, landing nothing more; the
// follower is closed when the test ends.
func following(t *testing.T) (*fixture, *Follower) {
	f := walFixture(t)
	smallSource(f)
	fl := &Follower{}
	t.Cleanup(fl.Close)
	f.next(fl, time.Second)
	if res := f.next(fl, 100*time.Millisecond); res.Sequence != 0 {
		t.Fatalf("nothing committed, yet it landed %+v", res)
	}
	return f, fl
}

func TestFollowerLandsEachCommitOnOneConnection(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	fl := &Follower{}
	defer fl.Close()
	if res := f.next(fl, time.Second); res.Sequence != 1 || !f.manifest(1).Capture.SnapshotDone {
		t.Fatalf("first call: %+v, want the slot's snapshot", res)
	}
	began := time.Now()
	if res := f.next(fl, 300*time.Millisecond); res.Sequence != 0 {
		t.Fatalf("nothing committed, yet it landed %+v", res)
	}
	if waited := time.Since(began); waited < 300*time.Millisecond {
		t.Errorf("it returned after %s, not waiting for a change", waited)
	}
	sender := f.walSender()
	if sender == 0 {
		t.Fatal("no WAL sender between batches: the connection was not kept")
	}
	for i, units := range []int{201, 202, 203} {
		// The change commits while Next waits for it.
		go func() {
			time.Sleep(150 * time.Millisecond)
			f.exec("UPDATE sales_order SET units_sold = $1, last_updated = now() WHERE sales_order_id = 1", units)
		}()
		res := f.next(fl, 10*time.Second)
		got := rows[captured](t, f.bucket, res.Sequence, "sales_order")
		if res.Sequence != int64(i+2) || len(got) != 1 || got[0].UnitsSold != int32(units) || got[0].Op != lake.OpUpdate {
			t.Fatalf("change %d: %+v, rows %+v", i, res, got)
		}
		m := f.manifest(res.Sequence)
		if prev := f.manifest(res.Sequence - 1); m.Capture.Start != prev.Capture.End || m.Capture.End <= m.Capture.Start {
			t.Errorf("batch %d runs %s to %s after one ending at %s", res.Sequence, m.Capture.Start, m.Capture.End, prev.Capture.End)
		}
		if c := f.confirmed(); c != m.Capture.End {
			t.Errorf("slot confirmed to %s, the batch ends at %s", c, m.Capture.End)
		}
		if pid := f.walSender(); pid != sender {
			t.Errorf("batch %d came through WAL sender %d, not %d: the connection was not kept", res.Sequence, pid, sender)
		}
	}
	// Deletes land as tombstones.
	f.exec("DELETE FROM payment WHERE payment_id = 1")
	if res := f.next(fl, 10*time.Second); f.manifest(res.Sequence).Deleted["payment"][0] != 1 {
		t.Errorf("delete: %+v, tombstones %v", res, f.manifest(res.Sequence).Deleted)
	}
	fl.Close()
	if res := f.run(); res.Sequence != 0 {
		t.Errorf("a run after the follower landed %+v: something was landed twice or left unconfirmed", res)
	}
}

func TestFollowerStartsAgainAfterALostConnection(t *testing.T) {
	t.Parallel()
	f, fl := following(t)
	f.exec("UPDATE sales_order SET units_sold = 301, last_updated = now() WHERE sales_order_id = 1")
	// The WAL sender goes before the change is landed.
	pgtest.Exec(t, f.url, "SELECT pg_catalog.pg_terminate_backend(active_pid) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
		config.DefaultSlot(f.url))
	if _, err := fl.Next(context.Background(), f.opts(), 5*time.Second); err == nil {
		t.Fatal("a lost WAL sender went unnoticed")
	}
	// The change landed before the connection was found lost, or lands
	// now: once either way.
	f.next(fl, time.Second)
	f.next(fl, 200*time.Millisecond)
	latest, err := f.bucket.LatestSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []captured
	for seq := int64(2); seq <= latest; seq++ {
		got = append(got, rows[captured](t, f.bucket, seq, "sales_order")...)
	}
	if len(got) != 1 || got[0].UnitsSold != 301 {
		t.Fatalf("after the lost connection the lake holds %+v, want the change once", got)
	}
}

func TestFollowerCutsAtASchemaChange(t *testing.T) {
	t.Parallel()
	f, fl := following(t)
	f.exec("UPDATE currency SET currency_code = 'EUR', last_updated = now() WHERE currency_id = 1")
	f.exec("ALTER TABLE currency ADD COLUMN note text")
	f.exec("UPDATE currency SET note = 'new', last_updated = now() WHERE currency_id = 1")
	// Flushed, so that one batch would hold both.
	f.exec("SET synchronous_commit = on; SELECT pg_catalog.pg_logical_emit_message(true, 'test', 'flush')")
	first := f.next(fl, 10*time.Second)
	second := f.next(fl, 10*time.Second)
	c1, c2 := f.manifest(first.Sequence), f.manifest(second.Sequence)
	o1, _ := c1.Table("currency")
	o2, _ := c2.Table("currency")
	if !first.More || o1.Rows != 1 || o2.Rows != 1 || len(o2.Columns) != len(o1.Columns)+1 {
		t.Fatalf("a new column while following: %+v %+v then %+v", first, o1, o2)
	}
	if res := f.next(fl, 200*time.Millisecond); res.Sequence != 0 {
		t.Errorf("a change landed twice: %+v", res)
	}
}

func TestFollowerRefuses(t *testing.T) {
	t.Parallel()
	f, fl := following(t)
	// Another lake under the same follower: not the lake it landed in.
	other := f.opts()
	var err error
	if other.Bucket, err = lake.Open(context.Background(), "file://"+t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Next(context.Background(), other, time.Second); errkind.Of(err) != errkind.CaptureGap {
		t.Errorf("a lake moved under the follower: %v, want %s", err, errkind.CaptureGap)
	}
	poll := f.opts()
	poll.Capture = config.CapturePoll
	if _, err := fl.Next(context.Background(), poll, time.Second); errkind.Of(err) != errkind.ConfigInvalid {
		t.Errorf("following with the poll: %v, want %s", err, errkind.ConfigInvalid)
	}
	// Stopped, it returns at once.
	stop := make(chan struct{})
	close(stop)
	opts := f.opts()
	opts.Stop = stop
	began := time.Now()
	if res, err := fl.Next(context.Background(), opts, time.Minute); err != nil || res.Sequence != 0 || time.Since(began) > 10*time.Second {
		t.Errorf("stopped: %+v, %v after %s", res, err, time.Since(began))
	}
}

// TestEmptyBatch: when allowed, an empty batch lands past 8 MB of other
// WAL, or when the slot holds 8 MB back from its restart point and the run
// read past the lake's end; never for WAL it did not read.
func TestEmptyBatch(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		name                  string
		start, quiet, restart lake.LSN
		release               bool
		want                  bool
	}{
		{"8 MB of other WAL", 100 * mb, 108 * mb, 99 * mb, true, true},
		{"not yet", 100 * mb, 108 * mb, 99 * mb, false, false},
		{"less", 100 * mb, 107 * mb, 100 * mb, true, false},
		{"the slot holds the burst back", 100 * mb, 100*mb + 200, 30 * mb, true, true},
		{"but not now", 100 * mb, 100*mb + 200, 30 * mb, false, false},
		{"nothing read past the lake's end", 100 * mb, 100 * mb, 30 * mb, true, false},
		{"the restart point unknown", 100 * mb, 100*mb + 200, 0, true, false},
	} {
		s := &stream{capture: lake.Capture{Start: c.start}, quiet: c.quiet, restart: c.restart, release: c.release, quietMax: quietBytes}
		if got := s.emptyBatch(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFollowerEndsWithItsContext: a follower waiting on the stream ends
// soon after its context does, with the context's error, and the next
// batch goes on from the lake as if nothing had happened.
func TestFollowerEndsWithItsContext(t *testing.T) {
	t.Parallel()
	f, fl := following(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := fl.Next(ctx, f.opts(), time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 5*time.Second {
		t.Fatalf("a context ended under a waiting follower: %v after %s", err, time.Since(began))
	}
	f.exec("UPDATE sales_order SET units_sold = 9, last_updated = now() WHERE sales_order_id = 1")
	if res := f.next(fl, 5*time.Second); res.Rows["sales_order"] != 1 {
		t.Fatalf("after the context's end: %+v", res)
	}
}
