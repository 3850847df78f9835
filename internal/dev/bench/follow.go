package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// FollowCycle is the cycle of a change under `sandstone run --capture wal
// --follow`: from the commit of ChangeFraction of the sales orders and
// payments, in one transaction, to the last of their fact rows in the
// warehouse.
type FollowCycle struct {
	Changes int64   `json:"changes"`
	Seconds float64 `json:"seconds"`
	// FloorRatio is Seconds over the wal incremental cycle's floor (the
	// slot's changes decoded alone plus the fact rows' write, for a
	// change of the same size); 0 without it. StreamFloorRatio is the
	// same over the streamed floor (the changes sent to a replication
	// client, plus the write).
	FloorRatio       float64 `json:"floor_ratio,omitempty"`
	StreamFloorRatio float64 `json:"stream_floor_ratio,omitempty"`
}

// followCycle measures the cycle of a change while `sandstone run
// --follow` runs, with no audit beside it.
func (w *walRun) followCycle(ctx context.Context, fraction float64, timeout time.Duration) error {
	w.say("WAL cycle while following: sandstone run --capture wal --follow, then %.3g%% of the sales orders and payments changed ...", fraction*100)
	bg, err := startRun(ctx, w.c, freshnessPlan{interval: time.Minute, follow: true, quiet: true, logPath: filepath.Join(w.dir, "follow-cycle-run.log")})
	if err != nil {
		return err
	}
	defer bg.closeLog()
	c, err := w.timeFollowedChange(ctx, fraction, timeout)
	var fr Freshness
	if serr := bg.stop(&fr); err == nil {
		err = serr
	}
	w.note("wal-follow-cycle", StageRun{Stage: "run", PeakRSS: fr.RunPeakRSS})
	if err != nil {
		return fmt.Errorf("bench: wal cycle while following: %w", err)
	}
	if inc := w.res.Incremental; inc != nil && inc.Floor.seconds() > 0 {
		c.FloorRatio = c.Seconds / inc.Floor.seconds()
		if f := inc.Floor; f.StreamSeconds > 0 {
			c.StreamFloorRatio = c.Seconds / (f.StreamSeconds + f.WriteSeconds)
		}
	}
	w.res.FollowCycle = c
	w.say("  %d changed rows in the warehouse %.2fs after their commit (%.2fx the wal cycle's floor, %.2fx its streamed floor)",
		c.Changes, c.Seconds, c.FloorRatio, c.StreamFloorRatio)
	return nil
}

// timeFollowedChange waits for the run to catch up, commits the change and
// times it into the warehouse.
func (w *walRun) timeFollowedChange(ctx context.Context, fraction float64, timeout time.Duration) (*FollowCycle, error) {
	wh, err := pgx.Connect(ctx, w.cfg.WarehouseURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	time.Sleep(3 * time.Second) // the run's start: connections, preflight, the slot
	last, err := lastSerials(ctx, wh, w.cfg.WarehouseSchema)
	if err != nil {
		return nil, err
	}
	stats, err := synth.ChangeFraction(ctx, w.cfg.SourceURL, fraction)
	committed := time.Now()
	if err != nil {
		return nil, err
	}
	c := &FollowCycle{Changes: stats["sales_order"] + stats["payment"]}
	for end := committed.Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		n, err := factsAfter(ctx, wh, w.cfg.WarehouseSchema, last)
		if err != nil {
			return nil, err
		}
		if n >= c.Changes {
			c.Seconds = time.Since(committed).Seconds()
			return c, nil
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("%d of %d fact rows in the warehouse after %s", n, c.Changes, timeout)
		}
	}
}

// factsAfter counts the rows of factVersions past their serial ids in
// last.
func factsAfter(ctx context.Context, wh *pgx.Conn, schema string, last []int64) (int64, error) {
	var total int64
	for i, f := range factVersions {
		var n int64
		if err := wh.QueryRow(ctx, "SELECT count(*) FROM "+ident(schema, f.table)+" WHERE "+ident(f.serial)+" > $1", last[i]).Scan(&n); err != nil {
			return 0, fmt.Errorf("%s: %w", f.table, err)
		}
		total += n
	}
	return total, nil
}
