package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// slotEvery is how often `run --capture wal` reads its replication slot.
const slotEvery = time.Minute

// slotAlert is the alert "stage" of the slot holding back more WAL than
// config.Config.SlotLagAlertBytes.
const slotAlert = "slot"

// slotWatch reads wal capture's replication slot beside the cycles, never
// in line with them: its lag goes to the metrics and, past the limit, to
// an alert. A nil slotWatch (the poll) does nothing.
type slotWatch struct {
	cfg config.Config
	m   *metrics.Metrics
	n   *alert.Notifier
	log *slog.Logger
}

// newSlotWatch is the watch of cfg's slot; nil unless cfg captures from
// the WAL.
func newSlotWatch(cfg config.Config, m *metrics.Metrics, n *alert.Notifier, log *slog.Logger) *slotWatch {
	if cfg.Capture != config.CaptureWAL {
		return nil
	}
	return &slotWatch{cfg: cfg, m: m, n: n, log: log}
}

// check reads the slot once. A slot that cannot be read is logged, not
// alerted: ingest's own failure says why the source cannot be reached.
func (w *slotWatch) check(ctx context.Context) {
	if w == nil {
		return
	}
	l, err := ingest.SlotLag(ctx, w.cfg.SourceURL, w.cfg.Slot)
	if err != nil {
		w.log.Warn("could not read the replication slot", "slot", w.cfg.Slot, "error", config.Redact(err.Error()))
		return
	}
	if l != nil {
		w.m.SlotLag(l.Slot, l.RetainedBytes, l.UnconfirmedBytes, l.SafeWALBytes)
	}
	w.n.Observe(ctx, slotAlert, "", l.Check(w.cfg.SlotLagAlertBytes))
}

// start checks the slot now and every `every` until ctx ends; the channel
// it returns is closed once it has stopped (at once for a nil watch).
func (w *slotWatch) start(ctx context.Context, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if w == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for ctx.Err() == nil {
			w.check(ctx)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}()
	return done
}
