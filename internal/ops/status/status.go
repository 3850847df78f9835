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

// Report is the status of an installation.
type Report struct {
	At time.Time `json:"at"`
	// Tables is ingest's progress per source table.
	Tables map[string]*ingest.TableState `json:"source_tables"`
	// Batches is the newest batch of each stage.
	IngestedBatch    int64 `json:"ingested_batch"`
	ProcessedBatch   int64 `json:"processed_batch"`
	LoadedBatch      int64 `json:"loaded_batch"`
	PendingTransform int64 `json:"pending_transform"`
	PendingLoad      int64 `json:"pending_load"`
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
	Parked              int64   `json:"parked"`
	OldestParkedSeconds float64 `json:"oldest_parked_seconds,omitempty"`
	// LastAudit is the newest audit report in the ingestion bucket.
	LastAudit *audit.Report `json:"last_audit,omitempty"`
	// Alerts is the alert state `sandstone run` saved, if any.
	Alerts *alert.State `json:"alerts,omitempty"`
	// Notes says what is not there yet (a bucket nothing has been written
	// to, a warehouse never loaded): not a problem on a fresh setup.
	Notes []string `json:"notes,omitempty"`
	// Problems lists what could not be read, and the buckets and the
	// warehouse's ledger disagreeing.
	Problems []string `json:"problems,omitempty"`
}

// Lag is how long one loaded batch's newest change took to arrive.
type Lag struct {
	Batch      string    `json:"batch"`
	LoadedAt   time.Time `json:"loaded_at"`
	LagSeconds float64   `json:"lag_seconds"`
}

// Gather reads the status, and only reads: a bucket's directory that does
// not exist is not created but noted as having no batches yet. What cannot
// be read (an unreachable warehouse, say) is listed in Problems rather than
// failing the whole report, as is a processed bucket that does not hold the
// batches the warehouse's ledger records.
func Gather(ctx context.Context, cfg config.Config, alertState string) Report {
	r := Report{At: time.Now().UTC()}
	problem := func(what string, err error) {
		r.Problems = append(r.Problems, fmt.Sprintf("%s: %s", what, config.Redact(err.Error())))
	}
	open := func(what, url string) *lake.Bucket {
		b, err := lake.OpenExisting(ctx, url)
		switch {
		case errors.Is(err, lake.ErrNoBucket):
			r.Notes = append(r.Notes, fmt.Sprintf("%s: %s", what, config.Redact(err.Error())))
		case err != nil:
			problem(what, err)
		}
		return b
	}
	var ingested, out *lake.Bucket
	if in := open("ingestion bucket", cfg.IngestBucket); in != nil {
		seq, st, err := ingest.LoadState(ctx, in)
		if err != nil {
			problem("ingestion bucket", err)
		}
		r.IngestedBatch, r.Tables = seq, st.Tables
		for _, t := range st.Tables {
			if t.Watermark.After(r.SourceLastChange) && t.Watermark.Year() < 9999 {
				r.SourceLastChange = t.Watermark.UTC()
			}
		}
		if r.LastAudit, err = audit.Latest(ctx, in); err != nil {
			problem("audit report", err)
		}
		defer func() { _ = in.Close() }()
		ingested = in
	}
	if out = open("processed bucket", cfg.ProcessedBucket); out != nil {
		var err error
		if r.ProcessedBatch, err = out.LatestSeq(ctx); err != nil {
			problem("processed bucket", err)
		}
		if err := r.rejects(ctx, out); err != nil {
			problem("rejected rows", err)
		}
		if ingested != nil {
			if err := transform.CheckSource(ctx, ingested, out); err != nil {
				problem("ingestion and processed buckets disagree", err)
			}
		}
		defer func() { _ = out.Close() }()
	}
	r.PendingTransform = max(0, r.IngestedBatch-r.ProcessedBatch)
	var wh *warehouse.Warehouse
	var whErr error
	if cfg.WarehouseURL != "" {
		if wh, whErr = warehouse.Open(ctx, cfg.WarehouseURL, cfg.WarehouseSchema); whErr == nil {
			defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
		}
	}
	if cfg.WarehouseURL == "" {
		r.Problems = append(r.Problems, "warehouse: no URL configured")
	} else if whErr != nil {
		problem("warehouse", whErr)
	} else if err := r.warehouse(ctx, cfg, wh); err != nil {
		problem("warehouse", err)
	} else if r.LoadedBatch > 0 {
		if out == nil {
			r.Problems = append(r.Problems, fmt.Sprintf("processed bucket: the warehouse has loaded batches up to %s, and the processed bucket %s has none: "+
				"point --processed-bucket at the bucket this warehouse was loaded from", lake.BatchID(r.LoadedBatch), cfg.ProcessedBucket))
		} else if err := wh.CheckProcessed(ctx, out); err != nil {
			problem("processed bucket and warehouse ledger disagree", err)
		} else {
			r.caughtUp(ctx, out)
		}
	}
	var err error
	if r.Alerts, err = alert.ReadState(alertState); err != nil {
		problem("alert state", err)
	}
	return r
}

// caughtUp sets how far the warehouse is behind the source, from the
// snapshot of the newest loaded batch.
func (r *Report) caughtUp(ctx context.Context, out *lake.Bucket) {
	var m lake.Manifest
	if out.ReadManifest(ctx, r.LoadedBatch, &m) != nil || m.SnapshotAt.IsZero() {
		return
	}
	r.CaughtUpTo = m.SnapshotAt.UTC()
	r.BehindSourceSeconds = warehouse.BehindSource(r.CaughtUpTo, r.At).Seconds()
	r.BehindSourceAtMost = r.PendingTransform == 0 && r.PendingLoad == 0
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
	if err != nil || r.ProcessedBatch == 0 {
		return err
	}
	parked, err := transform.ParkedRows(ctx, b)
	if err != nil {
		return err
	}
	r.Parked = int64(len(parked))
	for _, p := range parked {
		if !p.SinceAt.IsZero() {
			r.OldestParkedSeconds = max(r.OldestParkedSeconds, r.At.Sub(p.SinceAt).Seconds())
		}
	}
	return nil
}

func (r *Report) warehouse(ctx context.Context, cfg config.Config, wh *warehouse.Warehouse) error {
	var err error
	if r.Counts, err = wh.Counts(ctx); err != nil {
		return err
	}
	if len(r.Counts) == 0 {
		r.Counts = nil
		schema := cfg.WarehouseSchema
		if schema == "" {
			schema = config.DefaultSchema
		}
		r.Notes = append(r.Notes, fmt.Sprintf("warehouse: no Sandstone tables in schema %s yet (nothing loaded: 'sandstone load' creates them)", schema))
	}
	recent, err := wh.Freshness(ctx, 10)
	if err != nil {
		return err
	}
	for _, e := range recent {
		r.History = append(r.History, Lag{Batch: e.Batch, LoadedAt: e.LoadedAt, LagSeconds: e.Lag.Seconds()})
	}
	if len(recent) > 0 {
		last := recent[0]
		r.LastLoad, r.LoadedBatch = &last, last.Sequence
		if !last.SourceNewest.IsZero() {
			r.FreshnessSeconds = r.At.Sub(last.SourceNewest).Seconds()
		}
	}
	r.PendingLoad = max(0, r.ProcessedBatch-r.LoadedBatch)
	return nil
}

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: times in UTC, durations in one
// notation (see dur), sections and lines in a fixed order.
func (r Report) WriteText(w io.Writer) error {
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format+"\n", args...) }
	p("Status at %s", stamp(r.At))
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
	p("\nBatches: ingested %d, processed %d, loaded %d", r.IngestedBatch, r.ProcessedBatch, r.LoadedBatch)
	p("Waiting: %d for transform, %d for load", r.PendingTransform, r.PendingLoad)
	if r.LastLoad != nil {
		p("Last load: batch %s at %s, took %s", r.LastLoad.Batch, stamp(r.LastLoad.LoadedAt), dur(seconds(r.LastLoad.Seconds)))
	}
	r.writeFreshness(p)
	if r.Counts != nil {
		p("\nWarehouse rows:")
		for _, t := range star.Tables {
			p("  %-20s %9d", t.Name, r.Counts[t.Name])
		}
	}
	if len(r.Rejected) > 0 || r.Parked > 0 {
		p("\nRejected rows (sandstone rejects lists them):")
		for _, t := range slices.Sorted(maps.Keys(r.Rejected)) {
			p("  %-16s %d bad_value, %d missing_reference", t, r.Rejected[t]["bad_value"], r.Rejected[t]["missing_reference"])
		}
		if r.Parked > 0 {
			p("  %d parked, waiting for a row they refer to; the oldest for %s", r.Parked, dur(seconds(r.OldestParkedSeconds)))
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
	for _, pr := range r.Problems {
		p("problem: %s", pr)
	}
	return nil
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
			stamp(r.CaughtUpTo), lake.BatchID(r.LoadedBatch))
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
