package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
)

// TestSlotWatch: run's watch of the slot does nothing for the poll; for
// wal capture it gives the slot's lag to the metrics, alerts once the
// slot holds back more than the limit and recovers below it, and stops
// with its context.
func TestSlotWatch(t *testing.T) {
	ctx := context.Background()
	cfg := logicalSource(t)
	slot := config.DefaultSlot(cfg.SourceURL)
	t.Cleanup(func() {
		pgtest.Exec(t, cfg.SourceURL, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
	})
	hook := newWebhook(t)
	n, err := alert.New(alert.Config{Webhook: hook.URL}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{})
	cfg.Capture = config.CapturePoll
	if w := newSlotWatch(cfg, m, n, slog.Default()); w != nil {
		t.Fatal("a watch for the poll")
	}
	cfg.Capture, cfg.SlotLagAlertBytes = config.CaptureWAL, 1<<20
	w := newSlotWatch(cfg, m, n, slog.Default())
	w.check(ctx) // no slot yet: nothing held back
	pgtest.Exec(t, cfg.SourceURL, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	pgtest.Exec(t, cfg.SourceURL, `CREATE TABLE elsewhere AS SELECT repeat('x', 1000) AS v FROM generate_series(1, 4096)`)
	w.check(ctx)
	if v := gauge(t, m, "sandstone_slot_retained_wal_bytes"); v < 1<<20 {
		t.Errorf("retained %v bytes", v)
	}
	w.cfg.SlotLagAlertBytes = 1 << 40
	done := w.start(briefly(t), time.Hour)
	<-done
	if got := strings.Join(hook.states(), " "); got != "slot/failing/slot_lag slot/recovered/slot_lag" {
		t.Errorf("alerts %q", got)
	}
	if _, ok := <-(*slotWatch)(nil).start(ctx, time.Hour); ok {
		t.Error("a nil watch runs")
	}
}

// briefly is a context that ends a moment after it is made: a watch started
// with it checks once and stops.
func briefly(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// gauge is the one series of the metric name in m's registry.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}
