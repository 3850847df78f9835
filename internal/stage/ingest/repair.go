package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// repairTries bounds how often a repair goes again on top of a batch that
// another run committed first (a cycle, or another repair): each time it
// has one more batch to leave out, so a few always do.
const repairTries = 8

// Repair is what an audit found that the watermark cannot land.
type Repair struct {
	// Seq is the batch the audit compared with: what a batch after it
	// landed is left out of the repair, so that nothing lands twice.
	Seq int64
	// Missing are, per table, the ids whose current source version never
	// landed.
	Missing map[string][]int32
	// Deleted are, per table, the ids gone from the source.
	Deleted map[string][]int32
}

// LandRepair lands, from tx (a snapshot from OpenSnapshot taken at
// snapshotAt, the one the audit read), the current version of every missing
// row and a tombstone for every deleted id, as one batch whose manifest is
// marked as a repair, on top of the lake's newest batch. Ingest's state
// carries over unchanged: the repaired versions lie below every window.
//
// The cycles go on while the audit runs, so batches may have landed after
// the one it compared with (rep.Seq). The repair leaves out what they
// landed: a missing id of which one landed the version the audit read, or
// a newer one, or a tombstone (landing the audit's version after it would
// bring a deleted row back); a deleted id that one tombstoned already, or
// landed a version of (it came back). The manifest is created exclusively,
// so when another run commits the batch first the repair reads what that
// batch landed and goes again on top of it; after repairTries such races
// the result says Conflict and nothing landed.
func LandRepair(ctx context.Context, tx pgx.Tx, snapshotAt time.Time, b *lake.Bucket, rep Repair, logger *slog.Logger) (Result, error) {
	start := time.Now()
	res := Result{RunID: lake.NewRunID(), Rows: map[string]int64{}}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("stage", "ingest", "run_id", res.RunID)
	stamps, err := auditedStamps(ctx, tx, rep.Missing)
	if err != nil {
		return res, fmt.Errorf("repair: %w", err)
	}
	for try := 1; ; try++ {
		seq, prev, err := LoadState(ctx, b)
		if err != nil {
			return res, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("repair: %w", err))
		}
		if seq < rep.Seq {
			return res, errkind.Wrap(errkind.LedgerMismatch, fmt.Errorf("repair: the ingestion bucket ends at batch %s, before batch %s the audit compared with",
				lake.BatchID(seq), lake.BatchID(rep.Seq)))
		}
		if rep, err = rep.without(ctx, b, seq, stamps); err != nil {
			return res, err
		}
		l := &landing{bucket: b, seq: seq + 1, runID: res.RunID, now: start, log: log}
		r, err := l.land(ctx, repairRead{tx: tx, snapshotAt: snapshotAt, rep: rep, state: prev}, res)
		if err == nil && r.Sequence != 0 {
			r.Tombstones = map[string]int{}
			for t, ids := range rep.Deleted {
				r.Tombstones[t] = len(ids)
			}
		}
		if err != nil || !r.Conflict || try == repairTries {
			return r, err
		}
		log.Info("another run committed the repair's batch first: the repair goes again on top of it", "batch", lake.BatchID(seq+1))
	}
}

// auditedStamps reads, in tx, the last_updated (µs) of every missing id:
// the versions the audit found missing.
func auditedStamps(ctx context.Context, tx pgx.Tx, missing map[string][]int32) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	for _, table := range totesys.Tables {
		ids := missing[table.Name]
		if len(ids) == 0 {
			continue
		}
		stamps := make(map[int32]int64, len(ids))
		err := readVersions(ctx, tx, table, pgx.Identifier{table.Key}.Sanitize()+" = ANY($1::int4[])",
			func(id int32, us int64) { stamps[id] = us }, ids)
		if err != nil {
			return nil, err
		}
		out[table.Name] = stamps
	}
	return out, nil
}

// without is rep less what the batches after rep.Seq, through through,
// landed (see LandRepair), on top of batch through. stamps are the
// missing versions' last_updated.
func (rep Repair) without(ctx context.Context, b *lake.Bucket, through int64, stamps map[string]map[int32]int64) (Repair, error) {
	out := Repair{Seq: through, Missing: cloneIDs(rep.Missing), Deleted: cloneIDs(rep.Deleted)}
	for seq := rep.Seq + 1; seq <= through; seq++ {
		var m lake.Manifest
		if err := b.ReadManifest(ctx, seq, &m); err != nil {
			return out, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("repair: %w", err))
		}
		for _, table := range totesys.Tables {
			t := table.Name
			if len(out.Missing[t]) == 0 && len(out.Deleted[t]) == 0 {
				continue
			}
			landed, err := newestLanded(ctx, b, m, table)
			if err != nil {
				return out, fmt.Errorf("repair: batch %s: %w", m.Batch, err)
			}
			dead := map[int32]bool{}
			for _, id := range m.Deleted[t] {
				dead[id] = true
			}
			out.Missing[t] = slices.DeleteFunc(out.Missing[t], func(id int32) bool {
				us, ok := landed[id]
				return dead[id] || ok && us >= stamps[t][id]
			})
			out.Deleted[t] = slices.DeleteFunc(out.Deleted[t], func(id int32) bool {
				_, ok := landed[id]
				return dead[id] || ok
			})
		}
	}
	return Repair{Seq: through, Missing: cloneIDs(out.Missing), Deleted: cloneIDs(out.Deleted)}, nil
}

// cloneIDs copies ids per table, leaving out the tables with none.
func cloneIDs(ids map[string][]int32) map[string][]int32 {
	out := map[string][]int32{}
	for t, v := range ids {
		if len(v) > 0 {
			out[t] = slices.Clone(v)
		}
	}
	return out
}

// newestLanded is the newest last_updated (µs) of each id that m's object
// of table holds, read from the object verified against m.
func newestLanded(ctx context.Context, b *lake.Bucket, m lake.Manifest, table totesys.Table) (map[int32]int64, error) {
	newest := map[int32]int64{}
	err := landedVersions(ctx, b, m, table, func(id int32, us int64) {
		if was, ok := newest[id]; !ok || us > was {
			newest[id] = us
		}
	})
	return newest, err
}

// landedVersions streams to fn the (id, last_updated in µs) of every
// version m's object of table holds (none when it has none), read from
// the object verified against m.
func landedVersions(ctx context.Context, b *lake.Bucket, m lake.Manifest, table totesys.Table, fn func(id int32, us int64)) error {
	obj, ok := m.Table(table.Name)
	if !ok {
		return nil
	}
	p, err := lake.OpenObject(ctx, b, obj)
	if err != nil {
		return errkind.Default(errkind.BucketReadFailed, err)
	}
	defer p.Close()
	if err := lake.ReadVersions(p, table.Key, totesys.LastUpdated, fn); err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, err)
	}
	return nil
}

// repairRead is LandRepair's reader: the current version of each missing
// row, by id, and the tombstones.
type repairRead struct {
	tx         pgx.Tx
	snapshotAt time.Time
	rep        Repair
	state      State // carried over
}

func (p repairRead) read(ctx context.Context, l *landing) (batchRead, error) {
	b := batchRead{manifest: lake.Manifest{Repair: true, SnapshotAt: p.snapshotAt}, state: p.state}
	b.state.Gone = gone(p.state.Gone, p.rep.Deleted)
	for _, table := range totesys.Tables {
		ids := p.rep.Missing[table.Name]
		if len(ids) == 0 {
			continue
		}
		r := tableRun{table: table, only: ids, now: l.now}
		rd, err := r.land(ctx, p.tx, l, l.log)
		if err != nil {
			return b, fmt.Errorf("repair: %w", err)
		}
		if rd.tw.rows > 0 {
			b.manifest.Tables = append(b.manifest.Tables, rd.obj)
		}
	}
	for table, ids := range p.rep.Deleted {
		if len(ids) > 0 {
			if b.manifest.Deleted == nil {
				b.manifest.Deleted = map[string][]int32{}
			}
			b.manifest.Deleted[table] = ids
		}
	}
	return b, nil
}
