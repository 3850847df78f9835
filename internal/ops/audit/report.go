package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// ReportPrefix is where audits keep their reports in the ingestion bucket,
// one write-once object each, keys sorting by time.
const ReportPrefix = "audits/"

// The kinds of drift, as metrics and alerts name them: source rows missing
// from the lake or deleted from the source; warehouse rows missing,
// duplicated or stale against the processed bucket.
const (
	KindMissing    = "missing"
	KindDeleted    = "deleted"
	KindDuplicated = "duplicated"
	KindStale      = "stale"
)

// DriftRows counts the drift per table and kind; every table audited
// appears, with zeros when it agrees. Source tables count missing and
// deleted, warehouse tables missing, duplicated and stale.
func (r *Report) DriftRows() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for name, t := range r.Tables {
		out[name] = map[string]int64{KindMissing: t.Missing, KindDeleted: t.Deleted}
	}
	for name, t := range r.Warehouse {
		out[name] = map[string]int64{KindMissing: t.Missing, KindDuplicated: t.Duplicated, KindStale: t.Stale}
	}
	return out
}

// SourceDrift is the source's drift in total, over every table: rows
// missing from the lake and ids deleted from the source.
func (r *Report) SourceDrift() (missing, deleted int64) {
	for _, t := range r.Tables {
		missing += t.Missing
		deleted += t.Deleted
	}
	return missing, deleted
}

// WarehouseDrift is the warehouse's drift in total, over every table: rows
// missing, duplicated and stale against the processed bucket.
func (r *Report) WarehouseDrift() int64 {
	var n int64
	for _, t := range r.Warehouse {
		n += t.Missing + t.Duplicated + t.Stale
	}
	return n
}

// Summary is a one-line account of the drift, for logs and alerts.
func (r *Report) Summary() string {
	if !r.Drift {
		if r.Warehouse != nil {
			return "the source, the lake and the warehouse agree"
		}
		return "the source and the ingestion bucket agree"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(r.Tables)) {
		t := r.Tables[name]
		if t.Missing > 0 {
			parts = append(parts, fmt.Sprintf("%s %d missing (ids %s)", name, t.Missing, JoinIDs(t.MissingExamples)))
		}
		if t.Deleted > 0 {
			parts = append(parts, fmt.Sprintf("%s %d deleted (ids %s)", name, t.Deleted, JoinIDs(t.DeletedExamples)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Warehouse)) {
		t := r.Warehouse[name]
		if t.drift() {
			parts = append(parts, fmt.Sprintf("warehouse %s %d missing, %d duplicated, %d stale (ids %s)",
				name, t.Missing, t.Duplicated, t.Stale, JoinIDs(t.Examples)))
		}
	}
	return "drift: " + strings.Join(parts, "; ")
}

// JoinIDs writes ids as "1, 2, 3".
func JoinIDs(ids []int32) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	return strings.Join(parts, ", ")
}

// Save writes r to the ingestion bucket, where Latest and sandstone status
// find it.
func Save(ctx context.Context, b *lake.Bucket, r Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("save audit: %w", err)
	}
	key := ReportPrefix + r.At.UTC().Format("2006/01/02/20060102T150405.000000Z") + ".json"
	if err := b.Put(ctx, key, data); err != nil {
		return fmt.Errorf("save audit: %w", err)
	}
	return nil
}

// Latest reads the newest audit report in the ingestion bucket (not a
// checkpoint); nil when there is none.
func Latest(ctx context.Context, b *lake.Bucket) (*Report, error) {
	all, err := b.List(ctx, ReportPrefix, "")
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range all {
		if !strings.HasPrefix(k, CheckpointPrefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	sort.Strings(keys)
	data, err := b.Get(ctx, keys[len(keys)-1])
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("audit report %s: %w", keys[len(keys)-1], err)
	}
	return &r, nil
}
