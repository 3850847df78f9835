package audit

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/totesys"
)

// absent marks an id the source does not hold.
const absent = math.MinInt64 + 1

// maxDense bounds the ids held in slices; past it, a map.
const maxDense = 1 << 26

// denseIDs is how many ids, from 0, the table's idTable holds in slices:
// up to its largest id while the ids are serial (no more than four times as
// many slots as the catalogue estimates rows), and never past maxDense.
func denseIDs(ctx context.Context, tx pgx.Tx, table totesys.Table) (int, error) {
	var maxID int64
	var estimate float64
	err := tx.QueryRow(ctx, "SELECT coalesce(max("+pgx.Identifier{table.Key}.Sanitize()+"), 0)::int8, "+
		"(SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = to_regclass($1)) FROM "+pgx.Identifier{table.Name}.Sanitize(),
		pgx.Identifier{table.Name}.Sanitize()).Scan(&maxID, &estimate)
	if err != nil {
		return 0, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("size %s: %w", table.Name, err))
	}
	limit := int64(min(float64(maxDense), max(4*estimate, 1<<20)))
	return int(min(maxID+1, limit)), nil
}

// idTable holds, per id, the source's current last_updated and two bits:
// whether that version landed, and whether any version did. Ids below
// len(stamp) index slices (8 bytes and a quarter an id); others go to a map.
type idTable struct {
	stamp         []int64  // source's last_updated in µs, or absent
	found, landed []uint64 // bitsets
	sparse        map[int32]*idEntry
	tombstones    map[int32]bool
	sourceRows    int64
	// keepAll keeps every missing and deleted id (for a repair), not
	// only the examples.
	keepAll          bool
	missing, deleted []int32
}

type idEntry struct {
	stamp         int64
	found, landed bool
}

func newIDTable(dense int) *idTable {
	t := &idTable{stamp: make([]int64, dense), found: make([]uint64, (dense+63)/64), landed: make([]uint64, (dense+63)/64),
		sparse: map[int32]*idEntry{}, tombstones: map[int32]bool{}}
	for i := range t.stamp {
		t.stamp[i] = absent
	}
	return t
}

func (t *idTable) dense(id int32) bool { return id >= 0 && int(id) < len(t.stamp) }

func set(b []uint64, id int32)      { b[id/64] |= 1 << (id % 64) }
func has(b []uint64, id int32) bool { return b[id/64]&(1<<(id%64)) != 0 }

func (t *idTable) setTombstone(id int32) { t.tombstones[id] = true }

func (t *idTable) entry(id int32) *idEntry {
	e := t.sparse[id]
	if e == nil {
		e = &idEntry{stamp: absent}
		t.sparse[id] = e
	}
	return e
}

func (t *idTable) setSource(id int32, us int64) {
	t.sourceRows++
	if t.dense(id) {
		t.stamp[id] = us
		return
	}
	t.entry(id).stamp = us
}

func (t *idTable) setLanded(id int32, us int64) {
	if t.dense(id) {
		set(t.landed, id)
		if t.stamp[id] == us {
			set(t.found, id)
		}
		return
	}
	e := t.entry(id)
	e.landed = true
	e.found = e.found || e.stamp == us
}

// findings counts the missing, pending and deleted ids into tr.
func (t *idTable) findings(tr *TableReport, pending func(us int64) bool) {
	note := func(id int32, stamp int64, found, landed bool) {
		switch {
		case stamp == absent && landed && t.tombstones[id]:
			tr.DeletedRecorded++
		case stamp == absent && landed:
			tr.Deleted++
			if len(tr.DeletedExamples) < Examples {
				tr.DeletedExamples = append(tr.DeletedExamples, id)
			}
			if t.keepAll {
				t.deleted = append(t.deleted, id)
			}
		case stamp == absent || found:
		case pending(stamp):
			tr.Pending++
		default:
			tr.Missing++
			if len(tr.MissingExamples) < Examples {
				tr.MissingExamples = append(tr.MissingExamples, id)
			}
			if t.keepAll {
				t.missing = append(t.missing, id)
			}
		}
	}
	for i, s := range t.stamp {
		id := int32(i) // #nosec G115 -- i < maxDense
		if s == absent && !has(t.landed, id) {
			continue
		}
		note(id, s, has(t.found, id), has(t.landed, id))
	}
	for id, e := range t.sparse {
		note(id, e.stamp, e.found, e.landed)
	}
}

// idHashes maps ids to 64-bit hashes: 8 bytes and a bit per id in slices
// while ids are serial (below maxDense), a map for the others.
type idHashes struct {
	dense  []uint64
	seen   []uint64 // bitset over dense
	sparse map[int32]uint64
	n      int
}

func newIDHashes() *idHashes { return &idHashes{sparse: map[int32]uint64{}} }

func (m *idHashes) set(id int32, h uint64) {
	if id < 0 || id >= maxDense {
		if _, ok := m.sparse[id]; !ok {
			m.n++
		}
		m.sparse[id] = h
		return
	}
	if int(id) >= len(m.dense) {
		n := max(1024, int(id)+1, len(m.dense)+len(m.dense)/2)
		m.dense = append(m.dense, make([]uint64, n-len(m.dense))...)
		m.seen = append(m.seen, make([]uint64, (n+63)/64-len(m.seen))...)
	}
	if !has(m.seen, id) {
		m.n++
		set(m.seen, id)
	}
	m.dense[id] = h
}

// take returns id's hash and forgets it.
func (m *idHashes) take(id int32) (uint64, bool) {
	if id < 0 || id >= maxDense {
		h, ok := m.sparse[id]
		if ok {
			delete(m.sparse, id)
			m.n--
		}
		return h, ok
	}
	if int(id) >= len(m.dense) || !has(m.seen, id) {
		return 0, false
	}
	m.seen[id/64] &^= 1 << (id % 64)
	m.n--
	return m.dense[id], true
}

func (m *idHashes) len() int { return m.n }

// ids returns up to n of the ids held, smallest first.
func (m *idHashes) ids(n int) []int32 {
	if n <= 0 {
		return nil
	}
	var out []int32
	for _, id := range slices.Sorted(maps.Keys(m.sparse)) {
		if id < 0 {
			out = append(out, id)
		}
	}
	for i := range m.dense {
		if id := int32(i); has(m.seen, id) { // #nosec G115 -- i < maxDense
			out = append(out, id)
		}
		if len(out) >= n {
			return out[:n]
		}
	}
	for _, id := range slices.Sorted(maps.Keys(m.sparse)) {
		if id >= 0 {
			out = append(out, id)
		}
	}
	return out[:min(n, len(out))]
}
