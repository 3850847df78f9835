package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// poll is Run's reader: it reads each table's versions stamped after its
// window's start, in one snapshot of the source (see the package doc),
// the tables in order up to the batch's bound, reading ahead when the run
// has caught up (see readAhead).
type poll struct {
	opts       Options
	prevSeq    int64
	prev       State
	tx         pgx.Tx
	snapshot   string // the name of tx's snapshot when it imported one (a slot's)
	snapshotAt time.Time
	close      func() // ends the snapshot; may be called more than once
	log        *slog.Logger
	// budget is what is left of the batch's bound as its tables are read.
	budget batchBudget
	// whole are the big tables every run reads whole (see unindexed).
	whole map[string]int64
}

// openPoll takes the snapshot that the batch after prevSeq, whose state is
// prev, is read in.
func openPoll(ctx context.Context, opts Options, prevSeq int64, prev State, log *slog.Logger) (*poll, error) {
	tx, snapshotAt, closeSource, err := OpenSnapshot(ctx, opts.SourceURL)
	if err != nil {
		return nil, err
	}
	return &poll{opts: opts, prevSeq: prevSeq, prev: prev, tx: tx, snapshotAt: snapshotAt, close: closeSource, log: log}, nil
}

// read lands the tables' new versions through l, in order, until the
// batch's bound, and ends the snapshot.
func (p *poll) read(ctx context.Context, l *landing) (batchRead, error) {
	defer p.close()
	b := batchRead{state: State{SnapshotAt: p.snapshotAt, Tables: map[string]*TableState{}, Gone: p.prev.Gone},
		skew: map[string]time.Duration{}, manifest: lake.Manifest{SnapshotAt: p.snapshotAt}}
	p.budget = batchBudget{left: p.opts.MaxBatchRows, bounded: p.opts.MaxBatchRows > 0}
	p.whole = unindexed(ctx, p.tx, p.opts.scanAdviceRows(), p.log)
	runs := make([]*tableRun, len(totesys.Tables))
	for i, table := range totesys.Tables {
		runs[i] = &tableRun{table: table, prev: p.prev.Tables[table.Name], prevSnapshot: p.prev.snapshotOf(table.Name),
			snapshotAt: p.snapshotAt, lookback: p.opts.Lookback, now: l.now, limit: p.budget.left}
	}
	var ahead []tableRead
	if p.prevSeq > 0 && !p.prev.More && p.whole != nil && len(p.whole) == 0 {
		// Caught up, every big table indexed: see readAhead.
		var err error
		if ahead, err = readAhead(ctx, p.tx, p.opts.SourceURL, p.snapshot, runs, p.budget, l, p.log); err != nil {
			return b, err
		}
	}
	for i, r := range runs {
		var rd tableRead
		if i < len(ahead) && ahead[i].tw != nil {
			if ahead[i].stands(p.budget) {
				rd = ahead[i]
			} else {
				// Read whole ahead, it is more than the bound has left:
				// the next batch's, as is every table after it.
				p.budget.left = 0
			}
		}
		if err := p.table(ctx, r, rd, l, &b); err != nil {
			return b, err
		}
	}
	b.state.More = b.more
	return b, nil
}

// table lands one table's new versions, read already ahead (rd) or now,
// and records its state in b; one the bound left out keeps its state.
func (p *poll) table(ctx context.Context, r *tableRun, rd tableRead, l *landing, b *batchRead) error {
	name := r.table.Name
	r.limit = p.budget.left
	if p.budget.spent() {
		// Not read in this snapshot: its state stays as it was, with the
		// snapshot it was read in.
		b.state.Tables[name] = r.unread()
		b.skew[name] = b.state.Tables[name].Skew
		b.more = true
		return nil
	}
	if rd.tw == nil {
		var err error
		if rd, err = r.land(ctx, p.tx, l, p.log); err != nil {
			return err
		}
	}
	tw := rd.tw
	if tw.rows > 0 {
		b.manifest.Tables = append(b.manifest.Tables, rd.obj)
		if tw.watermark != nil {
			b.manifest.SourceNewest = maxTime(b.manifest.SourceNewest, tw.watermark.To)
		}
	}
	ts := r.nextState(rd, l.seq)
	r.reportSkew(ts, p.log)
	if r.adviseIndex(ts, p.whole) {
		b.advise = append(b.advise, name)
	}
	b.skew[name] = ts.Skew
	b.state.Tables[name] = ts
	p.budget.take(tw.rows)
	b.more = b.more || rd.partial
	return nil
}
