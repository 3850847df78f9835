package status

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestSlotLag: status reads the slot only when capturing from the WAL; a
// slot not yet created is a note, an existing one shows what it holds
// back.
func TestSlotLag(t *testing.T) {
	url := pgtest.NewDatabase(t)
	slot := config.DefaultSlot(url)
	t.Cleanup(func() { pgtest.DropSlot(t, url, slot) })
	dir := t.TempDir()
	cfg := config.Config{SourceURL: url, Capture: config.CapturePoll,
		IngestBucket: filepath.Join(dir, "in"), ProcessedBucket: filepath.Join(dir, "out")}
	gather := func() Report { return Gather(context.Background(), cfg, filepath.Join(dir, "alerts.json")) }
	if r := gather(); r.Slot != nil || r.SlotLagBytes != nil || slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "slot") }) {
		t.Fatalf("the poll has no slot: %+v %v", r.Slot, r.Notes)
	}
	cfg.Capture = config.CaptureWAL
	if r := gather(); r.Slot != nil || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "replication slot "+slot+" does not exist yet") }) {
		t.Fatalf("no note of the slot to come: %+v %v", r.Slot, r.Notes)
	}
	pgtest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	pgtest.Exec(t, url, `CREATE TABLE elsewhere AS SELECT repeat('x', 1000) AS v FROM generate_series(1, 2048)`)
	r := gather()
	if r.Slot == nil || r.SlotLagBytes == nil || *r.SlotLagBytes != r.Slot.RetainedBytes || *r.SlotLagBytes < 1<<20 {
		t.Fatalf("slot %+v, lag %v", r.Slot, r.SlotLagBytes)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replication slot lag: ", "(slot " + slot + ", wal_status reserved, ", "not yet confirmed", "no max_slot_wal_keep_size"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := r.WriteHTML(&b, cfg, PageWindow); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "(slot "+slot+", wal_status reserved, ") {
		t.Error("the page lacks the slot")
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 19: "1.5 MiB", 1 << 30: "1.0 GiB", -2048: "-2.0 KiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}
