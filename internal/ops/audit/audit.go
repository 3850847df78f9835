// Package audit compares the source with what has landed in the ingestion
// bucket, to find what no timestamp watermark can see: a version that
// committed later than the lookback, a row backfilled with an old
// last_updated (missing), and a row deleted from the source (deleted).
//
// It reads each source table's (id, last_updated) in one read-only snapshot
// and every landed (id, last_updated) from the ingested objects (two
// columns of each, verified against the manifest), and keeps per id only
// the source's current stamp and two bits: 8 bytes and a quarter per id,
// never a row, for at most passIDs ids at a time, so its memory stays the
// same however large the tables grow. A source version stamped inside the
// next ingest's window is pending, not missing: the pipeline will land it.
//
// What an audit verified of the lake it keeps in a checkpoint in the
// bucket (see CheckpointPrefix), so that the next audit reads only the
// batches landed since, and the source.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// Examples is how many ids a finding names.
const Examples = 5

// Options configure an audit.
type Options struct {
	SourceURL string
	Bucket    *lake.Bucket
	// Lookback is ingest's; it decides which versions are pending.
	Lookback time.Duration
	// Repair lands what the audit found missing, and tombstones for what
	// it found deleted, as one ingestion batch marked as a repair.
	Repair bool
	Logger *slog.Logger
	// Processed, WarehouseURL and WarehouseSchema, when the first two are
	// set, have the audit also check the warehouse against the processed
	// bucket (see CheckWarehouse).
	Processed       *lake.Bucket
	WarehouseURL    string
	WarehouseSchema string
	// sizes bound the passes over each table; tests make them small.
	sizes passSizes
}

// Report is what an audit found.
type Report struct {
	At time.Time `json:"at"`
	// Batch is the newest ingested batch the audit compared with.
	Batch string `json:"batch"`
	// Checkpoint is the batch of the checkpoint the audit started from,
	// reading only the batches after it; "" when it read every batch.
	Checkpoint string                  `json:"checkpoint,omitempty"`
	Tables     map[string]*TableReport `json:"tables"`
	// Warehouse is each warehouse table's findings against the processed
	// bucket; nil when the warehouse was not checked.
	Warehouse map[string]*WarehouseTable `json:"warehouse,omitempty"`
	// Drift is true when any table has a missing row or an unrecorded
	// deletion, or any warehouse table a missing, duplicated or stale row.
	Drift bool `json:"drift"`
	// Repaired is the batch a repair landed; nil without --repair or when
	// there was nothing to mend.
	Repaired *Repaired `json:"repaired,omitempty"`
	Seconds  float64   `json:"seconds"`
}

// Repaired tells what a repair landed.
type Repaired struct {
	Batch      string           `json:"batch"`
	Rows       map[string]int64 `json:"rows"`
	Tombstones map[string]int   `json:"tombstones"`
}

// TableReport is one source table's findings.
type TableReport struct {
	// SourceRows counts the rows in the source.
	SourceRows int64 `json:"source_rows"`
	// Landed counts the versions in the ingestion bucket.
	Landed int64 `json:"landed_versions"`
	// Missing counts source rows whose current version never landed and
	// that the next ingest will not pick up.
	Missing int64 `json:"missing"`
	// Pending counts source rows whose current version the next ingest
	// will land.
	Pending int64 `json:"pending"`
	// Deleted counts ids that landed and are gone from the source, with
	// no tombstone yet.
	Deleted int64 `json:"deleted"`
	// DeletedRecorded counts ids gone from the source whose deletion a
	// repair recorded (a tombstone).
	DeletedRecorded int64   `json:"deleted_recorded"`
	MissingExamples []int32 `json:"missing_examples,omitempty"`
	DeletedExamples []int32 `json:"deleted_examples,omitempty"`
}

// Run audits every source table against the ingestion bucket.
func Run(ctx context.Context, opts Options) (Report, error) {
	start := time.Now()
	r := Report{At: start.UTC(), Tables: map[string]*TableReport{}}
	if opts.Lookback == 0 {
		opts.Lookback = config.DefaultLookback
	}
	switch {
	case opts.SourceURL == "":
		return r, errkind.Wrap(errkind.ConfigInvalid, errors.New("audit: no source URL"))
	case opts.Bucket == nil:
		return r, errkind.Wrap(errkind.ConfigInvalid, errors.New("audit: no ingestion bucket"))
	}
	// The state first, then the snapshot: whatever lands in between is
	// inside the state's next window, so pending, never missing.
	seq, st, err := ingest.LoadState(ctx, opts.Bucket)
	if err != nil {
		return r, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("audit: %w", err))
	}
	r.Batch = lake.BatchID(seq)
	ck := loadCheckpoint(ctx, opts.Bucket, seq, opts.logger())
	defer ck.close()
	if ck != nil {
		r.Checkpoint = lake.BatchID(ck.seq())
	}
	batches, err := readBatches(ctx, opts.Bucket, ck.seq(), seq, opts.readers())
	if err != nil {
		return r, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("audit: %w", err))
	}
	tx, snapshotAt, closeSource, err := ingest.OpenSnapshot(ctx, opts.SourceURL)
	if err != nil {
		return r, err
	}
	defer closeSource()
	rep, err := auditSource(ctx, tx, opts, lakeView{ck: ck, batches: batches}, st, seq, &r)
	if err != nil {
		return r, err
	}
	// A repair lands what the source holds; the warehouse's drift is not
	// its to mend.
	sourceDrift := r.Drift
	if opts.Processed != nil && opts.WarehouseURL != "" {
		wh, err := checkWarehousePasses(ctx, opts.Processed, opts.WarehouseURL, opts.WarehouseSchema, opts.sizes)
		if err != nil {
			return r, fmt.Errorf("audit: %w", err)
		}
		r.Warehouse = wh
		for _, t := range wh {
			r.Drift = r.Drift || t.drift()
		}
	}
	if opts.Repair && sourceDrift {
		res, err := ingest.LandRepair(ctx, tx, snapshotAt, opts.Bucket, rep, opts.Logger)
		if err != nil {
			return r, fmt.Errorf("audit: %w", err)
		}
		if res.Conflict {
			return r, errkind.Wrap(errkind.Internal, errors.New("audit: another ingest committed the repair's batch first: audit again"))
		}
		// What the batches since the audit landed is left out: the
		// repair may land less, or nothing.
		if res.Sequence != 0 {
			r.Repaired = &Repaired{Batch: res.Batch, Rows: res.Rows, Tombstones: res.Tombstones}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// auditSource audits every source table into r, and saves a checkpoint of
// batch seq when it is past lv's; it returns what a repair lands.
func auditSource(ctx context.Context, tx pgx.Tx, opts Options, lv lakeView, st ingest.State, seq int64, r *Report) (ingest.Repair, error) {
	if seq > lv.ck.seq() {
		lv.w = newCheckpointWriter(ctx, opts.Bucket, seq)
		defer lv.w.abort()
	}
	rep := ingest.Repair{Seq: seq, Missing: map[string][]int32{}, Deleted: map[string][]int32{}}
	for _, table := range totesys.Tables {
		tr, missing, deleted, err := auditTable(ctx, tx, opts, lv, st, table)
		if err != nil {
			return rep, err
		}
		r.Drift = r.Drift || tr.Missing > 0 || tr.Deleted > 0
		r.Tables[table.Name] = tr
		rep.Missing[table.Name], rep.Deleted[table.Name] = missing, deleted
	}
	if lv.w != nil {
		if err := lv.w.commit(); err != nil {
			opts.logger().Warn("the audit checkpoint could not be saved; the next audit reads more batches", logging.KeyStage, Stage,
				logging.KeyErrorKind, string(errkind.BucketWriteFailed), logging.KeyError, err.Error())
		}
	}
	return rep, nil
}

// lakeView is what an audit reads of the landed lake: the checkpoint it
// starts from (nil for none), the batches after it, and the writer of its
// own checkpoint (nil for none).
type lakeView struct {
	ck      *checkpoint
	batches *batches
	w       *checkpointWriter
}

// auditTable compares one source table with its landed versions, a range
// of ids at a time (see passIDs), and returns its findings and, for a
// repair, every missing and deleted id.
func auditTable(ctx context.Context, tx pgx.Tx, opts Options, lv lakeView, st ingest.State,
	table totesys.Table) (tr *TableReport, missing, deleted []int32, err error) {
	maxID, err := largestID(ctx, tx, table)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: %w", err)
	}
	window, windowed := st.NextWindow(table.Name, opts.Lookback)
	pending := func(us int64) bool { return !windowed || us > window.UnixMicro() }
	tr = &TableReport{}
	if lv.w != nil {
		lv.w.startTable(table.Name)
	}
	for p := range passesOf(maxID, opts.sizes.orDefaults().ids) {
		ids := newIDTable(p)
		ids.keepAll = opts.Repair
		if err := ingest.ReadVersions(ctx, tx, table, p.from, p.to, ids.setSource); err != nil {
			return nil, nil, nil, fmt.Errorf("audit: %w", err)
		}
		if err := lv.ck.apply(table.Name, ids); err != nil {
			return nil, nil, nil, fmt.Errorf("audit: %w", err)
		}
		for _, id := range lv.batches.deleted[table.Name] {
			ids.setTombstone(id)
		}
		landedRows, err := landedAll(ctx, opts.Bucket, lv.batches.objects[table.Name], table, ids, opts.readers())
		if err != nil {
			return nil, nil, nil, fmt.Errorf("audit %s: %w", table.Name, err)
		}
		tr.SourceRows += ids.sourceRows
		tr.Landed = lv.ck.landed(table.Name) + landedRows // every pass reads every landed version
		ids.findings(tr, pending)
		missing, deleted = append(missing, ids.missing...), append(deleted, ids.deleted...)
		if lv.w != nil {
			lv.w.addPass(ids)
		}
	}
	if lv.w != nil {
		lv.w.endTable(tr.Landed)
	}
	return tr, missing, deleted, nil
}

// readers bounds the objects and manifests an audit of an S3 bucket reads
// at once: there each read is a network round trip, which one at a time
// would add up past Lambda's 15 minutes at tens of thousands of batches.
// A file or memory bucket is read one at a time: with no round trip to
// hide, more readers only share the same cores (docs/benchmarks.md).
const readers = 16

// readers is how many reads the audit has in flight at once.
func (o Options) readers() int {
	if strings.HasPrefix(o.Bucket.URL(), "s3://") {
		return readers
	}
	return 1
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// batches is what the audit keeps of the ingested batches it reads: per
// source table, the objects as their manifests list them (key, rows, size
// and SHA-256 only), and the tombstones. Not whole manifests: a year of
// them held at once would weigh more than the audit's passes.
type batches struct {
	mu      sync.Mutex
	objects map[string][]objectRef
	deleted map[string][]int32
}

// objectRef is one object of a table in a few bytes: its SHA-256 as bytes
// (summed false for an entry without one, which is not verified).
type objectRef struct {
	key         string
	rows, bytes int64
	sum         [sha256.Size]byte
	summed      bool
}

// object is the manifest entry of ref, an object of table.
func (ref objectRef) object(table string) lake.Object {
	obj := lake.Object{Table: table, Key: ref.key, Rows: ref.rows, Bytes: ref.bytes}
	if ref.summed {
		obj.SHA256 = hex.EncodeToString(ref.sum[:])
	}
	return obj
}

// add keeps what the audit needs of m.
func (bs *batches) add(m *lake.Manifest) error {
	refs := make([]objectRef, len(m.Tables))
	for i, o := range m.Tables {
		refs[i] = objectRef{key: o.Key, rows: o.Rows, bytes: o.Bytes, summed: o.SHA256 != ""}
		if n, err := hex.Decode(refs[i].sum[:], []byte(o.SHA256)); refs[i].summed && (err != nil || n != sha256.Size) {
			return fmt.Errorf("manifest %s: object %s: SHA-256 %q is not one", m.Batch, o.Key, o.SHA256)
		}
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for i, o := range m.Tables {
		bs.objects[o.Table] = append(bs.objects[o.Table], refs[i])
	}
	for t, ids := range m.Deleted {
		bs.deleted[t] = append(bs.deleted[t], ids...)
	}
	return nil
}

// readBatches reads the ingest manifests of batches after+1 to seq, n at a
// time.
func readBatches(ctx context.Context, b *lake.Bucket, after, seq int64, n int) (*batches, error) {
	seqs, err := b.SeqsAfter(ctx, after)
	if err != nil {
		return nil, err
	}
	for len(seqs) > 0 && seqs[len(seqs)-1] > seq {
		seqs = seqs[:len(seqs)-1]
	}
	bs := &batches{objects: map[string][]objectRef{}, deleted: map[string][]int32{}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for _, s := range seqs {
		g.Go(func() error {
			var m lake.Manifest
			if err := b.ReadManifest(gctx, s, &m); err != nil {
				return err
			}
			return bs.add(&m)
		})
	}
	return bs, g.Wait()
}

// landedAll marks the versions the objects hold, n objects at a time, and
// returns how many they hold.
func landedAll(ctx context.Context, b *lake.Bucket, objs []objectRef, table totesys.Table, ids *idTable, n int) (int64, error) {
	var mu sync.Mutex // guards ids and total
	var total int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for _, ref := range objs {
		g.Go(func() error {
			type version struct {
				id int32
				us int64
			}
			// The versions go to ids a few thousand at a time, under the
			// lock: not a whole object's, which may be the initial load's.
			versions := make([]version, 0, landedAtOnce)
			flush := func() {
				mu.Lock()
				defer mu.Unlock()
				for _, v := range versions {
					ids.setLanded(v.id, v.us)
				}
				total += int64(len(versions))
				versions = versions[:0]
			}
			err := landed(gctx, b, ref.object(table.Name), table, func(id int32, us int64) {
				if versions = append(versions, version{id, us}); len(versions) == landedAtOnce {
					flush()
				}
			})
			flush()
			return err
		})
	}
	return total, g.Wait()
}

// landedAtOnce is how many versions a reader of landedAll holds.
const landedAtOnce = 8192

// landed calls each with every version obj holds, and checks their count
// against its manifest.
func landed(ctx context.Context, b *lake.Bucket, obj lake.Object, table totesys.Table, each func(id int32, us int64)) error {
	p, err := lake.OpenObject(ctx, b, obj)
	if err != nil {
		return errkind.Default(errkind.BucketReadFailed, err)
	}
	defer p.Close()
	var n int64
	err = lake.ReadVersions(p, table.Key, totesys.LastUpdated, func(id int32, us int64) {
		n++
		each(id, us)
	})
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, err)
	}
	if n != obj.Rows {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("%s holds %d rows, its manifest says %d", obj.Key, n, obj.Rows))
	}
	return nil
}
