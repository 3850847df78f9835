package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Reading ahead. A run that has caught up lands a few thousand versions a
// table, and with the tables indexed on last_updated it spends most of its
// time waiting on the source's index scans, each on one core, one table
// after another. (A table without the index is scanned whole, in parallel
// by the source already: reading such tables at once measured no faster.)
// Such a run exports its snapshot and reads the tables over several
// connections that all import it, so the batch is still one consistent
// snapshot. The tables read at once share what is left of the batch's
// bound, and a read that reaches it is dropped. The run then takes the
// tables in order (referenced before referencing), each read ahead where
// that read holds every version the table had within what is left of the
// bound; a dropped read is read again in turn, on the run's own connection,
// up to what is left. A table read whole ahead that no longer fits, and
// every table after it, are the next batch's, so such a batch may stop
// short of its bound; the objects read ahead for them stay unreferenced.
// After a batch that stopped at its bound, a run reads in turn from the
// start, as the first run does.

// readers is how many connections a run that reads ahead uses.
const readers = 3

// readAhead reads every table of runs over readers connections: tx's, and
// others in tx's snapshot (which cannot be exported from within a
// savepoint), sharing what is left of the batch's bound between them. A
// connection that cannot be opened leaves its share of the tables to the
// others. snapshot names tx's snapshot when tx imported it (a slot's);
// else tx exports it.
func readAhead(ctx context.Context, tx pgx.Tx, url, snapshot string, runs []*tableRun, budget batchBudget, l *landing, log *slog.Logger) ([]tableRead, error) {
	if snapshot == "" {
		if err := tx.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&snapshot); err != nil {
			return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("ingest: export the snapshot: %w", err))
		}
	}
	var shared *atomic.Int64
	if budget.bounded {
		shared = new(atomic.Int64)
		shared.Store(budget.left)
	}
	ahead := make([]*tableRun, len(runs))
	for i, r := range runs {
		a := *r
		a.shared = shared
		ahead[i] = &a
	}
	next := make(chan int, len(runs))
	for i := range runs {
		next <- i
	}
	close(next)
	out := make([]tableRead, len(runs))
	var opened atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for n := range readers {
		g.Go(func() error {
			rtx := tx
			if n > 0 {
				t, closeTx, err := openTx(gctx, url, snapshot)
				if err != nil {
					log.Info("ingest reads the source over fewer connections", "error", err)
					return nil
				}
				defer closeTx()
				rtx = t
			}
			opened.Add(1)
			for i := range next {
				rd, err := ahead[i].land(gctx, rtx, l, log)
				if err != nil {
					return err
				}
				out[i] = rd
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	log.Debug("ingest read the tables ahead", "connections", opened.Load())
	return out, nil
}

// stands reports whether a table read whole ahead fits in what is left of
// the bound.
func (rd tableRead) stands(b batchBudget) bool {
	return !b.bounded || rd.tw.rows <= b.left
}
