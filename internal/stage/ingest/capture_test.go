package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// walFixture is a fixture read by log-based capture; its slot is dropped
// when the test ends.
func walFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.capture = config.CaptureWAL
	t.Cleanup(func() {
		pgtest.Exec(t, f.url, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
			config.DefaultSlot(f.url))
	})
	return f
}

// manifest reads batch seq's manifest.
func (f *fixture) manifest(seq int64) lake.Manifest {
	f.t.Helper()
	var m lake.Manifest
	if err := f.bucket.ReadManifest(context.Background(), seq, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// confirmed is the slot's confirmed_flush_lsn.
func (f *fixture) confirmed() lake.LSN {
	f.t.Helper()
	var s string
	pgtest.Scan(f.t, f.url, []any{&s}, "SELECT confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
		config.DefaultSlot(f.url))
	l, err := lake.ParseLSN(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// captured is one landed row of a table as capture wrote it.
type captured struct {
	ID          int32     `parquet:"sales_order_id"`
	UnitsSold   int32     `parquet:"units_sold"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
	Op          string    `parquet:"_sandstone_op"`
	LSN         int64     `parquet:"_sandstone_lsn"`
}

func TestCaptureLandsEveryCommittedVersion(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	res := f.run()
	m := f.manifest(1)
	if res.Sequence != 1 || res.Total() != 10 || m.Capture == nil || !m.Capture.Snapshot || !m.Capture.SnapshotDone {
		t.Fatalf("first run: %+v, capture %+v", res, m.Capture)
	}
	if got := f.confirmed(); got != m.Capture.End {
		t.Errorf("slot confirmed to %s, the snapshot batch ends at %s", got, m.Capture.End)
	}
	for _, so := range rows[captured](t, f.bucket, 1, "sales_order") {
		if so.Op != lake.OpSnapshot || so.LSN != int64(m.Capture.End) {
			t.Errorf("snapshot row %+v", so)
		}
	}
	// Three versions, one correction that keeps last_updated, a delete.
	for _, units := range []int{101, 102, 103} {
		f.exec("UPDATE sales_order SET units_sold = $1, last_updated = last_updated + interval '1 second' WHERE sales_order_id = 1", units)
	}
	f.exec("UPDATE sales_order SET units_sold = 104 WHERE sales_order_id = 1")
	f.exec("DELETE FROM payment WHERE payment_id = 1")
	res = f.run()
	m = f.manifest(2)
	if res.Sequence != 2 || res.Rows["sales_order"] != 4 || m.Capture == nil || m.Capture.Snapshot {
		t.Fatalf("second run: %+v, capture %+v", res, m.Capture)
	}
	got := rows[captured](t, f.bucket, 2, "sales_order")
	for i, units := range []int32{101, 102, 103, 104} {
		if got[i].UnitsSold != units || got[i].Op != lake.OpUpdate || i > 0 && got[i].LSN <= got[i-1].LSN {
			t.Errorf("version %d: %+v", i, got[i])
		}
	}
	if !got[3].LastUpdated.Equal(got[2].LastUpdated) {
		t.Errorf("the correction's last_updated %v, the version it corrects %v", got[3].LastUpdated, got[2].LastUpdated)
	}
	if ids := m.Deleted["payment"]; len(ids) != 1 || ids[0] != 1 {
		t.Errorf("tombstones %v, want payment 1", m.Deleted)
	}
	if c := f.confirmed(); c != m.Capture.End || m.Capture.Start != f.manifest(1).Capture.End {
		t.Errorf("slot confirmed to %s; batch runs %s to %s", c, m.Capture.Start, m.Capture.End)
	}
	if res := f.run(); res.Sequence != 0 {
		t.Fatalf("a run with nothing new landed %+v", res)
	}
	// The id comes back: it leaves the deletions.
	f.exec(`INSERT INTO payment VALUES (1, now(), now(),1,1,394.00,1,1,false,'2024-01-03',1,2)`)
	f.run()
	if m := f.manifest(3); len(m.Revived["payment"]) != 1 || len(m.Deleted) != 0 {
		t.Errorf("re-insert: revived %v, deleted %v", m.Revived, m.Deleted)
	}
}

func TestCaptureGapIsLoud(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	pgtest.Exec(t, f.url, "SELECT pg_catalog.pg_drop_replication_slot($1)", config.DefaultSlot(f.url))
	f.exec("UPDATE sales_order SET units_sold = 7 WHERE sales_order_id = 1")
	_, err := Run(context.Background(), f.opts())
	if errkind.Of(err) != errkind.CaptureGap {
		t.Fatalf("a dropped slot: %v (%s), want capture_gap", err, errkind.Of(err))
	}
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 1 {
		t.Fatalf("a gap landed batch %d", n)
	}
	opts := f.opts()
	opts.Resnapshot = true
	res, err := Run(context.Background(), opts)
	if err != nil || res.Sequence != 2 {
		t.Fatalf("resnapshot: %+v, %v", res, err)
	}
	_ = totesys.Tables
}
