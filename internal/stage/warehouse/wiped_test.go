package warehouse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// cycleLog runs one pipeline cycle over cfg and returns its ERROR log
// lines and its error.
func cycleLog(t *testing.T, cfg config.Config) ([]map[string]any, error) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	p, err := pipeline.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	_, err = (&pipeline.Runner{Stages: p.Stages(), Logger: log}).Cycle(context.Background())
	var errs []map[string]any
	for _, line := range strings.Split(buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["level"] == "ERROR" {
			errs = append(errs, r)
		}
	}
	return errs, err
}

// TestWipedBucketsAreRefused runs the pipeline (ingest from a real source,
// transform, load), wipes buckets with the warehouse kept, and runs it
// again: load (both buckets wiped) or transform (the ingestion bucket only)
// refuses with ledger_mismatch, in one ERROR line, rather than take the new
// batches 1, 2, ... for those it has.
func TestWipedBucketsAreRefused(t *testing.T) {
	t.Parallel()
	install := func(t *testing.T) config.Config {
		dir := t.TempDir()
		cfg := config.Config{SourceURL: pgtest.NewDatabase(t), WarehouseURL: pgtest.NewDatabase(t),
			IngestBucket: filepath.Join(dir, "ingested"), ProcessedBucket: filepath.Join(dir, "processed"),
			WarehouseSchema: "public", Lookback: 5 * time.Minute}
		if _, err := synth.Seed(context.Background(), cfg.SourceURL, synth.SeedOptions{SalesOrders: 50, RandomSeed: 7}); err != nil {
			t.Fatal(err)
		}
		if lines, err := cycleLog(t, cfg); err != nil || len(lines) != 0 {
			t.Fatalf("first cycle: %v %v", err, lines)
		}
		return cfg
	}
	refused := func(t *testing.T, cfg config.Config, stage string, wants ...string) {
		t.Helper()
		wh, err := warehouse.Open(context.Background(), cfg.WarehouseURL, cfg.WarehouseSchema)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = wh.Close(context.Background()) }()
		before, err := wh.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		lines, err := cycleLog(t, cfg)
		if errkind.Of(err) != errkind.LedgerMismatch {
			t.Fatalf("cycle: %v (kind %s), want %s", err, errkind.Of(err), errkind.LedgerMismatch)
		}
		if len(lines) != 1 || lines[0]["error_kind"] != string(errkind.LedgerMismatch) || lines[0]["stage"] != stage {
			t.Fatalf("ERROR lines %v, want one of kind %s from %s", lines, errkind.LedgerMismatch, stage)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		after, err := wh.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range before {
			if after[k] != n {
				t.Errorf("%s: %d rows, were %d", k, after[k], n)
			}
		}
	}
	t.Run("both buckets wiped", func(t *testing.T) {
		cfg := install(t)
		for _, dir := range []string{cfg.IngestBucket, cfg.ProcessedBucket} {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
		refused(t, cfg, pipeline.Load, "does not hold the batches this warehouse", "Point --processed-bucket")
	})
	t.Run("the ingestion bucket wiped", func(t *testing.T) {
		cfg := install(t)
		if err := os.RemoveAll(cfg.IngestBucket); err != nil {
			t.Fatal(err)
		}
		refused(t, cfg, pipeline.Transform, "does not hold the batches the processed bucket", "Point --ingest-bucket")
	})
}
