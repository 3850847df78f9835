// Package status gathers what `sandstone status` shows: how far each stage
// has got, what waits, the warehouse's contents, its freshness and the alert
// state.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
	"github.com/sandstone-data/sandstone/internal/stage/transform"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// Report is the status of an installation. A count that could not be
// read is nil (JSON null, "unknown" in the text), never a 0 that would
// read as nothing there; Problems says why.
type Report struct {
	At time.Time `json:"at"`
	// Tables is ingest's progress per source table.
	Tables map[string]*ingest.TableState `json:"source_tables"`
	// Batches is the newest batch of each stage.
	IngestedBatch    *int64 `json:"ingested_batch"`
	ProcessedBatch   *int64 `json:"processed_batch"`
	LoadedBatch      *int64 `json:"loaded_batch"`
	PendingTransform *int64 `json:"pending_transform"`
	PendingLoad      *int64 `json:"pending_load"`
	// LastLoad is the newest batch loaded.
	LastLoad *warehouse.LedgerEntry `json:"last_load,omitempty"`
	// Counts are the warehouse's rows per table.
	Counts map[string]int64 `json:"warehouse_rows,omitempty"`
	// FreshnessSeconds is the age now of the newest source change that has
	// reached the warehouse.
	FreshnessSeconds float64 `json:"freshness_seconds,omitempty"`
	// SourceLastChange is the newest last_updated ingest has seen: when the
	// source last changed (as its stamps say).
	SourceLastChange time.Time `json:"source_last_change,omitzero"`
	// CaughtUpTo is the snapshot of the newest loaded batch: the warehouse
	// holds every source change made before it. BehindSourceSeconds is its
	// age: how far the warehouse is behind the source. When nothing waits
	// (BehindSourceAtMost), it is an upper bound: ingest lands no batch
	// while the source is quiet, so a later look may have found nothing.
	CaughtUpTo          time.Time `json:"caught_up_to,omitzero"`
	BehindSourceSeconds float64   `json:"behind_source_seconds,omitempty"`
	BehindSourceAtMost  bool      `json:"behind_source_at_most,omitempty"`
	// History is the lag of the recent loads, newest first.
	History []Lag `json:"freshness_history,omitempty"`
	// Rejected counts the rows transform set aside, by source table and
	// kind (bad_value: final; missing_reference: parked until it arrives);
	// `sandstone rejects` lists them.
	Rejected map[string]map[string]int64 `json:"rejected,omitempty"`
	// Parked counts the rows waiting for a missing reference; the oldest
	// has waited OldestParkedSeconds.
	Parked              *int64  `json:"parked"`
	OldestParkedSeconds float64 `json:"oldest_parked_seconds,omitempty"`
	// LastAudit is the newest audit report in the ingestion bucket.
	LastAudit *audit.Report `json:"last_audit,omitempty"`
	// Alerts is the alert state `sandstone run` saved, if any.
	Alerts *alert.State `json:"alerts,omitempty"`
	// Stages is each stage's state and last batch.
	Stages []StageState `json:"stages"`
	// Loads are the batches loaded in the window (Options.Window), oldest
	// first; Behind is how far the warehouse was behind the source over it.
	Loads  []warehouse.LedgerEntry `json:"loads,omitempty"`
	Behind []BehindPoint           `json:"behind_source_history,omitempty"`
	// Sales is the warehouse's sales value by month and currency
	// (Options.Sales).
	Sales []warehouse.Sales `json:"sales,omitempty"`
	// SlotLagBytes is how much WAL log-based capture's replication slot
	// holds back on the source's disk (Slot.RetainedBytes); nil unless
	// the configuration captures from the WAL and the slot exists. Slot
	// is the rest of what the source says of it.
	SlotLagBytes *int64      `json:"slot_lag_bytes,omitempty"`
	Slot         *ingest.Lag `json:"replication_slot,omitempty"`
	// Notes says what is not there yet (a bucket nothing has been written
	// to, a warehouse never loaded): not a problem on a fresh setup.
	Notes []string `json:"notes,omitempty"`
	// Problems lists what could not be read, and the buckets and the
	// warehouse's ledger disagreeing; the text leads with them, and
	// `sandstone status` exits non-zero when there is one.
	Problems []string `json:"problems,omitempty"`
}

// Lag is how long one loaded batch's newest change took to arrive.
type Lag struct {
	Batch      string    `json:"batch"`
	LoadedAt   time.Time `json:"loaded_at"`
	LagSeconds float64   `json:"lag_seconds"`
}

// gathering is a report being gathered from one configuration.
type gathering struct {
	*Report
	cfg  config.Config
	opts Options
	// absent counts the buckets whose directory does not exist.
	absent int
}

// Gather reads the status, and only reads: a bucket's directory that does
// not exist is not created but noted as having no batches yet. What cannot
// be read (an unreachable warehouse, say) is listed in Problems, its
// counts left unknown, rather than failing the whole report, as is a
// processed bucket that does not hold the batches the warehouse's ledger
// records, and nothing configured at all.
func Gather(ctx context.Context, cfg config.Config, alertState string) Report {
	return GatherWith(ctx, cfg, Options{AlertState: alertState})
}

// GatherWith is Gather with the options of the status page.
func GatherWith(ctx context.Context, cfg config.Config, opts Options) Report {
	r := Report{At: time.Now().UTC()}
	g := &gathering{Report: &r, cfg: cfg, opts: opts}
	in := g.ingested(ctx)
	if in != nil {
		defer func() { _ = in.Close() }()
	}
	out := g.processed(ctx, in)
	if out != nil {
		defer func() { _ = out.Close() }()
	}
	r.PendingTransform = minus(r.IngestedBatch, r.ProcessedBatch)
	g.warehouse(ctx, out)
	g.slot(ctx)
	var err error
	if r.Alerts, err = alert.ReadState(opts.AlertState); err != nil {
		g.problem("alert state", err)
	}
	g.stages(createdAt(ctx, in, r.IngestedBatch), createdAt(ctx, out, r.ProcessedBatch))
	return r
}

// problem records what could not be read, and why.
func (g *gathering) problem(what string, err error) {
	g.Problems = append(g.Problems, fmt.Sprintf("%s: %s", what, config.Redact(err.Error())))
}

// open opens the bucket at url without creating it: nil, with a note, when
// its directory does not exist; nil, with a problem, when it cannot be
// opened.
func (g *gathering) open(ctx context.Context, what, url string) *lake.Bucket {
	b, err := lake.OpenExisting(ctx, url)
	switch {
	case errors.Is(err, lake.ErrNoBucket):
		g.absent++
		g.Notes = append(g.Notes, fmt.Sprintf("%s: %s", what, config.Redact(err.Error())))
	case err != nil:
		g.problem(what, err)
	}
	return b
}

// ingested reads ingest's progress and the last audit from the ingestion
// bucket, which it returns open (nil when it is not there).
func (g *gathering) ingested(ctx context.Context) *lake.Bucket {
	absent := g.absent
	in := g.open(ctx, "ingestion bucket", g.cfg.IngestBucket)
	if in == nil {
		if g.absent > absent {
			g.IngestedBatch = known(0)
		}
		return nil
	}
	seq, st, err := ingest.LoadState(ctx, in)
	if err != nil {
		g.problem("ingestion bucket", err)
	} else {
		g.IngestedBatch = known(seq)
	}
	g.Tables = st.Tables
	for _, t := range st.Tables {
		if t.Watermark.After(g.SourceLastChange) && t.Watermark.Year() < 9999 {
			g.SourceLastChange = t.Watermark.UTC()
		}
	}
	if g.LastAudit, err = audit.Latest(ctx, in); err != nil {
		g.problem("audit report", err)
	}
	return in
}

// processed reads the processed bucket's newest batch and rejects, and
// checks it against the ingestion bucket in; it returns it open (nil when
// it is not there).
func (g *gathering) processed(ctx context.Context, in *lake.Bucket) *lake.Bucket {
	absent := g.absent
	out := g.open(ctx, "processed bucket", g.cfg.ProcessedBucket)
	if out == nil {
		if g.absent > absent {
			g.ProcessedBatch, g.Parked = known(0), known(0)
		}
		return nil
	}
	if seq, err := out.LatestSeq(ctx); err != nil {
		g.problem("processed bucket", err)
	} else {
		g.ProcessedBatch = known(seq)
	}
	if err := g.rejects(ctx, out); err != nil {
		g.problem("rejected rows", err)
	}
	if in != nil {
		if err := transform.CheckSource(ctx, in, out); err != nil {
			g.problem("ingestion and processed buckets disagree", err)
		}
	}
	return out
}

// warehouse reads the warehouse and checks its ledger against the
// processed bucket out.
func (g *gathering) warehouse(ctx context.Context, out *lake.Bucket) {
	const setting = "--warehouse or " + config.EnvWarehouse
	switch {
	case g.cfg.WarehouseURL == "" && g.absent == 2:
		g.Problems = append(g.Problems, fmt.Sprintf("nothing configured: no warehouse URL (set %s) and neither bucket exists "+
			"(ingestion bucket %s: --ingest-bucket or %s; processed bucket %s: --processed-bucket or %s)",
			setting, g.cfg.IngestBucket, config.EnvIngestBucket, g.cfg.ProcessedBucket, config.EnvProcessedBucket))
		return
	case g.cfg.WarehouseURL == "":
		g.Problems = append(g.Problems, "warehouse: no URL configured (set "+setting+")")
		return
	}
	wh, err := warehouse.Open(ctx, g.cfg.WarehouseURL, g.cfg.WarehouseSchema)
	if err != nil {
		g.problem("warehouse", err)
		return
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	switch err := g.readWarehouse(ctx, wh); {
	case err != nil:
		g.Counts, g.LoadedBatch, g.PendingLoad = nil, nil, nil
		g.problem("warehouse", err)
	case *g.LoadedBatch == 0:
	case out == nil:
		g.Problems = append(g.Problems, fmt.Sprintf("processed bucket: the warehouse has loaded batches up to %s, and the processed bucket %s has none: "+
			"point --processed-bucket at the bucket this warehouse was loaded from", lake.BatchID(*g.LoadedBatch), g.cfg.ProcessedBucket))
	default:
		if err := wh.CheckProcessed(ctx, out); err != nil {
			g.problem("processed bucket and warehouse ledger disagree", err)
			return
		}
		g.caughtUp(ctx, out)
		if g.opts.Window > 0 {
			if err := g.history(ctx, wh, out); err != nil {
				g.problem("warehouse history", err)
			}
		}
	}
	if g.opts.Sales && g.LoadedBatch != nil {
		if err := g.sales(ctx, wh); err != nil {
			g.problem("sales", err)
		}
	}
}

// known is n, known.
func known(n int64) *int64 { return &n }

// minus is how many batches of a wait for b (never fewer than none);
// unknown when either is.
func minus(a, b *int64) *int64 {
	if a == nil || b == nil {
		return nil
	}
	return known(max(0, *a-*b))
}

// caughtUp sets how far the warehouse is behind the source, from the
// snapshot of the newest loaded batch.
func (r *Report) caughtUp(ctx context.Context, out *lake.Bucket) {
	var m lake.Manifest
	if out.ReadManifest(ctx, *r.LoadedBatch, &m) != nil || m.SnapshotAt.IsZero() {
		return
	}
	r.CaughtUpTo = m.SnapshotAt.UTC()
	r.BehindSourceSeconds = warehouse.BehindSource(r.CaughtUpTo, r.At).Seconds()
	r.BehindSourceAtMost = r.PendingTransform != nil && *r.PendingTransform == 0 && r.PendingLoad != nil && *r.PendingLoad == 0
}

// rejects counts the rows transform set aside and those still parked.
func (r *Report) rejects(ctx context.Context, b *lake.Bucket) error {
	err := transform.Rejects(ctx, b, func(rj transform.Reject) error {
		if r.Rejected == nil {
			r.Rejected = map[string]map[string]int64{}
		}
		if r.Rejected[rj.Table] == nil {
			r.Rejected[rj.Table] = map[string]int64{}
		}
		r.Rejected[rj.Table][rj.Kind]++
		return nil
	})
	if err != nil {
		return err
	}
	if r.ProcessedBatch == nil || *r.ProcessedBatch == 0 {
		r.Parked = known(0)
		return nil
	}
	parked, err := transform.ParkedRows(ctx, b)
	if err != nil {
		return err
	}
	r.Parked = known(int64(len(parked)))
	for _, p := range parked {
		if !p.SinceAt.IsZero() {
			r.OldestParkedSeconds = max(r.OldestParkedSeconds, r.At.Sub(p.SinceAt).Seconds())
		}
	}
	return nil
}

// readWarehouse reads the warehouse's row counts, the lag of its recent
// loads and its newest batch.
func (g *gathering) readWarehouse(ctx context.Context, wh *warehouse.Warehouse) error {
	r := g.Report
	recent, err := wh.Freshness(ctx, 10)
	if err != nil {
		return err
	}
	for _, e := range recent {
		r.History = append(r.History, Lag{Batch: e.Batch, LoadedAt: e.LoadedAt, LagSeconds: e.Lag.Seconds()})
	}
	r.LoadedBatch = known(0)
	if len(recent) > 0 {
		last := recent[0]
		r.LastLoad, r.LoadedBatch = &last, known(last.Sequence)
		if !last.SourceNewest.IsZero() {
			r.FreshnessSeconds = r.At.Sub(last.SourceNewest).Seconds()
		}
	}
	r.PendingLoad = minus(r.ProcessedBatch, r.LoadedBatch)
	if r.Counts, err = g.counts(ctx, wh); err != nil {
		return err
	}
	if len(r.Counts) == 0 {
		r.Counts = nil
		schema := g.cfg.WarehouseSchema
		if schema == "" {
			schema = config.DefaultSchema
		}
		r.Notes = append(r.Notes, fmt.Sprintf("warehouse: no Sandstone tables in schema %s yet (nothing loaded: 'sandstone load' creates them)", schema))
	}
	return nil
}

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: the problems first, then times
// in UTC, durations in one notation (see dur), sections and lines in a
// fixed order, "unknown" for what could not be read.
func (r Report) WriteText(w io.Writer) error {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format+"\n", args...) }
	for _, pr := range r.Problems {
		p("problem: %s", pr)
	}
	if len(r.Problems) > 0 {
		p("")
	}
	p("Status at %s", stamp(r.At))
	r.writeStages(p)
	p("\nSource tables (ingest; times UTC):")
	p("  %-16s %-23s %-23s %s", "table", "newest last_updated", "last landed", "batch")
	for _, t := range slices.Sorted(maps.Keys(r.Tables)) {
		s := r.Tables[t]
		p("  %-16s %-23s %-23s %s", t, clock(s.Watermark), clock(s.LandedAt), s.Batch)
	}
	for _, t := range slices.Sorted(maps.Keys(r.Tables)) {
		if s := r.Tables[t]; s.Skew != 0 {
			dir := "behind"
			if s.Skew > 0 {
				dir = "ahead of"
			}
			p("  clock: %s.last_updated runs %s %s the source's clock, more than the lookback", t, dur(s.Skew.Abs()), dir)
		}
		if s := r.Tables[t]; s.Unindexed > 0 {
			p("  cost: %s has no index on last_updated, so every ingest reads all of its %d rows; this makes it read only the changes: %s",
				t, s.Unindexed, ingest.IndexAdvice(t))
		}
	}
	p("\nBatches: ingested %s, processed %s, loaded %s", count(r.IngestedBatch), count(r.ProcessedBatch), count(r.LoadedBatch))
	p("Waiting: %s for transform, %s for load", count(r.PendingTransform), count(r.PendingLoad))
	if r.LastLoad != nil {
		p("Last load: batch %s at %s, took %s", r.LastLoad.Batch, stamp(r.LastLoad.LoadedAt), dur(seconds(r.LastLoad.Seconds)))
	}
	r.writeFreshness(p)
	if r.LoadedBatch == nil {
		p("\nWarehouse rows: unknown")
	}
	if r.Counts != nil {
		p("\nWarehouse rows:")
		for _, t := range star.Tables {
			p("  %-20s %9d", t.Name, r.Counts[t.Name])
		}
	}
	r.writeSales(p)
	parked := r.Parked != nil && *r.Parked > 0
	if len(r.Rejected) > 0 || parked {
		p("\nRejected rows (sandstone rejects lists them):")
		for _, t := range slices.Sorted(maps.Keys(r.Rejected)) {
			p("  %-16s %d bad_value, %d missing_reference", t, r.Rejected[t]["bad_value"], r.Rejected[t]["missing_reference"])
		}
		if parked {
			p("  %d parked, waiting for a row they refer to; the oldest for %s", *r.Parked, dur(seconds(r.OldestParkedSeconds)))
		}
	}
	if a := r.LastAudit; a != nil {
		p("\nLast audit: %s, against ingested batch %s: %s", stamp(a.At), a.Batch, a.Summary())
		if a.Repaired != nil {
			p("  repaired in ingested batch %s", a.Repaired.Batch)
		}
	}
	if r.Alerts != nil {
		p("\nAlerts:")
		if len(r.Alerts.Stages) == 0 {
			p("  none")
		}
		for _, stage := range slices.Sorted(maps.Keys(r.Alerts.Stages)) {
			if s := r.Alerts.Stages[stage]; s.Failing {
				p("  %s: FAILING since %s (%s, %d failures): %s", stage, stamp(s.FailingSince), s.Kind, s.Failures, s.Error)
			} else {
				p("  %s: ok", stage)
			}
		}
	}
	for _, n := range r.Notes {
		p("note: %s", n)
	}
	return nil
}

// writeStages writes each stage's state and last batch, and the slot's
// lag when log-based capture reports it.
func (r Report) writeStages(p func(string, ...any)) {
	if len(r.Stages) > 0 {
		p("\nStages (state from the alert state 'sandstone run' keeps; times UTC):")
		p("  %-10s %-8s %-23s %s", "stage", "state", "last batch at", "batch")
	}
	for _, s := range r.Stages {
		p("  %-10s %-8s %-23s %s", s.Stage, s.State, clock(s.LastRun), or(s.Batch, "-"))
	}
	if r.SlotLagBytes != nil {
		line := fmt.Sprintf("  replication slot lag: %d bytes", *r.SlotLagBytes)
		if r.Slot != nil {
			line += " (" + slotSummary(r.Slot) + ")"
		}
		p("%s", line)
	}
}

// writeSales writes the warehouse's sales value by month and currency,
// when gathered.
func (r Report) writeSales(p func(string, ...any)) {
	if len(r.Sales) == 0 {
		return
	}
	p("\nSales value (units sold x unit price of each order's current version, deleted orders left out):")
	for _, s := range r.Sales {
		p("  %s %-4s %15.2f", s.Month, s.Currency, s.Value)
	}
}

// or is s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// writeFreshness writes the two sides of freshness: how far the warehouse
// is behind the source (the pipeline's lag), and when the source last
// changed (a quiet source is not a late pipeline).
func (r Report) writeFreshness(p func(string, ...any)) {
	if r.CaughtUpTo.IsZero() && r.SourceLastChange.IsZero() {
		return
	}
	p("\nFreshness:")
	if !r.CaughtUpTo.IsZero() {
		behind := dur(seconds(r.BehindSourceSeconds))
		if r.BehindSourceAtMost {
			behind = "at most " + behind + " (nothing waits; while the source is quiet ingest lands no batch)"
		}
		p("  behind the source:   %s", behind)
		p("  caught up to:        %s (the snapshot of loaded batch %s: every change made before it is in the warehouse)",
			stamp(r.CaughtUpTo), lake.BatchID(*r.LoadedBatch))
	}
	if !r.SourceLastChange.IsZero() {
		p("  source last changed: %s (%s ago; the newest last_updated ingested)", stamp(r.SourceLastChange), dur(r.At.Sub(r.SourceLastChange)))
	}
	if len(r.History) > 0 {
		p("  recent loads (newest source change of the batch -> in the warehouse):")
		for _, h := range r.History {
			p("    batch %s at %s: %s", h.Batch, stamp(h.LoadedAt), dur(seconds(h.LagSeconds)))
		}
	}
}

// count writes a count, "unknown" when it could not be read.
func count(n *int64) string {
	if n == nil {
		return "unknown"
	}
	return strconv.FormatInt(*n, 10)
}

// dur writes every duration of the report the same way: tenths of a
// second below a minute, whole seconds above (1.5s, 4m12s, 2h0m5s).
func dur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// stamp writes a time in UTC, labelled.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return clock(t) + " UTC"
}

// clock writes a time in UTC, for a column labelled UTC.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}
