package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// walDatabase is the warehouse database of the wal pipeline, beside the
// poll's, so that the two land side by side on one warehouse server.
const walDatabase = "warehouse_wal"

// floorSlot is the slot the wal cycle's read floor decodes from: created
// before the change, peeked after the cycle, dropped.
const floorSlot = "sandstone_bench_floor"

// outsideTable is the source table outside the publication that the
// hold-back phase writes to.
const outsideTable = "bench_outside"

// logicalSettings are the source server's settings when the bench runs
// log-based capture: logical decoding on, room for the pipeline's slot
// and the floor's.
func logicalSettings() map[string]string {
	return map[string]string{"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10"}
}

// WALResult is what the bench measured of log-based capture (`--capture
// wal`), on its own buckets and warehouse database, against the same
// source as the poll.
type WALResult struct {
	Slot        string `json:"slot"`
	Publication string `json:"publication"`

	// The initial load: the slot created with its snapshot, every row
	// landed from it, then transform and load, into an empty warehouse.
	// InitialRatio is its seconds over the baseline's.
	InitialSeconds          float64            `json:"initial_seconds"`
	InitialStageSeconds     map[string]float64 `json:"initial_stage_seconds"`
	InitialPeakRSSMB        map[string]float64 `json:"initial_peak_rss_mb"`
	InitialRatio            float64            `json:"initial_ratio"`
	InitialSourceCPUSeconds float64            `json:"initial_ingest_source_cpu_seconds"`

	// Incremental is the cycle after the same change the poll's
	// incremental cycle read; its floor's read is the slot's changes
	// decoded alone (pg_logical_slot_peek_binary_changes, pgoutput, in
	// binary, ReadRows its messages), its write the fact rows' write.
	Incremental *Cycle `json:"incremental,omitempty"`

	// FollowCycle is the cycle of the same change under `sandstone run
	// --follow`.
	FollowCycle *FollowCycle `json:"follow_cycle,omitempty"`

	// Freshness of `sandstone run --capture wal` while sales orders are
	// updated at the rate asked (Options.WALFreshnessRate; the rate
	// achieved is Freshness.Rate).
	Freshness *FreshnessResult `json:"freshness,omitempty"`

	// HoldBack is the WAL the slot holds back after HoldBack.WrittenMB were
	// written to a table outside the publication and one ingest ran.
	HoldBack *HoldBack `json:"hold_back,omitempty"`

	// BigTransaction is a cycle after one transaction changed that many
	// sales orders.
	BigTransaction *Cycle `json:"big_transaction,omitempty"`

	// PeakRSSMB is, per stage (and "run"), the highest peak RSS of any of
	// its wal runs; PeakRSSWhere says which phase it was.
	PeakRSSMB    map[string]float64 `json:"peak_rss_mb"`
	PeakRSSWhere map[string]string  `json:"peak_rss_where"`
}

// FreshnessResult is a freshness phase's figures.
type FreshnessResult struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// Follow is set when `sandstone run` followed the source (--follow).
	Follow bool `json:"follow"`
	// Rate is the versions written a second.
	Rate         float64 `json:"rate"`
	Changes      int64   `json:"changes"`
	Measured     int     `json:"measured"`
	Missing      int64   `json:"missing"`
	P50Seconds   float64 `json:"p50_seconds"`
	P95Seconds   float64 `json:"p95_seconds"`
	MaxSeconds   float64 `json:"max_seconds"`
	RunPeakRSSMB float64 `json:"run_peak_rss_mb"`
}

// HoldBack is the WAL a slot holds back: from its restart_lsn (what the
// server must keep on disk) and from its confirmed_flush_lsn, to the
// server's current WAL position, with its wal_status, after one ingest.
// AfterCheckpointMB is the restart lag after a CHECKPOINT (which logs the
// running transactions, the point a slot's restart_lsn can move to) and a
// second ingest.
type HoldBack struct {
	WrittenMB         float64 `json:"written_mb"`
	RunSeconds        float64 `json:"run_seconds"`
	RestartLagMB      float64 `json:"restart_lag_mb"`
	ConfirmedLagMB    float64 `json:"confirmed_lag_mb"`
	WALStatus         string  `json:"wal_status"`
	AfterCheckpointMB float64 `json:"after_checkpoint_mb"`
	// FollowMB is the restart lag FollowSeconds after as much WAL again
	// was written while `sandstone run --follow` ran: the first reading
	// under 16 MB, or the last at followHoldBack.
	FollowMB      float64 `json:"follow_mb"`
	FollowSeconds float64 `json:"follow_seconds"`
}

// walRun is the wal pipeline of a benchmark: its settings (the source's,
// its own buckets and warehouse database) and children that run its
// stages with SANDSTONE_CAPTURE=wal.
type walRun struct {
	cfg config.Config
	dir string // its buckets' directory
	c   children
	say func(format string, args ...any)
	res *WALResult
}

// newWALRun creates the wal pipeline's warehouse database on the
// sandbox's warehouse server and its buckets under dir.
func newWALRun(ctx context.Context, poll config.Config, warehouseURL func(context.Context, string) (string, error),
	dir string, c func(config.Config) children, say func(string, ...any)) (*walRun, error) {
	cfg := poll
	var err error
	if cfg.WarehouseURL, err = warehouseURL(ctx, walDatabase); err != nil {
		return nil, fmt.Errorf("bench: the wal warehouse: %w", err)
	}
	cfg.IngestBucket = "file://" + filepath.Join(dir, "wal", "ingested")
	cfg.ProcessedBucket = "file://" + filepath.Join(dir, "wal", "processed")
	cfg.Capture, cfg.Slot, cfg.Publication = config.CaptureWAL, config.DefaultSlot(cfg.SourceURL), config.DefaultPublication
	w := &walRun{cfg: cfg, dir: filepath.Join(dir, "wal"), c: c(cfg).with(config.EnvCapture + "=" + config.CaptureWAL), say: say,
		res: &WALResult{Slot: cfg.Slot, Publication: cfg.Publication, PeakRSSMB: map[string]float64{}, PeakRSSWhere: map[string]string{}}}
	return w, nil
}

// note keeps the highest peak RSS of each stage.
func (w *walRun) note(phase string, runs ...StageRun) {
	for _, r := range runs {
		if mb := float64(r.PeakRSS) / (1 << 20); mb > w.res.PeakRSSMB[r.Stage] {
			w.res.PeakRSSMB[r.Stage], w.res.PeakRSSWhere[r.Stage] = mb, phase
		}
	}
}

// cycle runs the three stages with c, noting their peak RSS.
func (w *walRun) cycle(ctx context.Context, c children, phase string) (cycleRuns, error) {
	runs, err := cycle(ctx, c, phase, w.say)
	w.note(phase, runs...)
	if err != nil {
		return runs, fmt.Errorf("bench: %w", err)
	}
	return runs, nil
}

// initial lands the whole source through the slot's snapshot, in one
// batch, and compares it with the baseline.
func (w *walRun) initial(ctx context.Context, baselineSeconds float64) error {
	w.say("WAL initial pipeline: the slot and its snapshot, transform, load into an empty warehouse (%s) ...", walDatabase)
	runs, err := w.cycle(ctx, w.c.with(config.EnvMaxBatchRows+"=0"), "wal-initial")
	if err != nil {
		return err
	}
	res := w.res
	res.InitialSeconds, res.InitialStageSeconds, res.InitialPeakRSSMB = runs.split()
	res.InitialSourceCPUSeconds = runs[0].SourceCPU.Seconds()
	if baselineSeconds > 0 {
		res.InitialRatio = res.InitialSeconds / baselineSeconds
	}
	w.say("  %.2fs: %.2fx the baseline's %.2fs", res.InitialSeconds, res.InitialRatio, baselineSeconds)
	return nil
}

// beforeChange prepares the wal cycle's floor before the change: the
// warehouse's serial ids and a slot of the floor's own at the WAL's end.
func (w *walRun) beforeChange(ctx context.Context) (map[string]int64, error) {
	serials, err := maxSerials(ctx, w.cfg.WarehouseURL, w.cfg.WarehouseSchema)
	if err != nil {
		return nil, err
	}
	err = withConn(ctx, w.cfg.SourceURL, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", floorSlot)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bench: the floor's slot: %w", err)
	}
	return serials, nil
}

// dropFloor drops the floor's slot (beforeChange), so that a kept
// source does not hold WAL for it.
func (w *walRun) dropFloor(ctx context.Context) error {
	err := withConn(context.WithoutCancel(ctx), w.cfg.SourceURL, func(conn *pgx.Conn) error {
		_, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_drop_replication_slot($1)", floorSlot)
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: drop the floor's slot: %w", err)
	}
	return nil
}

// incremental runs the wal cycle after the change of changes rows, then
// its floor: the floor slot's changes decoded alone, and the fact rows
// written again by COPY.
func (w *walRun) incremental(ctx context.Context, serials map[string]int64, changes int64) error {
	w.say("  WAL incremental cycle (%d changed rows) ...", changes)
	c, err := w.measureCycle(ctx, "wal-incremental", changes)
	w.res.Incremental = &c
	if err != nil {
		return err
	}
	f := &c.Floor
	if f.ReadSeconds, f.ReadRows, err = measureSlotFloor(ctx, w.cfg.SourceURL, w.cfg.Publication); err != nil {
		return err
	}
	if f.WriteSeconds, err = measureWriteFloor(ctx, w.cfg.WarehouseURL, w.cfg.WarehouseSchema, serials); err != nil {
		return err
	}
	if f.StreamSeconds, err = measureStreamFloor(ctx, w.cfg.SourceURL, w.cfg.Publication, f.ReadRows); err != nil {
		return err
	}
	f.Ratio = c.Seconds / f.seconds()
	f.StreamRatio = c.Seconds / (f.StreamSeconds + f.WriteSeconds)
	w.res.Incremental = &c
	w.say("  floor: PostgreSQL alone decodes the slot's changes (%d messages) in %.2fs, sends them to a replication client in %.2fs, "+
		"and writes the fact rows in %.2fs: the cycle is %.2fx the first floor, %.2fx the second",
		f.ReadRows, f.ReadSeconds, f.StreamSeconds, f.WriteSeconds, f.Ratio, f.StreamRatio)
	return nil
}

// measureCycle runs one wal cycle of changes changed rows and returns
// its figures.
func (w *walRun) measureCycle(ctx context.Context, phase string, changes int64) (Cycle, error) {
	c := Cycle{Changes: changes, RowsPerSecond: map[string]float64{}}
	runs, err := w.cycle(ctx, w.c, phase)
	if err != nil {
		return c, err
	}
	c.set(runs)
	c.LoadBatchSeconds, err = loadBatchSeconds(ctx, w.cfg.WarehouseURL, w.cfg.WarehouseSchema)
	return c, err
}

// measureSlotFloor times the floor of a wal ingest's read: the server
// decoding the floor slot's changes by pgoutput (protocol 1, binary
// values, the publication's tables), as it does for ingest's walsender,
// each message returned to one SQL connection and counted, nothing
// consumed. It returns the seconds and the messages.
func measureSlotFloor(ctx context.Context, url, publication string) (float64, int64, error) {
	var rows int64
	var seconds float64
	err := withConn(ctx, url, func(conn *pgx.Conn) error {
		start := time.Now()
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
			'proto_version', '1', 'publication_names', $2, 'binary', 'true')`, floorSlot, publication).Scan(&rows)
		seconds = time.Since(start).Seconds()
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: the slot's read floor: %w", err)
	}
	return seconds, rows, nil
}

// measureStreamFloor times the floor of a wal ingest's read as any
// consumer of a slot sees it: the floor slot's changes sent by a walsender
// over the replication protocol (pgoutput as ingest asks for it) to a
// client that only counts them, until it has the messages a peek
// returned. The walsender sends each message on its own, so this is the
// decoding plus a send and a receive per change; nothing is confirmed,
// so the slot keeps its changes. It returns the seconds.
func measureStreamFloor(ctx context.Context, url, publication string, messages int64) (float64, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return 0, fmt.Errorf("bench: the slot's streamed floor: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("bench: the slot's streamed floor: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := pglogrepl.StartReplication(ctx, conn, floorSlot, 0, pglogrepl.StartReplicationOptions{PluginArgs: ingest.PluginArgs(publication)}); err != nil {
		return 0, fmt.Errorf("bench: the slot's streamed floor: %w", err)
	}
	for n := int64(0); n < messages; {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return 0, fmt.Errorf("bench: the slot's streamed floor, after %d of %d messages: %w", n, messages, err)
		}
		if cd, ok := msg.(*pgproto3.CopyData); ok && len(cd.Data) > 0 && cd.Data[0] == pglogrepl.XLogDataByteID {
			n++
		}
	}
	return time.Since(start).Seconds(), nil
}

// freshness catches the wal pipeline up (one cycle, not measured), then
// measures `sandstone run --capture wal` while sales orders are updated.
func (w *walRun) freshness(ctx context.Context, plan freshnessPlan, rate float64) error {
	w.say("WAL freshness: catching up first (what the poll's phases changed since) ...")
	if _, err := w.cycle(ctx, w.c, "wal-catch-up"); err != nil {
		return err
	}
	plan.warehouseURL, plan.schema = w.cfg.WarehouseURL, w.cfg.WarehouseSchema
	if rate > 0 {
		// A step about every 100 ms, of as many sales orders as the rate
		// asks.
		plan.orders = max(1, int(math.Round(rate/10)))
		plan.step = time.Duration(float64(time.Second) * float64(plan.orders) / rate)
	}
	how := "--interval " + plan.interval.String()
	if plan.follow {
		how = "--follow"
	}
	w.say("WAL freshness: sandstone run --capture wal %s while %d sales orders are updated (%.0f a second asked) ...",
		how, plan.changes, rate)
	f, err := measureFreshness(ctx, w.c, plan)
	if err != nil {
		return fmt.Errorf("bench: wal %w", err)
	}
	w.res.Freshness = f.result(plan.interval)
	w.res.Freshness.Follow = plan.follow
	w.note("wal-freshness", StageRun{Stage: "run", PeakRSS: f.RunPeakRSS})
	fr := w.res.Freshness
	w.say("  %d changes at %.1f/s, %d seen in the warehouse: p50 %.2fs, p95 %.2fs", fr.Changes, fr.Rate, fr.Measured, fr.P50Seconds, fr.P95Seconds)
	return nil
}

// holdBack writes megabytes of WAL to a table outside the publication,
// runs one wal ingest and reads what the slot holds back.
func (w *walRun) holdBack(ctx context.Context, megabytes int) error {
	w.say("WAL hold-back: %d MB written to %s (outside the publication), then one ingest ...", megabytes, outsideTable)
	h := &HoldBack{}
	var err error
	if h.WrittenMB, err = w.writeOutside(ctx, megabytes); err != nil {
		return err
	}
	run, err := w.c.stage(ctx, "wal-hold-back", "ingest")
	w.note("wal-hold-back", run)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	h.RunSeconds = run.Duration.Seconds()
	if h.RestartLagMB, h.ConfirmedLagMB, h.WALStatus, err = w.slotLag(ctx); err != nil {
		return err
	}
	w.res.HoldBack = h
	w.say("  %.1f MB written; after one ingest (%.2fs) the slot holds back %.1f MB (restart_lsn), %.1f MB unconfirmed, wal_status %s",
		h.WrittenMB, h.RunSeconds, h.RestartLagMB, h.ConfirmedLagMB, h.WALStatus)
	checkpoint(ctx, w.cfg.SourceURL)
	run, err = w.c.stage(ctx, "wal-hold-back-2", "ingest")
	w.note("wal-hold-back", run)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if h.AfterCheckpointMB, _, _, err = w.slotLag(ctx); err != nil {
		return err
	}
	w.say("  after a CHECKPOINT and a second ingest: %.1f MB held back", h.AfterCheckpointMB)
	return w.holdBackFollowing(ctx, megabytes, h)
}

// followHoldBack bounds how long the hold-back phase watches `sandstone
// run --follow` let go of the WAL written outside the publication.
const followHoldBack = 45 * time.Second

// holdBackFollowing writes megabytes outside the publication again while
// `sandstone run --follow` runs, and measures how long until the slot
// holds back less than 16 MB (the background writer logs the running
// transactions every 15 s, and the slot lets go once it has decoded one),
// and what it holds then: at most followHoldBack.
func (w *walRun) holdBackFollowing(ctx context.Context, megabytes int, h *HoldBack) error {
	w.say("  the same while sandstone run --capture wal --follow runs ...")
	bg, err := startRun(ctx, w.c, freshnessPlan{interval: time.Minute, follow: true, quiet: true,
		logPath: filepath.Join(w.dir, "hold-back-run.log")})
	if err != nil {
		return err
	}
	defer bg.closeLog()
	if _, err := w.writeOutside(ctx, megabytes); err != nil {
		return errors.Join(err, bg.stop(&Freshness{}))
	}
	written := time.Now()
	for {
		if h.FollowMB, _, _, err = w.slotLag(ctx); err != nil || h.FollowMB < 16 || time.Since(written) > followHoldBack {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	h.FollowSeconds = time.Since(written).Seconds()
	if err := errors.Join(err, bg.stop(&Freshness{})); err != nil {
		return fmt.Errorf("bench: hold-back while following: %w", err)
	}
	w.say("  following: %.1f MB held back %.1fs after the write", h.FollowMB, h.FollowSeconds)
	return nil
}

// writeOutside writes at least megabytes of WAL to outsideTable, and
// returns how many it wrote.
func (w *walRun) writeOutside(ctx context.Context, megabytes int) (float64, error) {
	var written float64
	err := withConn(ctx, w.cfg.SourceURL, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+ident(outsideTable)+" (id bigserial PRIMARY KEY, pad text)"); err != nil {
			return err
		}
		var start string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&start); err != nil {
			return err
		}
		for written < float64(megabytes) {
			if _, err := conn.Exec(ctx, "INSERT INTO "+ident(outsideTable)+" (pad) SELECT repeat(md5(g::text), 16) FROM generate_series(1, 2000) g"); err != nil {
				return err
			}
			if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn) / 1048576", start).Scan(&written); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return written, fmt.Errorf("bench: write outside the publication: %w", err)
	}
	return written, nil
}

// slotLag reads the WAL the pipeline's slot holds back from its
// restart_lsn and from its confirmed_flush_lsn (MB), and its wal_status.
func (w *walRun) slotLag(ctx context.Context) (restartMB, confirmedMB float64, status string, err error) {
	err = withConn(ctx, w.cfg.SourceURL, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) / 1048576,
			pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) / 1048576, coalesce(wal_status, '')
			FROM pg_replication_slots WHERE slot_name = $1`, w.cfg.Slot).Scan(&restartMB, &confirmedMB, &status)
	})
	if err != nil {
		return 0, 0, "", fmt.Errorf("bench: the slot's lag: %w", err)
	}
	return restartMB, confirmedMB, status, nil
}
