package status

import (
	"context"
	"fmt"
	"strings"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// slot reads how far wal capture's replication slot holds the source
// back, when the configuration captures from the WAL: a slot not yet
// created is a note, a lost one a problem.
func (g *gathering) slot(ctx context.Context) {
	if g.cfg.Capture != config.CaptureWAL {
		return
	}
	if g.cfg.SourceURL == "" {
		g.Problems = append(g.Problems, "replication slot: no source URL configured (set --source or "+config.EnvSource+")")
		return
	}
	l, err := ingest.SlotLag(ctx, g.cfg.SourceURL, g.cfg.Slot)
	switch {
	case err != nil:
		g.problem("replication slot", err)
	case l == nil:
		g.Notes = append(g.Notes, fmt.Sprintf("replication slot %s does not exist yet: the first 'sandstone ingest --capture wal' creates it",
			or(g.cfg.Slot, config.DefaultSlot(g.cfg.SourceURL))))
	default:
		g.Slot, g.SlotLagBytes = l, &l.RetainedBytes
		if l.Lost() {
			g.Problems = append(g.Problems, fmt.Sprintf("replication slot %s was invalidated (wal_status lost): changes after its last confirmed position are gone; "+
				"'sandstone ingest --capture wal --resnapshot' and 'sandstone audit --repair' close the gap", l.Slot))
		}
	}
}

// slotSummary says what the slot's lag means, after its retained bytes.
func slotSummary(l *ingest.Lag) string {
	parts := []string{"slot " + l.Slot, "wal_status " + l.WALStatus, bytesText(l.UnconfirmedBytes) + " not yet confirmed"}
	if l.SafeWALBytes != nil {
		parts = append(parts, bytesText(*l.SafeWALBytes)+" more before it may be invalidated (max_slot_wal_keep_size)")
	} else {
		parts = append(parts, "no max_slot_wal_keep_size: it holds WAL until the disk is full")
	}
	if l.Active {
		parts = append(parts, "streaming")
	}
	return strings.Join(parts, ", ")
}

// bytesText writes a size in binary units: 512 B, 3.2 MiB, 1.0 GiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, prefix := float64(n)/unit, "KMGTPE"
	for i := 0; ; i++ {
		if f < unit && f > -unit || i == len(prefix)-1 {
			return fmt.Sprintf("%.1f %ciB", f, prefix[i])
		}
		f /= unit
	}
}
