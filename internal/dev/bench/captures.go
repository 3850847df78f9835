package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
)

// walDefaults fills in and checks the capture modes and the wal phases'
// settings.
func (o *Options) walDefaults() error {
	if len(o.Captures) == 0 {
		o.Captures = []string{config.CapturePoll}
	}
	for i, c := range o.Captures {
		if err := config.CheckCapture(c); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if slices.Contains(o.Captures[:i], c) {
			return fmt.Errorf("bench: capture %q named twice", c)
		}
	}
	if o.WALFreshnessInterval == 0 {
		o.WALFreshnessInterval = DefaultWALFreshnessInterval
	}
	if o.WALFreshnessChanges == 0 {
		o.WALFreshnessChanges = DefaultWALFreshnessChanges
	}
	if o.WALFreshnessRate == 0 {
		o.WALFreshnessRate = DefaultWALFreshnessRate
	}
	if o.HoldBackMB == 0 {
		o.HoldBackMB = DefaultHoldBackMB
	}
	if o.BigTransactionRows == 0 {
		o.BigTransactionRows = DefaultBigTransactionRows
	}
	if o.WALFreshnessInterval < 0 || o.WALFreshnessRate < 0 {
		return fmt.Errorf("bench: the wal freshness settings must be positive")
	}
	return nil
}

// has reports whether the capture mode is measured.
func (o Options) has(capture string) bool { return slices.Contains(o.Captures, capture) }

func (r *run) walInitial(ctx context.Context) error {
	if r.wal == nil {
		return nil
	}
	// The poll's initial load, when it ran, left its dirty buffers on the
	// same warehouse server: written out first, as after the baseline.
	checkpoint(ctx, r.cfg.WarehouseURL)
	return r.wal.initial(ctx, r.res.BaselineSeconds)
}

func (r *run) walFreshness(ctx context.Context) error {
	if r.wal == nil || r.opts.WALFreshnessChanges <= 0 {
		return nil
	}
	return r.wal.freshness(ctx, freshnessPlan{
		sourceURL: r.cfg.SourceURL, changes: r.opts.WALFreshnessChanges, interval: r.opts.WALFreshnessInterval,
		poll: r.opts.Poll, timeout: r.opts.FreshnessTimeout, logPath: filepath.Join(r.dir, "wal", "run.log"), follow: r.opts.WALFollow,
	}, r.opts.WALFreshnessRate)
}

func (r *run) walFollowCycle(ctx context.Context) error {
	if r.wal == nil || !r.opts.WALFollow {
		return nil
	}
	return r.wal.followCycle(ctx, r.opts.ChangeFraction, r.opts.FreshnessTimeout)
}

func (r *run) walHoldBack(ctx context.Context) error {
	if r.wal == nil || r.opts.HoldBackMB <= 0 {
		return nil
	}
	return r.wal.holdBack(ctx, r.opts.HoldBackMB)
}

// bigTransaction changes BigTransactionRows sales orders (or all there
// are) in one transaction, then runs a cycle of each capture measured:
// what each stage's memory holds of one large transaction. It runs with
// the wal only.
func (r *run) bigTransaction(ctx context.Context) error {
	if r.wal == nil || r.opts.BigTransactionRows <= 0 {
		return nil
	}
	r.say("A transaction changing %d sales orders ...", r.opts.BigTransactionRows)
	var changed int64
	t0 := time.Now()
	err := withConn(ctx, r.cfg.SourceURL, func(conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, `UPDATE sales_order SET
				units_sold = CASE WHEN units_sold > 1 THEN units_sold - 1 ELSE units_sold + 1 END,
				last_updated = date_trunc('milliseconds', LOCALTIMESTAMP)
			WHERE sales_order_id IN (SELECT sales_order_id FROM sales_order ORDER BY sales_order_id LIMIT $1)`, r.opts.BigTransactionRows)
		changed = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: the big transaction: %w", err)
	}
	r.say("  %d rows changed in %.1fs", changed, time.Since(t0).Seconds())
	if r.poll {
		c := Cycle{Changes: changed, RowsPerSecond: map[string]float64{}}
		runs, err := cycle(ctx, r.c, "big", r.say)
		c.set(runs)
		r.res.BigTransaction = &c
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	r.say("  WAL cycle of the big transaction ...")
	c, err := r.wal.measureCycle(ctx, "wal-big", changed)
	r.wal.res.BigTransaction = &c
	return err
}
