package warehouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// LedgerEntry is one loaded batch, as the warehouse's load ledger records it.
type LedgerEntry struct {
	// Sequence is the batch's sequence number; 0 in LastLoad's answer when
	// nothing has been loaded.
	Sequence int64 `json:"sequence"`
	// Batch is the batch's id.
	Batch string `json:"batch"`
	// Rows is the rows written per warehouse table.
	Rows map[string]int64 `json:"rows"`
	// SourceNewest is the newest source last_updated among the batch's rows
	// (zero when the manifest did not say).
	SourceNewest time.Time `json:"source_newest,omitzero"`
	// LoadedAt is when the batch's load finished (the warehouse's clock).
	LoadedAt time.Time `json:"loaded_at"`
	// Seconds is how long the batch took to load.
	Seconds float64 `json:"seconds"`
	// Lag is LoadedAt - SourceNewest: how long the newest change of the batch
	// took to reach the warehouse (zero when SourceNewest is unknown).
	Lag time.Duration `json:"lag_ns,omitempty"`
}

// Counts returns the number of rows in each warehouse table of the schema
// (the dimensions and facts, not Sandstone's own tables). A table that does
// not exist is left out, so a warehouse never loaded gives an empty map.
func (w *Warehouse) Counts(ctx context.Context) (map[string]int64, error) {
	out, err := w.counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("count warehouse rows: %w", err)
	}
	return out, nil
}

func (w *Warehouse) counts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	rows, err := w.conn.Query(ctx, `SELECT c.relname::text FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')`, string(w.s), TableNames())
	if err != nil {
		return nil, err
	}
	present, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var parts []string
	var args []any
	for _, t := range TableNames() { // in load order
		if slices.Contains(present, t) {
			args = append(args, t)
			parts = append(parts, fmt.Sprintf("SELECT $%d::text, count(*) FROM %s", len(args), w.s.ident(t)))
		}
	}
	if len(parts) == 0 {
		return out, nil
	}
	rows, err = w.conn.Query(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, err
	}
	var name string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error {
		out[name] = n
		return nil
	})
	return out, err
}

// LoadedSeq returns the sequence number of the newest batch loaded into the
// schema, 0 when none (or when the warehouse has not been set up).
func (w *Warehouse) LoadedSeq(ctx context.Context) (int64, error) {
	return loadedSeq(ctx, w.conn, w.s)
}

// LastLoad returns the ledger entry of the newest batch loaded; its
// Sequence is 0 when nothing has been loaded.
func (w *Warehouse) LastLoad(ctx context.Context) (LedgerEntry, error) {
	entries, err := w.Freshness(ctx, 1)
	if err != nil || len(entries) == 0 {
		return LedgerEntry{}, err
	}
	return entries[0], nil
}

// Freshness returns the ledger entries of the n newest batches loaded,
// newest first, each with its Lag: how long after its newest source change
// the batch reached the warehouse.
func (w *Warehouse) Freshness(ctx context.Context, n int) ([]LedgerEntry, error) {
	out, err := w.freshness(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("read the load ledger: %w", err)
	}
	return out, nil
}

func (w *Warehouse) freshness(ctx context.Context, n int) ([]LedgerEntry, error) {
	ok, err := tableExists(ctx, w.conn, w.s, ledgerTable)
	if err != nil || !ok {
		return nil, err
	}
	rows, err := w.conn.Query(ctx, "SELECT sequence, batch, rows, source_newest, loaded_at, seconds FROM "+
		w.s.ident(ledgerTable)+" ORDER BY sequence DESC LIMIT $1", n)
	if err != nil {
		return nil, err
	}
	return ledgerEntries(rows)
}

// LongestLoad returns the most seconds a batch of the ledger took to load
// (its Seconds), 0 when nothing has been loaded.
func (w *Warehouse) LongestLoad(ctx context.Context) (float64, error) {
	ok, err := tableExists(ctx, w.conn, w.s, ledgerTable)
	if err != nil || !ok {
		return 0, err
	}
	var s float64
	if err := w.conn.QueryRow(ctx, "SELECT coalesce(max(seconds), 0) FROM "+w.s.ident(ledgerTable)).Scan(&s); err != nil {
		return 0, fmt.Errorf("read the load ledger: %w", err)
	}
	return s, nil
}

// CheckProcessed reports whether the processed bucket holds the batches the
// warehouse's ledger records as loaded, as load checks before it loads: the
// error is of kind LedgerMismatch and says what differs when it does not
// (another, wiped or rebuilt bucket). A warehouse with no ledger agrees with
// any bucket.
func (w *Warehouse) CheckProcessed(ctx context.Context, bucket *lake.Bucket) error {
	ok, err := tableExists(ctx, w.conn, w.s, ledgerTable)
	if err != nil {
		return errkind.Wrap(errkind.LoadFailed, fmt.Errorf("read the load ledger: %w", err))
	}
	if !ok {
		return nil
	}
	return checkLedger(ctx, w.conn, w.s, bucket)
}

// Snapshot is a read-only view of the warehouse at one instant: a
// REPEATABLE READ, READ ONLY transaction on the handle's connection, with
// a search_path that no table of the warehouse can shadow, in which a
// reader sees the ledger (Loaded) and the tables as of the same moment.
type Snapshot struct {
	tx pgx.Tx
	s  schema
}

// LoadedBatch is one batch the load ledger records.
type LoadedBatch struct {
	// Sequence is the batch's sequence number.
	Sequence int64
	// ManifestSHA256 is the SHA-256 of the batch's manifest; empty for a
	// batch loaded before the ledger recorded it.
	ManifestSHA256 string
}

// Snapshot begins a Snapshot; End it after use.
func (w *Warehouse) Snapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := w.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO pg_catalog, pg_temp"); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return &Snapshot{tx: tx, s: w.s}, nil
}

// Tx is the snapshot's transaction, for the reader's own queries.
func (s *Snapshot) Tx() pgx.Tx { return s.tx }

// End ends the snapshot.
func (s *Snapshot) End(ctx context.Context) { _ = s.tx.Rollback(ctx) }

// Loaded returns the batches the ledger records, in sequence order; nil
// when there is no ledger (nothing was ever loaded).
func (s *Snapshot) Loaded(ctx context.Context) ([]LoadedBatch, error) {
	ok, err := tableExists(ctx, s.tx, s.s, ledgerTable)
	if err != nil {
		return nil, fmt.Errorf("check the load ledger: %w", err)
	}
	if !ok {
		return nil, nil
	}
	loaded := []LoadedBatch{}
	var b LoadedBatch
	var sum *string
	// Through to_jsonb, a ledger not yet migrated (no manifest_sha256: no
	// load ran since the upgrade) reads as rows without an identity.
	rows, err := s.tx.Query(ctx, "SELECT sequence, to_jsonb(l)->>'manifest_sha256' FROM "+s.s.ident(ledgerTable)+" l ORDER BY sequence")
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&b.Sequence, &sum}, func() error {
			b.ManifestSHA256 = ""
			if sum != nil {
				b.ManifestSHA256 = *sum
			}
			loaded = append(loaded, b)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("read the load ledger: %w", err)
	}
	return loaded, nil
}

// loadedSeq is the newest sequence in the ledger, 0 when there is none.
func loadedSeq(ctx context.Context, db querier, s schema) (int64, error) {
	ok, err := tableExists(ctx, db, s, ledgerTable)
	if err != nil || !ok {
		return 0, err
	}
	var seq int64
	if err := db.QueryRow(ctx, "SELECT coalesce(max(sequence), 0) FROM "+s.ident(ledgerTable)).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read the load ledger: %w", err)
	}
	return seq, nil
}
