package ingest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// TestCaptureSlotHeldByAnotherConsumer: while another consumer streams
// from the slot (a killed run's WAL sender does until wal_sender_timeout
// passes), a run fails with capture_slot_busy, retried, and lands
// nothing; once the slot is free, a run lands what it could not.
func TestCaptureSlotHeldByAnotherConsumer(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec("UPDATE sales_order SET units_sold = 7, last_updated = now() WHERE sales_order_id = 1")
	pid, release := holdSlot(t, f.url, config.DefaultSlot(f.url))
	_, err := Run(context.Background(), f.opts())
	wantBusy(t, err, "in use by process "+itoa(pid), "wal_sender_timeout", "sandstone run tries again")
	if latest, _ := f.bucket.LatestSeq(context.Background()); latest != 1 {
		t.Fatalf("a run on a busy slot landed batch %d", latest)
	}
	release()
	// As sandstone run does: try again while the slot is busy.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := Run(context.Background(), f.opts())
		if errkind.Of(err) == errkind.CaptureSlotBusy && time.Now().Before(deadline) {
			continue
		}
		if err != nil || res.Sequence != 2 || res.Rows["sales_order"] != 1 {
			t.Fatalf("once the slot is free: %+v, %v", res, err)
		}
		break
	}
}

// TestCaptureTwoConsumersLandOnce: two runs at once on one slot, again and
// again: one lands the changes; the other fails with capture_slot_busy or
// lands none of them (its batch lost the race for the manifest, or came
// after). Every version lands once.
func TestCaptureTwoConsumersLandOnce(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	const rounds = 6
	busy := 0
	for round := range rounds {
		f.exec("UPDATE sales_order SET units_sold = $1, last_updated = now() WHERE sales_order_id = 1", round)
		// Both may find the slot busy, held by the WAL sender of the
		// round before: then the two go again.
		var landed int64
		for attempt := 0; landed == 0 && attempt < 50; attempt++ {
			if attempt > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			results := make([]Result, 2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() {
					o := f.opts()
					o.Bucket = f.open()
					results[i], errs[i] = Run(context.Background(), o)
				})
			}
			wg.Wait()
			for i, err := range errs {
				switch {
				case errkind.Of(err) == errkind.CaptureSlotBusy:
					busy++
					t.Log(err)
				case err != nil:
					t.Fatalf("round %d, run %d: %v", round, i, err)
				}
				landed += results[i].Total()
			}
			if landed > 1 {
				t.Fatalf("round %d: the two runs landed %d versions (%+v, %+v; %v, %v), want 1", round, landed, results[0], results[1], errs[0], errs[1])
			}
		}
		if landed != 1 {
			t.Fatalf("round %d: no run landed the change", round)
		}
	}
	t.Logf("%d runs found the slot busy", busy)
	latest, err := f.bucket.LatestSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var units []int32
	for seq := int64(2); seq <= latest; seq++ {
		for _, so := range rows[captured](t, f.bucket, seq, "sales_order") {
			units = append(units, so.UnitsSold)
		}
	}
	if want := []int32{0, 1, 2, 3, 4, 5}; !slices.Equal(units, want) {
		t.Errorf("sales order 1 landed as %v, want each version once: %v", units, want)
	}
	if got, end := f.confirmed(), f.manifest(latest).Capture.End; got != end {
		t.Errorf("slot confirmed to %s, the lake ends at %s", got, end)
	}
}

// TestLakeMovedOnIsABusySlot: a run that started from batch 1 finds the
// slot past the lake it loaded (what looks like a gap, or a slot to start
// again): when the lake has a newer batch, another consumer landed it
// meanwhile, and the run is retried rather than stopped as a gap.
func TestLakeMovedOnIsABusySlot(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	gap := errkind.Wrap(errkind.CaptureGap, errors.New("a gap"))
	c := &capture{opts: f.opts(), prevSeq: 1}
	if err := c.movedOn(context.Background(), gap); !errors.Is(err, gap) {
		t.Errorf("the lake where the run left it: %v, want the gap", err)
	}
	f.exec("UPDATE sales_order SET units_sold = 7, last_updated = now() WHERE sales_order_id = 1")
	f.run()
	wantBusy(t, c.movedOn(context.Background(), gap), "another consumer landed batch 000000000002", "sandstone run tries again")
}
