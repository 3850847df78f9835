package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// TestSlotLag: a slot nobody reads holds back the WAL written after it,
// confirmed or not, reserved and with no limit by default; a slot that
// does not exist is nil.
func TestSlotLag(t *testing.T) {
	ctx := context.Background()
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	if l, err := SlotLag(ctx, url, ""); err != nil || l != nil {
		t.Fatalf("no slot yet: %+v, %v", l, err)
	}
	pgtest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	pgtest.Exec(t, url, `CREATE TABLE elsewhere (v text)`)
	// Committed synchronously, as a source's commits usually are; the lag
	// counts to the WAL's insert position either way.
	pgtest.Exec(t, url, `SET synchronous_commit = on; INSERT INTO elsewhere SELECT repeat('x', 1000) FROM generate_series(1, 8192)`)
	l, err := SlotLag(ctx, url, "") // the default slot
	if err != nil {
		t.Fatal(err)
	}
	const written = 4 << 20 // at least; PostgreSQL's WAL records are leaner than the rows
	if l == nil || l.Slot != slot || l.RetainedBytes < written || l.UnconfirmedBytes < written || l.UnconfirmedBytes > l.RetainedBytes {
		t.Fatalf("after 8 MB of rows: %+v", l)
	}
	if l.WALStatus != "reserved" || l.SafeWALBytes != nil || l.Active || l.Lost() {
		t.Errorf("an idle slot with no limit: %+v", l)
	}
	if _, err := SlotLag(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=1", slot); err == nil {
		t.Error("no error from a source that cannot be reached")
	}
}

// TestSlotLagLimited: under max_slot_wal_keep_size the slot tells how much
// more WAL it may fall behind, and once the server removed WAL it needed,
// that it is lost.
func TestSlotLagLimited(t *testing.T) {
	url, slot := limitedSlot(t)
	l, err := SlotLag(context.Background(), url, slot)
	if err != nil || l == nil || l.SafeWALBytes == nil || *l.SafeWALBytes <= 0 || l.Lost() {
		t.Fatalf("a new slot under a limit: %+v, %v", l, err)
	}
	for deadline := time.Now().Add(30 * time.Second); !l.Lost(); {
		if time.Now().After(deadline) {
			t.Fatalf("the slot is not lost: %+v", l)
		}
		pushWAL(t, url)
		if l, err = SlotLag(context.Background(), url, slot); err != nil || l == nil {
			t.Fatalf("%+v, %v", l, err)
		}
	}
	if l.RetainedBytes != 0 {
		t.Errorf("a lost slot holds %d bytes", l.RetainedBytes)
	}
}

// TestSlotLagCheck: past its limit a slot is a slot_lag finding that says
// what it risks; at or under it, or absent, nothing.
func TestSlotLagCheck(t *testing.T) {
	safe := int64(5 << 20)
	l := &Lag{Slot: "s", RetainedBytes: 2 << 30, WALStatus: "extended"}
	if err := l.Check(2 << 30); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if err := (*Lag)(nil).Check(0); err != nil {
		t.Errorf("no slot: %v", err)
	}
	err := l.Check(1 << 30)
	if errkind.Of(err) != errkind.SlotLag || errkind.Permanent(err) {
		t.Fatalf("want a slot_lag finding, got %s: %v", errkind.Of(err), err)
	}
	for _, want := range []string{"slot s holds back 2147483648 bytes", "limit 1073741824, SANDSTONE_SLOT_LAG_ALERT_BYTES", "no capture is reading it", "until the source's disk is full", "drop-slot"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	l.Active, l.SafeWALBytes = true, &safe
	err = l.Check(1 << 30)
	for _, want := range []string{"not keeping up", "5242880 bytes more and the server invalidates it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}
