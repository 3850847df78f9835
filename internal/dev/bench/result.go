package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cycle is one incremental cycle: Changes source rows changed, then the
// three stages run once each. RowsPerSecond is, per stage, the changes over
// its seconds; LoadBatchSeconds is load's own time for the batch (its
// ledger's), without the process's start.
type Cycle struct {
	Changes          int64              `json:"changes"`
	Seconds          float64            `json:"seconds"`
	StageSeconds     map[string]float64 `json:"stage_seconds"`
	PeakRSSMB        map[string]float64 `json:"peak_rss_mb"`
	RowsPerSecond    map[string]float64 `json:"rows_per_second"`
	LoadBatchSeconds float64            `json:"load_batch_seconds"`
	Floor            CycleFloor         `json:"floor"`
	// IngestSourceCPUSeconds is the CPU the source server spent serving
	// the cycle's ingest (see StageRun.SourceCPU).
	IngestSourceCPUSeconds float64 `json:"ingest_source_cpu_seconds"`
}

// set records the cycle's stage runs: its seconds, peak RSS and rows/s
// by stage, and its ingest's source CPU.
func (c *Cycle) set(runs cycleRuns) {
	c.Seconds, c.StageSeconds, c.PeakRSSMB = runs.split()
	for s, sec := range c.StageSeconds {
		c.RowsPerSecond[s] = perSecond(c.Changes, sec)
	}
	for _, r := range runs {
		if r.Stage == "ingest" {
			c.IngestSourceCPUSeconds = r.SourceCPU.Seconds()
		}
	}
}

// perChangedRow returns the cycle's ingest seconds and its source CPU
// seconds per changed row, in microseconds.
func (c Cycle) perChangedRow() (ingestMicros, cpuMicros float64) {
	if c.Changes <= 0 {
		return 0, 0
	}
	n := float64(c.Changes)
	return c.StageSeconds["ingest"] * 1e6 / n, c.IngestSourceCPUSeconds * 1e6 / n
}

// CycleFloor is what PostgreSQL alone needs for an incremental cycle's
// work, measured after it on the same servers: reading the rows its
// ingest had to read (ReadSeconds, ReadRows; see measureReadFloor) and
// writing the fact rows its load wrote (WriteSeconds; see
// measureWriteFloor). Ratio is the cycle's seconds over their sum. For
// the wal, StreamSeconds is the same changes sent to a replication client
// (measureStreamFloor), and StreamRatio the cycle's seconds over it and
// the write.
type CycleFloor struct {
	ReadSeconds   float64 `json:"read_seconds"`
	ReadRows      int64   `json:"read_rows"`
	WriteSeconds  float64 `json:"write_seconds"`
	Ratio         float64 `json:"ratio"`
	StreamSeconds float64 `json:"stream_seconds,omitempty"`
	StreamRatio   float64 `json:"stream_ratio,omitempty"`
}

// seconds is the floor: the read and the write added.
func (f CycleFloor) seconds() float64 { return f.ReadSeconds + f.WriteSeconds }

// met reports whether the cycle is within TargetWALCycleFloorRatio of either
// floor.
func (f CycleFloor) met() bool { return withinFloor(f.Ratio) || withinFloor(f.StreamRatio) }

// withinFloor reports whether a ratio to a floor was measured and meets
// TargetWALCycleFloorRatio.
func withinFloor(ratio float64) bool { return ratio > 0 && ratio <= TargetWALCycleFloorRatio }

// Result is what a benchmark measured. Seconds are wall-clock; peak RSS is
// in MiB (2^20 bytes).
type Result struct {
	// Captures are the capture modes measured; the figures below WAL are
	// the poll's (zero when the poll was not measured).
	Captures     []string         `json:"captures"`
	SalesOrders  int              `json:"sales_orders"`
	SourceRows   int64            `json:"source_rows"`
	SourceTables map[string]int64 `json:"source_tables"`
	SeedSeconds  float64          `json:"seed_seconds"`

	// The initial full pipeline, into an empty warehouse.
	PipelineSeconds float64            `json:"pipeline_seconds"`
	StageSeconds    map[string]float64 `json:"stage_seconds"`
	RowsPerSecond   float64            `json:"rows_per_second"`
	PeakRSSMB       map[string]float64 `json:"peak_rss_mb"`
	// WarehouseRows counts the warehouse's rows after it.
	WarehouseRows map[string]int64 `json:"warehouse_rows"`

	// The baseline: the source tables copied with COPY, no transformation.
	BaselineSeconds float64 `json:"baseline_seconds"`
	BaselineRows    int64   `json:"baseline_rows"`
	// Ratio is PipelineSeconds / BaselineSeconds.
	Ratio float64 `json:"ratio"`

	// The incremental cycle after ChangeFraction of the source changed.
	IncrementalChanges      int64              `json:"incremental_changes"`
	IncrementalSeconds      float64            `json:"incremental_seconds"`
	IncrementalStageSeconds map[string]float64 `json:"incremental_stage_seconds"`
	IncrementalPeakRSSMB    map[string]float64 `json:"incremental_peak_rss_mb"`
	// IncrementalRowsPerSecond is, per stage, the changed source rows over
	// its seconds; IncrementalLoadBatchSeconds is load's own time for the
	// batch (its ledger's), without the process's start.
	IncrementalRowsPerSecond    map[string]float64 `json:"incremental_rows_per_second"`
	IncrementalLoadBatchSeconds float64            `json:"incremental_load_batch_seconds"`
	IncrementalFloor            CycleFloor         `json:"incremental_floor"`

	// Indexed is a second incremental cycle, after an index on
	// last_updated was built in every source table (SourceIndexSeconds);
	// nil when not measured.
	Indexed            *Cycle  `json:"indexed,omitempty"`
	SourceIndexSeconds float64 `json:"source_index_seconds,omitempty"`

	// The floor of the incremental load: the fact rows it wrote, written
	// again by COPY alone into the same tables, every key and foreign key
	// checked by PostgreSQL (see measureFloor). LoadFloorRatio is the
	// incremental load's batch seconds over the floor's.
	FloorSeconds       float64 `json:"floor_seconds"`
	FloorRows          int64   `json:"floor_rows"`
	FloorRowsPerSecond float64 `json:"floor_rows_per_second"`
	LoadFloorRatio     float64 `json:"load_floor_ratio"`

	// The initial load in bounded batches of BoundedBatchRows rows (0 when
	// not run), into a schema of its own: the seconds, peak RSS and longest
	// invocation of each stage (see Bounded), and whether it made the same
	// warehouse as the initial pipeline.
	BoundedBatchRows      int64              `json:"bounded_batch_rows"`
	BoundedBatches        int                `json:"bounded_batches"`
	BoundedStageSeconds   map[string]float64 `json:"bounded_stage_seconds"`
	BoundedPeakRSSMB      map[string]float64 `json:"bounded_peak_rss_mb"`
	BoundedLongestSeconds map[string]float64 `json:"bounded_longest_seconds"`
	BoundedEqual          bool               `json:"bounded_equal"`
	BoundedDiffers        []string           `json:"bounded_differs,omitempty"`

	// The audit (`sandstone audit --json`) after the incremental cycle,
	// with two batches landed: its seconds and peak RSS, its exit status
	// (0 when clean), and AuditDrift when it found drift or did not exit
	// 0, which a clean pipeline never should. AuditSourceRows counts the
	// (id, last_updated) pairs it read from the source, AuditLandedVersions
	// those it read from the ingestion bucket. AuditIngestRatio is
	// AuditSeconds over the initial ingest's seconds (which read every
	// column of the same rows).
	AuditSeconds        float64               `json:"audit_seconds"`
	AuditPeakRSSMB      float64               `json:"audit_peak_rss_mb"`
	AuditExitCode       int                   `json:"audit_exit_code"`
	AuditDrift          bool                  `json:"audit_drift"`
	AuditBatch          string                `json:"audit_batch"`
	AuditSourceRows     int64                 `json:"audit_source_rows"`
	AuditLandedVersions int64                 `json:"audit_landed_versions"`
	AuditMissing        int64                 `json:"audit_missing"`
	AuditPending        int64                 `json:"audit_pending"`
	AuditDeleted        int64                 `json:"audit_deleted"`
	AuditTables         map[string]AuditTable `json:"audit_tables"`
	AuditIngestRatio    float64               `json:"audit_ingest_ratio"`
	// The CPU seconds the source server spent serving the initial ingest
	// and the audit (its backends' user and system time; 0 where it
	// cannot be read).
	IngestSourceCPUSeconds float64 `json:"ingest_source_cpu_seconds"`
	AuditSourceCPUSeconds  float64 `json:"audit_source_cpu_seconds"`

	// Freshness of `sandstone run` while the simulator writes.
	FreshnessIntervalSeconds float64 `json:"freshness_interval_seconds"`
	FreshnessChanges         int64   `json:"freshness_changes"`
	FreshnessMeasured        int     `json:"freshness_measured"`
	FreshnessMissing         int64   `json:"freshness_missing"`
	FreshnessP50Seconds      float64 `json:"freshness_p50_seconds"`
	FreshnessP95Seconds      float64 `json:"freshness_p95_seconds"`
	FreshnessMaxSeconds      float64 `json:"freshness_max_seconds"`
	RunPeakRSSMB             float64 `json:"run_peak_rss_mb"`

	// BigTransaction is the poll's cycle after one transaction changed
	// BigTransaction.Changes sales orders (measured with the wal only).
	BigTransaction *Cycle `json:"big_transaction,omitempty"`

	// WAL is what log-based capture measured, when it was.
	WAL *WALResult `json:"wal,omitempty"`

	TotalSeconds float64  `json:"total_seconds"`
	Machine      Machine  `json:"machine"`
	Targets      []Target `json:"targets"`
}

func (r *Result) setBounded(bound int64, b Bounded) {
	r.BoundedBatchRows, r.BoundedBatches = bound, b.Batches
	r.BoundedStageSeconds, r.BoundedPeakRSSMB, r.BoundedLongestSeconds = b.Seconds, b.PeakRSSMB, b.Longest
	r.BoundedEqual, r.BoundedDiffers = b.Equal, b.Differs
}

func (r *Result) setFloor() {
	r.FloorRowsPerSecond = perSecond(r.FloorRows, r.FloorSeconds)
	if r.FloorSeconds > 0 {
		r.LoadFloorRatio = r.IncrementalLoadBatchSeconds / r.FloorSeconds
	}
}

func (r *Result) setFreshness(f Freshness, interval time.Duration) {
	fr := f.result(interval)
	r.FreshnessIntervalSeconds = fr.IntervalSeconds
	r.FreshnessChanges, r.FreshnessMissing, r.FreshnessMeasured = fr.Changes, fr.Missing, fr.Measured
	r.FreshnessP50Seconds, r.FreshnessP95Seconds, r.FreshnessMaxSeconds = fr.P50Seconds, fr.P95Seconds, fr.MaxSeconds
	r.RunPeakRSSMB = fr.RunPeakRSSMB
}

// result summarises the freshness phase of `sandstone run --interval`.
func (f Freshness) result(interval time.Duration) *FreshnessResult {
	return &FreshnessResult{
		IntervalSeconds: interval.Seconds(), Rate: perSecond(f.Changes, f.SimSeconds),
		Changes: f.Changes, Missing: f.Missing, Measured: len(f.Delays),
		P50Seconds: f.Percentile(50).Seconds(), P95Seconds: f.Percentile(95).Seconds(), MaxSeconds: f.Percentile(100).Seconds(),
		RunPeakRSSMB: float64(f.RunPeakRSS) / (1 << 20),
	}
}

// Machine is where a benchmark ran.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryMB   int64  `json:"memory_mb"`
	OS         string `json:"os"`
	PostgreSQL string `json:"postgresql"`
	Go         string `json:"go"`
	Date       string `json:"date"`
	// LoadAverage is /proc/loadavg's 1, 5 and 15 minute figures when the
	// benchmark started: a busy machine makes slower figures.
	LoadAverage string `json:"load_average"`
}

func describeMachine(ctx context.Context, sourceURL string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(),
		Date: time.Now().UTC().Format(time.RFC3339), CPUModel: procField("/proc/cpuinfo", "model name")}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.MemoryMB = kb / 1024
	}
	if conn, err := pgx.Connect(ctx, sourceURL); err == nil {
		_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgreSQL)
		_ = conn.Close(ctx)
	}
	return m
}

// procField returns the value of the first "name: value" line of a /proc
// file ("" when there is none).
func procField(path, name string) string {
	f, err := os.Open(path) // #nosec G304 -- fixed /proc paths
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Target is one of the bars the benchmark is held to.
type Target struct {
	Name string `json:"name"`
	// Want is the bar, Got the figure, both as text.
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// The targets, on the 2-core machines the issue names.
const (
	TargetRowsPerSecond = 200_000
	TargetRatio         = 1.3
	TargetPeakRSSMB     = 200.0
	TargetIncremental   = 1500 * time.Millisecond
	// The incremental load: this many rows/s, or within this much of its
	// floor.
	TargetIncrementalLoadRate = 150_000
	TargetLoadFloorRatio      = 1.3
	TargetAuditPeakRSSMB      = 200.0
	TargetFreshnessP95        = 10 * time.Second
	targetFreshnessEvery      = 5 * time.Second
)

func evaluate(r Result) []Target {
	var ts []Target
	if r.polled() {
		ts = evaluatePoll(r)
	}
	if r.WAL != nil {
		ts = append(ts, r.WAL.evaluate()...)
	}
	return ts
}

// evaluatePoll holds the poll's figures to their targets.
func evaluatePoll(r Result) []Target {
	var peak float64
	var peakStage string
	type phaseRSS struct {
		name string
		m    map[string]float64
	}
	phases := []phaseRSS{{"initial", r.PeakRSSMB}, {"incremental", r.IncrementalPeakRSSMB}, {"bounded", r.BoundedPeakRSSMB}}
	if r.Indexed != nil {
		phases = append(phases, phaseRSS{"indexed", r.Indexed.PeakRSSMB})
	}
	if r.BigTransaction != nil {
		phases = append(phases, phaseRSS{"big transaction", r.BigTransaction.PeakRSSMB})
	}
	for _, phase := range phases {
		for _, s := range Stages {
			if v := phase.m[s]; v > peak {
				peak, peakStage = v, phase.name+" "+s
			}
		}
	}
	ts := []Target{
		{"initial pipeline throughput", fmt.Sprintf(">= %d rows/s", TargetRowsPerSecond),
			fmt.Sprintf("%.0f rows/s", r.RowsPerSecond), r.RowsPerSecond >= TargetRowsPerSecond},
		{"initial pipeline time / baseline time", fmt.Sprintf("<= %.1fx", TargetRatio),
			fmt.Sprintf("%.2fx", r.Ratio), r.Ratio > 0 && r.Ratio <= TargetRatio},
		{"peak RSS of every stage", fmt.Sprintf("< %.0f MB", TargetPeakRSSMB),
			fmt.Sprintf("%.1f MB (%s)", peak, peakStage), peak > 0 && peak < TargetPeakRSSMB},
		{fmt.Sprintf("incremental cycle (%d changed rows)", r.IncrementalChanges), fmt.Sprintf("< %.1fs", TargetIncremental.Seconds()),
			fmt.Sprintf("%.2fs (floor %.2fs)", r.IncrementalSeconds, r.IncrementalFloor.seconds()), r.IncrementalSeconds > 0 && r.IncrementalSeconds < TargetIncremental.Seconds()},
	}
	if c := r.Indexed; c != nil {
		ts = append(ts, Target{fmt.Sprintf("the same, source indexed (%d changed rows)", c.Changes), fmt.Sprintf("< %.1fs", TargetIncremental.Seconds()),
			fmt.Sprintf("%.2fs (floor %.2fs)", c.Seconds, c.Floor.seconds()), c.Seconds > 0 && c.Seconds < TargetIncremental.Seconds()})
	}
	ts = append(ts,
		Target{"incremental load", fmt.Sprintf("> %d rows/s or <= %.1fx the floor", TargetIncrementalLoadRate, TargetLoadFloorRatio),
			fmt.Sprintf("%.0f rows/s, %.2fx", r.IncrementalRowsPerSecond["load"], r.LoadFloorRatio),
			r.IncrementalRowsPerSecond["load"] > TargetIncrementalLoadRate || (r.LoadFloorRatio > 0 && r.LoadFloorRatio <= TargetLoadFloorRatio)})
	if r.BoundedBatchRows > 0 {
		ts = append(ts, Target{fmt.Sprintf("initial load in batches of %d rows", r.BoundedBatchRows), "the same warehouse",
			map[bool]string{true: "the same", false: fmt.Sprintf("DIFFERENT (%s)", strings.Join(r.BoundedDiffers, ", "))}[r.BoundedEqual],
			r.BoundedEqual})
	}
	ts = append(ts,
		Target{"audit of the clean pipeline", "exit 0, no drift", auditVerdict(r), !r.AuditDrift && r.AuditExitCode == 0 && r.AuditSeconds > 0},
		Target{"audit peak RSS", fmt.Sprintf("< %.0f MB", TargetAuditPeakRSSMB),
			fmt.Sprintf("%.1f MB", r.AuditPeakRSSMB), r.AuditPeakRSSMB > 0 && r.AuditPeakRSSMB < TargetAuditPeakRSSMB})
	if r.FreshnessMeasured > 0 {
		ts = append(ts, Target{fmt.Sprintf("freshness p95 (run --interval %gs)", r.FreshnessIntervalSeconds),
			fmt.Sprintf("< %.0fs at a %.0fs interval", TargetFreshnessP95.Seconds(), targetFreshnessEvery.Seconds()),
			fmt.Sprintf("%.2fs", r.FreshnessP95Seconds),
			r.FreshnessMissing == 0 && r.FreshnessP95Seconds < TargetFreshnessP95.Seconds()})
	}
	return ts
}

func auditVerdict(r Result) string {
	if r.AuditDrift {
		return "DRIFT (exit " + strconv.Itoa(r.AuditExitCode) + ")"
	}
	return fmt.Sprintf("clean (%d pending)", r.AuditPending)
}

// WriteJSON writes the result as one indented JSON object.
func (r Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the result as a human-readable table.
func (r Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	m := r.Machine
	p("Sandstone benchmark, %s", m.Date)
	p("machine: %d CPUs (%s), %d MB, %s, PostgreSQL %s, %s, load average %s at the start",
		m.CPUs, m.CPUModel, m.MemoryMB, m.OS, m.PostgreSQL, m.Go, m.LoadAverage)
	p("source:  %d sales orders, %d rows (%s)", r.SalesOrders, r.SourceRows, tableList(r.SourceTables))
	p("")
	p("%-30s %10s %14s %12s", "phase", "seconds", "rows/s", "peak RSS MB")
	p("%-30s %10.2f %14.0f %12s", "baseline (COPY out + COPY in)", r.BaselineSeconds, perSecond(r.BaselineRows, r.BaselineSeconds), "")
	if r.polled() {
		r.writePoll(p)
	}
	if r.WAL != nil {
		r.WAL.write(p, r.SourceRows)
	}
	p("")
	p("%-40s %-26s %-30s %s", "target", "want", "got", "")
	for _, t := range r.Targets {
		verdict := "MISSED"
		if t.Met {
			verdict = "met"
		}
		p("%-40s %-26s %-30s %s", t.Name, t.Want, t.Got, verdict)
	}
	p("total %.1fs", r.TotalSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// polled reports whether the poll was measured (results before the wal
// name no capture).
func (r Result) polled() bool {
	return len(r.Captures) == 0 || slices.Contains(r.Captures, "poll")
}

// writePoll writes the poll's lines of the table.
func (r Result) writePoll(p func(string, ...any)) {
	p("%-30s %10.2f %14.0f %12s", "initial pipeline", r.PipelineSeconds, r.RowsPerSecond, "")
	for _, s := range Stages {
		p("  %-28s %10.2f %14.0f %12.1f", s, r.StageSeconds[s], perSecond(r.SourceRows, r.StageSeconds[s]), r.PeakRSSMB[s])
	}
	writeCycle(p, "incremental", r.incremental(), "PG reads the window")
	p("  %-28s %10.2f %14.0f %12s", "floor (COPY, checked by PG)", r.FloorSeconds, r.FloorRowsPerSecond, "")
	if c := r.Indexed; c != nil {
		writeCycle(p, "indexed source", *c, "PG reads the window")
		p("  %-28s %10.2f %14s %12s", "building the source indexes", r.SourceIndexSeconds, "", "")
	}
	if r.BoundedBatchRows > 0 {
		var total float64
		for _, s := range Stages {
			total += r.BoundedStageSeconds[s]
		}
		p("%-30s %10.2f %14.0f %12s", fmt.Sprintf("bounded initial (%d batches)", r.BoundedBatches), total, perSecond(r.SourceRows, total), "")
		for _, s := range Stages {
			p("  %-28s %10.2f %14s %12.1f", s+fmt.Sprintf(" (longest %.2fs)", r.BoundedLongestSeconds[s]), r.BoundedStageSeconds[s], "", r.BoundedPeakRSSMB[s])
		}
	}
	p("%-30s %10.2f %14.0f %12.1f", "audit (after incremental)", r.AuditSeconds, perSecond(r.AuditSourceRows, r.AuditSeconds), r.AuditPeakRSSMB)
	p("")
	p("pipeline / baseline: %.2fx; incremental load / its floor: %.2fx", r.Ratio, r.LoadFloorRatio)
	p("audit: %d source rows (id, last_updated) and %d landed versions read: %d missing, %d pending, %d deleted",
		r.AuditSourceRows, r.AuditLandedVersions, r.AuditMissing, r.AuditPending, r.AuditDeleted)
	p("audit / initial ingest: %.2fx the initial ingest's %.2fs; source server CPU %.2fs against the initial ingest's %.2fs",
		r.AuditIngestRatio, r.StageSeconds["ingest"], r.AuditSourceCPUSeconds, r.IngestSourceCPUSeconds)
	if r.AuditDrift {
		p("AUDIT FOUND DRIFT IN A CLEAN PIPELINE (%s): this is a bug", r.auditDrift())
	}
	if r.FreshnessMeasured > 0 {
		p("freshness (run --interval %gs, %d changes, %d seen, %d missing): p50 %.2fs  p95 %.2fs  max %.2fs  (run peak RSS %.1f MB)",
			r.FreshnessIntervalSeconds, r.FreshnessChanges, r.FreshnessMeasured, r.FreshnessMissing,
			r.FreshnessP50Seconds, r.FreshnessP95Seconds, r.FreshnessMaxSeconds, r.RunPeakRSSMB)
	}
	if c := r.BigTransaction; c != nil {
		writeStages(p, fmt.Sprintf("big transaction (%d changes)", c.Changes), *c)
	}
}

// incremental is the first incremental cycle, as a Cycle.
func (r Result) incremental() Cycle {
	return Cycle{Changes: r.IncrementalChanges, Seconds: r.IncrementalSeconds, StageSeconds: r.IncrementalStageSeconds,
		PeakRSSMB: r.IncrementalPeakRSSMB, RowsPerSecond: r.IncrementalRowsPerSecond, LoadBatchSeconds: r.IncrementalLoadBatchSeconds,
		Floor: r.IncrementalFloor}
}

// setIncremental records c as the first incremental cycle.
func (r *Result) setIncremental(c Cycle) {
	r.IncrementalChanges, r.IncrementalSeconds, r.IncrementalStageSeconds = c.Changes, c.Seconds, c.StageSeconds
	r.IncrementalPeakRSSMB, r.IncrementalRowsPerSecond, r.IncrementalLoadBatchSeconds = c.PeakRSSMB, c.RowsPerSecond, c.LoadBatchSeconds
	r.IncrementalFloor = c.Floor
}

// writeCycle writes an incremental cycle's lines of the table; read
// names its floor's read.
func writeCycle(p func(string, ...any), name string, c Cycle, read string) {
	writeStages(p, fmt.Sprintf("%s (%d changes)", name, c.Changes), c)
	ingest, cpu := c.perChangedRow()
	p("  %-28s %10.2f %14s %12s", "ingest's source CPU", c.IngestSourceCPUSeconds, "", "")
	p("  %-28s %10s %14s %12s", fmt.Sprintf("per changed row: ingest %.1fµs, source CPU %.1fµs", ingest, cpu), "", "", "")
	p("  %-28s %10.2f %14.0f %12s", "load's batch (its ledger)", c.LoadBatchSeconds, perSecond(c.Changes, c.LoadBatchSeconds), "")
	f := c.Floor
	p("  %-28s %10.2f %14.0f %12s", fmt.Sprintf("%s (%d)", read, f.ReadRows), f.ReadSeconds, perSecond(f.ReadRows, f.ReadSeconds), "")
	p("  %-28s %10.2f %14.0f %12s", "PG writes the fact rows", f.WriteSeconds, perSecond(c.Changes, f.WriteSeconds), "")
	p("  %-28s %10.2f %14s %12s", fmt.Sprintf("floor (the cycle %.2fx it)", f.Ratio), f.seconds(), "", "")
	if f.StreamSeconds > 0 {
		p("  %-28s %10.2f %14.0f %12s", "PG sends them to a client", f.StreamSeconds, perSecond(f.ReadRows, f.StreamSeconds), "")
		p("  %-28s %10.2f %14s %12s", fmt.Sprintf("floor so (the cycle %.2fx it)", f.StreamRatio), f.StreamSeconds+f.WriteSeconds, "", "")
	}
}

// writeStages writes a cycle's line and its stages' lines.
func writeStages(p func(string, ...any), name string, c Cycle) {
	p("%-30s %10.2f %14.0f %12s", name, c.Seconds, perSecond(c.Changes, c.Seconds), "")
	for _, s := range Stages {
		p("  %-28s %10.2f %14.0f %12.1f", s, c.StageSeconds[s], c.RowsPerSecond[s], c.PeakRSSMB[s])
	}
}

func perSecond(rows int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(rows) / seconds
}

func tableList(m map[string]int64) string {
	names := make([]string, 0, len(m))
	for t := range m {
		names = append(names, t)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, t := range names {
		parts[i] = fmt.Sprintf("%s %d", t, m[t])
	}
	return strings.Join(parts, ", ")
}
