package lambdafn

import (
	"context"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/metrics/emf"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// slotLag writes, after a run of the ingest function in wal capture, the
// EMF line of how far its replication slot holds the source back: what
// the slot-lag alarm watches. A slot that cannot be read is logged, not
// failed: the run's own outcome says why the source cannot be reached.
func (h *Handler) slotLag(ctx context.Context) {
	if h.Stage != pipeline.Ingest || h.Config.Capture != config.CaptureWAL {
		return
	}
	l, err := ingest.SlotLag(ctx, h.Config.SourceURL, h.Config.Slot)
	if err != nil {
		h.Logger.Warn("could not read the replication slot", "error", config.Redact(err.Error()))
		return
	}
	if l == nil {
		return
	}
	_ = h.EMF.RecordSlotLag(h.Stage, emf.SlotLag{Slot: l.Slot, RetainedBytes: l.RetainedBytes, UnconfirmedBytes: l.UnconfirmedBytes,
		SafeWALBytes: l.SafeWALBytes, WALStatus: l.WALStatus})
}
