package pipeline

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// Report is what one run of one stage did.
type Report struct {
	Stage   string
	RunID   string
	Batches []string
	// Rows and Bytes count what the stage wrote, per table.
	Rows     map[string]int64
	Bytes    map[string]int64
	Duration time.Duration
	// Freshness is set by load: the age of the newest source change when
	// it arrived in the warehouse.
	Freshness time.Duration
	// SnapshotAt is, for ingest, when it began reading its snapshot (this
	// machine's clock; set on success, whether or not anything was new);
	// for load, when the snapshot of the newest batch it loaded was taken.
	// The warehouse then holds every source change made before it.
	SnapshotAt time.Time
	// SourceNewest is set by ingest: the newest last_updated it landed.
	SourceNewest time.Time
	// Skew is set by ingest: per table, how far its last_updated runs
	// ahead of or behind the source's clock beyond the lookback.
	Skew map[string]time.Duration
	// Rejected counts, per source table and kind (bad_value,
	// missing_reference), the rows transform set aside; Parked the rows
	// waiting for a missing reference after it (transform).
	Rejected map[string]map[string]int64
	Parked   int64
	// Released counts the rows rejected earlier for a missing reference
	// that this run let through (transform).
	Released int64
	// Skipped counts the batches another, concurrent, run applied first
	// (load); Pending the batches left for the next run because the
	// deadline passed (transform, load).
	Skipped int
	Pending int
	// Note is a short human remark (e.g. "nothing new").
	Note string
}

// Rejects is the number of rows rejected, over every table.
func (r Report) Rejects() int64 {
	var n int64
	for _, kinds := range r.Rejected {
		for _, v := range kinds {
			n += v
		}
	}
	return n
}

// Total is the number of rows the stage wrote.
func (r Report) Total() int64 {
	var n int64
	for _, v := range r.Rows {
		n += v
	}
	return n
}

// Write prints what the stage run did for a person: a line, then the rows
// per table. It is the one printer of stage results.
func (r Report) Write(w io.Writer) {
	line := fmt.Sprintf("%-9s %8d rows  %6.2fs", r.Stage, r.Total(), r.Duration.Seconds())
	switch n := len(r.Batches); {
	case n == 1:
		line += "  batch " + r.Batches[0]
	case n > 1:
		line += fmt.Sprintf("  batches %s..%s (%d)", r.Batches[0], r.Batches[n-1], n)
	}
	if r.Freshness > 0 {
		line += fmt.Sprintf("  freshness %s", r.Freshness.Round(100*time.Millisecond))
	}
	if rejected := r.Rejects(); rejected > 0 || r.Parked > 0 || r.Released > 0 {
		line += fmt.Sprintf("  rejected %d, parked %d", rejected, r.Parked)
		if r.Released > 0 {
			line += fmt.Sprintf(", released %d", r.Released)
		}
		line += " (sandstone rejects lists them)"
	}
	if r.Skipped > 0 {
		line += fmt.Sprintf("  %d already loaded by another run", r.Skipped)
	}
	if r.Note != "" {
		line += "  (" + r.Note + ")"
	}
	_, _ = fmt.Fprintln(w, line)
	printTables(w, r.Rows)
}

// printTables prints the tables with rows, by name, one a line.
func printTables(w io.Writer, rows map[string]int64) {
	tables := make([]string, 0, len(rows))
	for t, n := range rows {
		if n > 0 {
			tables = append(tables, t)
		}
	}
	sort.Strings(tables)
	for _, t := range tables {
		_, _ = fmt.Fprintf(w, "  %-20s %9d\n", t, rows[t])
	}
}
