package bench

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The targets of log-based capture (issue 31), on the 2-core machines the
// issue names.
const (
	TargetWALRatio            = 1.0
	TargetWALCycle            = time.Second
	TargetWALCycleFloorRatio  = 1.3
	TargetWALFreshnessP50     = time.Second
	TargetWALFreshnessP95     = 2 * time.Second
	TargetWALHoldBackMB       = 16.0
	targetWALFreshnessPerSec  = 100
	targetWALFreshnessEveryS  = 1
	targetWALHoldBackWrittenM = 64
)

// evaluate holds the wal's figures to their targets.
func (w *WALResult) evaluate() []Target {
	ts := []Target{{"wal: initial pipeline / baseline", fmt.Sprintf("<= %.1fx", TargetWALRatio),
		fmt.Sprintf("%.2fx", w.InitialRatio), w.InitialRatio > 0 && w.InitialRatio <= TargetWALRatio}}
	if c := w.Incremental; c != nil {
		ts = append(ts, Target{fmt.Sprintf("wal: incremental cycle (%d changed rows)", c.Changes),
			fmt.Sprintf("< %.1fs or <= %.1fx its floor", TargetWALCycle.Seconds(), TargetWALCycleFloorRatio),
			fmt.Sprintf("%.2fs, %.2fx (floor %.2fs), %.2fx the streamed floor (%.2fs)", c.Seconds, c.Floor.Ratio, c.Floor.seconds(),
				c.Floor.StreamRatio, c.Floor.StreamSeconds+c.Floor.WriteSeconds),
			c.Seconds > 0 && (c.Seconds < TargetWALCycle.Seconds() || c.Floor.met())})
	}
	if c := w.FollowCycle; c != nil {
		ts = append(ts, Target{fmt.Sprintf("wal: the same change while following (%d changed rows)", c.Changes),
			fmt.Sprintf("< %.1fs or <= %.1fx the floor", TargetWALCycle.Seconds(), TargetWALCycleFloorRatio),
			fmt.Sprintf("%.2fs, %.2fx, %.2fx the streamed floor", c.Seconds, c.FloorRatio, c.StreamFloorRatio),
			c.Seconds > 0 && (c.Seconds < TargetWALCycle.Seconds() || withinFloor(c.FloorRatio) || withinFloor(c.StreamFloorRatio))})
	}
	if f := w.Freshness; f != nil {
		ts = append(ts, Target{fmt.Sprintf("wal: freshness (run %s, %.0f/s)", f.how(), f.Rate),
			fmt.Sprintf("p50 <= %.0fs, p95 <= %.0fs at %d/s, %ds", TargetWALFreshnessP50.Seconds(), TargetWALFreshnessP95.Seconds(),
				targetWALFreshnessPerSec, targetWALFreshnessEveryS),
			fmt.Sprintf("p50 %.2fs, p95 %.2fs, %d missing", f.P50Seconds, f.P95Seconds, f.Missing),
			f.Measured > 0 && f.Missing == 0 && f.P50Seconds <= TargetWALFreshnessP50.Seconds() && f.P95Seconds <= TargetWALFreshnessP95.Seconds()})
	}
	if h := w.HoldBack; h != nil {
		ts = append(ts, Target{fmt.Sprintf("wal: held back after %.0f MB outside", h.WrittenMB),
			fmt.Sprintf("< %.0f MB after %d MB", TargetWALHoldBackMB, targetWALHoldBackWrittenM),
			fmt.Sprintf("%.1f MB (%s)", h.RestartLagMB, h.WALStatus), h.RestartLagMB < TargetWALHoldBackMB})
		if h.FollowSeconds > 0 {
			ts = append(ts, Target{fmt.Sprintf("wal: held back while following, %.0fs after as much", h.FollowSeconds),
				fmt.Sprintf("< %.0f MB", TargetWALHoldBackMB), fmt.Sprintf("%.1f MB", h.FollowMB), h.FollowMB < TargetWALHoldBackMB})
		}
	}
	stage, peak := w.peak()
	ts = append(ts, Target{"wal: peak RSS of every stage", fmt.Sprintf("< %.0f MB", TargetPeakRSSMB),
		fmt.Sprintf("%.1f MB (%s %s)", peak, w.PeakRSSWhere[stage], stage), peak > 0 && peak < TargetPeakRSSMB})
	return ts
}

// peak returns the stage of the highest peak RSS, and it.
func (w *WALResult) peak() (stage string, mb float64) {
	for s, v := range w.PeakRSSMB {
		if v > mb || (v == mb && s < stage) {
			stage, mb = s, v
		}
	}
	return stage, mb
}

// write writes the wal's lines of the table.
func (w *WALResult) write(p func(string, ...any), sourceRows int64) {
	p("%-30s %10s %14s %12s", fmt.Sprintf("WAL (slot %s)", w.Slot), "", "", "")
	p("%-30s %10.2f %14.0f %12s", "wal initial pipeline", w.InitialSeconds, perSecond(sourceRows, w.InitialSeconds), "")
	for _, s := range Stages {
		p("  %-28s %10.2f %14.0f %12.1f", s, w.InitialStageSeconds[s], perSecond(sourceRows, w.InitialStageSeconds[s]), w.InitialPeakRSSMB[s])
	}
	p("  %-28s %10.2f %14s %12s", "ingest's source CPU", w.InitialSourceCPUSeconds, "", "")
	if c := w.Incremental; c != nil {
		writeCycle(p, "wal incremental", *c, "PG decodes the slot")
	}
	if c := w.FollowCycle; c != nil {
		p("%-30s %10.2f %14s %12s  (%d changed rows, commit to warehouse under run --follow; %.2fx the floor)", "wal cycle while following", c.Seconds, "", "", c.Changes, c.FloorRatio)
	}
	if c := w.BigTransaction; c != nil {
		writeStages(p, fmt.Sprintf("wal big transaction (%d)", c.Changes), *c)
	}
	p("")
	p("wal initial / baseline: %.2fx", w.InitialRatio)
	if f := w.Freshness; f != nil {
		p("wal freshness (run --capture wal %s, %d changes at %.1f/s, %d seen, %d missing): p50 %.2fs  p95 %.2fs  max %.2fs  (run peak RSS %.1f MB)",
			f.how(), f.Changes, f.Rate, f.Measured, f.Missing, f.P50Seconds, f.P95Seconds, f.MaxSeconds, f.RunPeakRSSMB)
	}
	if h := w.HoldBack; h != nil {
		p("wal hold-back: %.1f MB written outside the publication, one ingest (%.2fs): %.1f MB held back (restart_lsn), %.1f MB unconfirmed, wal_status %s; after a CHECKPOINT and a second ingest %.1f MB; following, %.1f MB %.1fs after as much again",
			h.WrittenMB, h.RunSeconds, h.RestartLagMB, h.ConfirmedLagMB, h.WALStatus, h.AfterCheckpointMB, h.FollowMB, h.FollowSeconds)
	}
	stages := make([]string, 0, len(w.PeakRSSMB))
	for s := range w.PeakRSSMB {
		stages = append(stages, s)
	}
	sort.Slice(stages, func(i, j int) bool { return stageOrder(stages[i]) < stageOrder(stages[j]) })
	parts := make([]string, len(stages))
	for i, s := range stages {
		parts[i] = fmt.Sprintf("%s %.1f MB (%s)", s, w.PeakRSSMB[s], w.PeakRSSWhere[s])
	}
	p("wal peak RSS: %s", strings.Join(parts, ", "))
}

// stageOrder orders the stages as they run, "run" last.
func stageOrder(s string) int {
	if i := slices.Index(Stages, s); i >= 0 {
		return i
	}
	return len(Stages)
}

// how is how `sandstone run` ran: --follow, or every interval.
func (f *FreshnessResult) how() string {
	if f.Follow {
		return "--follow"
	}
	return fmt.Sprintf("--interval %gs", f.IntervalSeconds)
}
