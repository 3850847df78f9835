package status

// What the status page adds to the status: the stages at a glance, the
// warehouse's history over a window and one business figure, with a cache
// that keeps what changes only when a batch is loaded.

import (
	"context"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// Options shape GatherWith; the zero value gathers what `sandstone
// status` shows.
type Options struct {
	// AlertState is the file of the alert state `sandstone run` keeps.
	AlertState string
	// Window, when positive, gathers the loads of that long back and how
	// far the warehouse was behind the source over it (Loads, Behind).
	Window time.Duration
	// Sales gathers the warehouse's sales value by month and currency.
	Sales bool
	// Cache, when set, keeps the row counts, the sales and the batches'
	// snapshots from one gathering to the next until a batch is loaded, so
	// that gathering again counts no table.
	Cache *Cache
}

// StageState is one stage's state and last batch.
type StageState struct {
	Stage string `json:"stage"`
	// State is "ok", "failing" (the alert state's streak) or "unknown"
	// (no alert state saved for the stage).
	State string `json:"state"`
	// LastRun is when the stage last wrote a batch (ingest: landed one;
	// audit: finished one); Batch is that batch.
	LastRun time.Time `json:"last_run,omitzero"`
	Batch   string    `json:"batch,omitempty"`
	// Error is the failing streak's kind and last error.
	Error string `json:"error,omitempty"`
}

// The stages as package pipeline names them; pipeline's tests use status,
// so status cannot import pipeline (a test holds the names equal).
const (
	stageIngest    = "ingest"
	stageTransform = "transform"
	stageLoad      = "load"
)

// BehindPoint is how far the warehouse was behind the source at one time.
type BehindPoint struct {
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
}

// Cache keeps what changes only when a batch is loaded. Its methods are
// safe for concurrent use; the zero value is ready.
type Cache struct {
	mu        sync.Mutex
	head      warehouse.LedgerEntry // the newest load the figures are of
	counts    map[string]int64
	sales     []warehouse.Sales
	salesRead bool
	snapshots map[int64]time.Time
}

// at forgets the figures of another newest load than head; a ledger that
// went back (a rebuilt warehouse) forgets the snapshots too.
func (c *Cache) at(head *warehouse.LedgerEntry) {
	var h warehouse.LedgerEntry
	if head != nil {
		h = *head
	}
	if h.Sequence == c.head.Sequence && h.LoadedAt.Equal(c.head.LoadedAt) {
		return
	}
	if h.Sequence < c.head.Sequence {
		c.snapshots = nil
	}
	c.head, c.counts, c.sales, c.salesRead = h, nil, nil, false
}

// counts are the warehouse's row counts, counted once per load.
func (g *gathering) counts(ctx context.Context, wh *warehouse.Warehouse) (map[string]int64, error) {
	c := g.opts.Cache
	if c == nil {
		return wh.Counts(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at(g.LastLoad)
	if c.counts == nil {
		n, err := wh.Counts(ctx)
		if err != nil {
			return nil, err
		}
		c.counts = n
	}
	return c.counts, nil
}

// sales reads the sales value by month and currency, once per load.
func (g *gathering) sales(ctx context.Context, wh *warehouse.Warehouse) error {
	c := g.opts.Cache
	if c == nil {
		c = &Cache{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at(g.LastLoad)
	if !c.salesRead {
		s, err := wh.SalesByMonth(ctx)
		if err != nil {
			return err
		}
		c.sales, c.salesRead = s, true
	}
	g.Sales = c.sales
	return nil
}

// snapshot is the snapshot of processed batch seq (zero when its manifest
// cannot be read or does not say), read once.
func (g *gathering) snapshot(ctx context.Context, out *lake.Bucket, seq int64) time.Time {
	c := g.opts.Cache
	if c == nil {
		c = &Cache{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.snapshots[seq]; ok {
		return t
	}
	var m lake.Manifest
	if err := out.ReadManifest(ctx, seq, &m); err != nil {
		return time.Time{}
	}
	if c.snapshots == nil {
		c.snapshots = map[int64]time.Time{}
	}
	c.snapshots[seq] = m.SnapshotAt.UTC()
	return c.snapshots[seq]
}

// history gathers the loads of the window and how far the warehouse was
// behind the source over it: at each load, the age of the snapshot loaded
// before it and then of its own, and now. Between loads the line rises:
// while the source is quiet ingest lands no batch, so it is an upper
// bound there, as BehindSourceAtMost says of the latest.
func (g *gathering) history(ctx context.Context, wh *warehouse.Warehouse, out *lake.Bucket) error {
	start := g.At.Add(-g.opts.Window)
	loads, err := wh.LoadsSince(ctx, start)
	if err != nil {
		return err
	}
	var prev time.Time // the snapshot of the newest batch loaded so far
	point := func(at time.Time) {
		if !prev.IsZero() {
			g.Behind = append(g.Behind, BehindPoint{At: at, Seconds: warehouse.BehindSource(prev, at).Seconds()})
		}
	}
	for _, e := range loads {
		snap := g.snapshot(ctx, out, e.Sequence)
		if e.LoadedAt.Before(start) {
			prev = snap
			continue
		}
		g.Loads = append(g.Loads, e)
		if len(g.Behind) == 0 {
			point(start)
		}
		point(e.LoadedAt)
		prev = snap
		point(e.LoadedAt)
	}
	if len(g.Behind) == 0 {
		point(start)
	}
	point(g.At)
	return nil
}

// stages sets each stage's state from the alert state and its last batch
// from what the buckets and the ledger say: ingestedAt and transformedAt
// are when the newest batch of each bucket was committed.
func (g *gathering) stages(ingestedAt, transformedAt time.Time) {
	last := map[string]StageState{}
	if g.IngestedBatch != nil && *g.IngestedBatch > 0 {
		last[stageIngest] = StageState{LastRun: ingestedAt, Batch: lake.BatchID(*g.IngestedBatch)}
	}
	if g.ProcessedBatch != nil && *g.ProcessedBatch > 0 {
		last[stageTransform] = StageState{LastRun: transformedAt, Batch: lake.BatchID(*g.ProcessedBatch)}
	}
	if g.LastLoad != nil {
		last[stageLoad] = StageState{LastRun: g.LastLoad.LoadedAt, Batch: g.LastLoad.Batch}
	}
	if a := g.LastAudit; a != nil {
		last[audit.Stage] = StageState{LastRun: a.At.UTC(), Batch: a.Batch}
	}
	for _, stage := range []string{stageIngest, stageTransform, stageLoad, audit.Stage} {
		s := last[stage]
		s.Stage, s.State = stage, "unknown"
		if g.Alerts != nil {
			if a, ok := g.Alerts.Stages[stage]; ok {
				s.State = "ok"
				if a.Failing {
					s.State, s.Error = "failing", string(a.Kind)+": "+a.Error
				}
			}
		}
		g.Stages = append(g.Stages, s)
	}
}

// createdAt is when batch seq of b was committed (zero when unknown).
func createdAt(ctx context.Context, b *lake.Bucket, seq *int64) time.Time {
	var m lake.Manifest
	if b == nil || seq == nil || *seq == 0 || b.ReadManifest(ctx, *seq, &m) != nil {
		return time.Time{}
	}
	return m.CreatedAt.UTC()
}
