package status

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// TestProblemsAndAlerts: what cannot be read is reported, not fatal, and
// the alert state 'run' saved is shown.
func TestProblemsAndAlerts(t *testing.T) {
	dir := t.TempDir()
	state := alert.State{Stages: map[string]alert.StageState{
		"load":   {Failing: true, FailingSince: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Failures: 3, Kind: errkind.WarehouseUnreachable, Error: "connection refused"},
		"ingest": {},
	}}
	data, _ := json.Marshal(state)
	alerts := filepath.Join(dir, "alerts.json")
	if err := os.WriteFile(alerts, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{
		IngestBucket:    filepath.Join(dir, "in"),
		ProcessedBucket: "nosuchscheme://x",
		WarehouseURL:    "postgres://u:hunter2@127.0.0.1:1/w?connect_timeout=1",
		WarehouseSchema: "public",
	}
	r := Gather(context.Background(), cfg, alerts)
	if len(r.Problems) != 2 || !strings.Contains(r.Problems[0], "processed bucket") || !strings.Contains(r.Problems[1], "warehouse") {
		t.Fatalf("problems %q", r.Problems)
	}
	var text, js bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	out := text.String() + js.String()
	for _, want := range []string{"load: FAILING since 2026-01-02 03:04:05.000 UTC (warehouse_unreachable, 3 failures)", "ingest: ok", `"problems"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Error("password in the status")
	}

	if err := os.WriteFile(alerts, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.WarehouseURL = ""
	r = Gather(context.Background(), cfg, alerts)
	if got := strings.Join(r.Problems, "; "); !strings.Contains(got, "no URL configured") || !strings.Contains(got, "alert state") {
		t.Fatalf("problems %q", got)
	}
}

// The text names the tables whose stamps run off the source's clock, and
// those every ingest reads whole, with the index that would end it.
func TestTableNotes(t *testing.T) {
	r := Report{Tables: map[string]*ingest.TableState{
		"sales_order": {Unindexed: 4_000_000},
		"staff":       {Skew: -2 * time.Hour},
		"payment":     {},
	}}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		`cost: sales_order has no index on last_updated, so every ingest reads all of its 4000000 rows; ` +
			`this makes it read only the changes: CREATE INDEX CONCURRENTLY ON "sales_order" ("last_updated")`,
		"clock: staff.last_updated runs 2h0m0s behind the source's clock",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "cost:")+strings.Count(out, "clock:") != 2 {
		t.Errorf("a note for a table that needs none:\n%s", out)
	}
}
