package warehouse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// ledgerHead is the newest row of the load ledger.
type ledgerHead struct {
	seq    int64
	runID  *string // NULL in rows loaded before migration 2
	sha256 *string
}

// newestLoad reads the ledger's newest row; seq is 0 when it is empty.
func newestLoad(ctx context.Context, db querier, s schema) (ledgerHead, error) {
	var h ledgerHead
	// Through to_jsonb, a ledger not yet migrated to 2 reads as rows
	// without an identity.
	err := db.QueryRow(ctx, "SELECT sequence, to_jsonb(l)->>'run_id', to_jsonb(l)->>'manifest_sha256' FROM "+s.ident(ledgerTable)+
		" l ORDER BY sequence DESC LIMIT 1").Scan(&h.seq, &h.runID, &h.sha256)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledgerHead{}, nil
	}
	if err != nil {
		return h, fmt.Errorf("read the load ledger: %w", err)
	}
	return h, nil
}

// checkLedger refuses to load from bucket unless it holds the newest batch
// the ledger records, the same one: a wiped, rebuilt or other processed
// bucket numbers its batches from 1 again, and its batches would be taken
// for those loaded (or, past the ledger's, applied on top of another
// history). Ledger rows from before migration 2 have no identity; of those
// only the sequence is checked. The error is of kind LedgerMismatch.
func checkLedger(ctx context.Context, db querier, s schema, bucket *lake.Bucket) error {
	h, err := newestLoad(ctx, db, s)
	if err != nil || h.seq == 0 {
		return errkind.Wrap(errkind.LoadFailed, err)
	}
	var m lake.Manifest
	sum, err := bucket.ReadManifestSum(ctx, h.seq, &m)
	var found string
	switch {
	case errors.Is(err, lake.ErrNotFound):
		found = fmt.Sprintf("the ledger's newest batch is %s, and the bucket has no batch %d", lake.BatchID(h.seq), h.seq)
	case err != nil:
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("load: batch %s: %w", lake.BatchID(h.seq), err))
	case h.sha256 != nil && *h.sha256 != sum:
		run := ""
		if h.runID != nil {
			run = *h.runID
		}
		found = fmt.Sprintf("batch %s in the ledger has manifest sha256 %s (transform run %s), the bucket's has %s (run %s)",
			lake.BatchID(h.seq), *h.sha256, run, sum, m.RunID)
	default:
		return nil
	}
	return errkind.Wrap(errkind.LedgerMismatch, fmt.Errorf(
		"load: the processed bucket %s does not hold the batches this warehouse (schema %s) loaded: %s. "+
			"Point --processed-bucket at the bucket this warehouse was loaded from, "+
			"or rebuild the warehouse from these buckets into an empty schema",
		bucket.URL(), q(string(s)), found))
}

// checkLengths refuses, before anything is written, batches with a text
// value longer than its warehouse column's length limit (varchar(n) of a
// table prepared by someone else), which would otherwise fail the COPY of
// every load. It reads the manifests of batches seqs, whose objects record
// their longest values (lake.Object.MaxLen; objects from before that are
// not checked), up to the first it cannot read (which the batch loop then
// reports, after loading those before it), and names every column too
// short, the length it needs and the batch that needs it. The error is of
// kind WarehouseSchemaMismatch.
func checkLengths(ctx context.Context, p *plan, s schema, bucket *lake.Bucket, seqs []int64) error {
	type need struct {
		n   int
		seq int64
	}
	needs := map[string]need{} // "table.column"
	for _, seq := range seqs {
		var m lake.Manifest
		if err := bucket.ReadManifest(ctx, seq, &m); err != nil {
			break
		}
		for _, o := range m.Tables {
			for col, n := range o.MaxLen {
				limit, ok := p.lengths[o.Table][col]
				if k := o.Table + "." + col; ok && n > limit && n > needs[k].n {
					needs[k] = need{n, seq}
				}
			}
		}
	}
	if len(needs) == 0 {
		return nil
	}
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(needs)) {
		table, col, _ := strings.Cut(k, ".")
		n := needs[k]
		problems = append(problems, fmt.Sprintf(
			"%s.%s holds at most %d characters, and batch %s has a value of %d (widen it: ALTER TABLE %s ALTER COLUMN %s TYPE varchar(%d), or text)",
			table, col, p.lengths[table][col], lake.BatchID(n.seq), n.n, s.ident(table), q(col), n.n))
	}
	return errkind.Wrap(errkind.WarehouseSchemaMismatch, fmt.Errorf(
		"warehouse schema %s does not fit the batches to load, so none was loaded: %s",
		q(string(s)), strings.Join(problems, "; ")))
}
