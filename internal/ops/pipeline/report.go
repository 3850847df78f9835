package pipeline

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// Report is what one run of one stage did: what every stage reports, then
// each stage's own detail, left zero by the others.
type Report struct {
	Stage   string
	RunID   string
	Batches []string
	// Rows counts what the stage wrote, per table.
	Rows     map[string]int64
	Duration time.Duration
	// SnapshotAt is, for ingest, when it began reading its snapshot (this
	// machine's clock; set on success, whether or not anything was new);
	// for load, when the snapshot of the newest batch it loaded was taken.
	// The warehouse then holds every source change made before it.
	SnapshotAt time.Time
	// Note is a short human remark (e.g. "nothing new").
	Note string

	IngestReport
	TransformReport
	LoadReport
}

// IngestReport is what ingest alone reports.
type IngestReport struct {
	// Bytes counts the bytes landed, over every table ("all").
	Bytes map[string]int64
	// SourceNewest is the newest last_updated landed.
	SourceNewest time.Time
	// Skew is, per table, how far its last_updated runs ahead of or behind
	// the source's clock beyond the lookback.
	Skew map[string]time.Duration
}

// TransformReport is what transform alone reports.
type TransformReport struct {
	// Rejected counts, per source table and kind (bad_value,
	// missing_reference), the rows set aside; Parked the rows waiting for
	// a missing reference after the run.
	Rejected map[string]map[string]int64
	Parked   int64
	// Released counts the rows rejected earlier for a missing reference
	// that this run let through.
	Released int64
}

// LoadReport is what load alone reports.
type LoadReport struct {
	// Freshness is the age of the newest source change when it arrived in
	// the warehouse.
	Freshness time.Duration
	// Skipped counts the batches another, concurrent, run applied first;
	// Pending the batches left for the next run because the deadline
	// passed.
	Skipped int
	Pending int
}

// Rejects is the number of rows rejected, over every table.
func (r TransformReport) Rejects() int64 {
	var n int64
	for _, kinds := range r.Rejected {
		for _, v := range kinds {
			n += v
		}
	}
	return n
}

// reject counts n more rows of table rejected for kind.
func (r *TransformReport) reject(table, kind string, n int64) {
	if r.Rejected == nil {
		r.Rejected = map[string]map[string]int64{}
	}
	if r.Rejected[table] == nil {
		r.Rejected[table] = map[string]int64{}
	}
	r.Rejected[table][kind] += n
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
