package audit

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// absent marks an id the source does not hold.
const absent = math.MinInt64 + 1

// maxDense bounds the ids held in slices; past it, a map.
const maxDense = 1 << 26

// passIDs bounds the ids one pass over a table holds in slices (8 bytes and
// a quarter each: 35 MB), so that the audit's memory stays the same
// however large the tables grow, unless a test makes passes of a few
// (passSizes). A table with more ids takes more passes, each reading its
// range of the source and the table's landed versions.
const passIDs int64 = 1 << 22

// passSizes bound a pass over a table: ids, its ids (passIDs), and
// versions, a fact's versions (factVersions). Zero takes those; tests set
// smaller ones (Options.sizes), to make many passes.
type passSizes struct {
	ids      int64
	versions int
}

// orDefaults is s with passIDs and factVersions for its zero fields.
func (s passSizes) orDefaults() passSizes {
	if s.ids == 0 {
		s.ids = passIDs
	}
	if s.versions == 0 {
		s.versions = factVersions
	}
	return s
}

// pass is one range of a table's ids, [from, to): the first reaches down to
// every negative id, the last up to every id past the largest. Ids from base
// on, dense of them, index slices; the others of the range go to a map.
type pass struct {
	from, to int64
	base     int64
	dense    int
}

// passesOf are the ranges of size ids that together cover every id.
func passesOf(maxID, size int64) iter.Seq[pass] {
	return func(yield func(pass) bool) {
		for base := int64(0); ; base += size {
			p := pass{from: base, to: base + size, base: base, dense: int(max(0, min(size, maxID+1-base)))}
			if base == 0 {
				p.from = math.MinInt64
			}
			last := base+size > maxID
			if last {
				p.to = math.MaxInt64
			}
			if !yield(p) || last {
				return
			}
		}
	}
}

// largestID is the table's largest id (0 when it is empty).
func largestID(ctx context.Context, tx pgx.Tx, table totesys.Table) (int64, error) {
	var maxID int64
	err := tx.QueryRow(ctx, "SELECT coalesce(max("+pgx.Identifier{table.Key}.Sanitize()+"), 0)::int8 FROM "+
		pgx.Identifier{table.Name}.Sanitize()).Scan(&maxID)
	if err != nil {
		return 0, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("size %s: %w", table.Name, err))
	}
	return maxID, nil
}

// idTable holds, for the ids of one pass, the source's current
// last_updated and two bits: whether that version landed, and whether any
// version did. Ids from base index slices; the others of the pass go to a
// map.
type idTable struct {
	pass
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

func newIDTable(p pass) *idTable {
	t := &idTable{pass: p, stamp: make([]int64, p.dense), found: make([]uint64, (p.dense+63)/64), landed: make([]uint64, (p.dense+63)/64),
		sparse: map[int32]*idEntry{}, tombstones: map[int32]bool{}}
	for i := range t.stamp {
		t.stamp[i] = absent
	}
	return t
}

// in reports whether id belongs to the table's pass.
func (t *idTable) in(id int32) bool { return int64(id) >= t.from && int64(id) < t.to }

// slot is id's index in the slices, or -1.
func (t *idTable) slot(id int32) int32 {
	if off := int64(id) - t.base; off >= 0 && off < int64(len(t.stamp)) {
		return int32(off) // #nosec G115 -- below passIDs
	}
	return -1
}

func set(b []uint64, id int32)      { b[id/64] |= 1 << (id % 64) }
func has(b []uint64, id int32) bool { return b[id/64]&(1<<(id%64)) != 0 }

func (t *idTable) setTombstone(id int32) {
	if t.in(id) {
		t.tombstones[id] = true
	}
}

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
	if i := t.slot(id); i >= 0 {
		t.stamp[i] = us
		return
	}
	t.entry(id).stamp = us
}

func (t *idTable) setLanded(id int32, us int64) {
	if !t.in(id) {
		return // another pass's
	}
	if i := t.slot(id); i >= 0 {
		set(t.landed, i)
		if t.stamp[i] == us {
			set(t.found, i)
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
		slot := int32(i) // #nosec G115 -- i < passIDs
		if s == absent && !has(t.landed, slot) {
			continue
		}
		note(int32(t.base)+slot, s, has(t.found, slot), has(t.landed, slot)) // #nosec G115 -- base + slot is an int4 id
	}
	for id, e := range t.sparse {
		note(id, e.stamp, e.found, e.landed)
	}
}

// idHashes maps ids to 64-bit hashes: 8 bytes and a bit per id in slices
// for the ids from base while they are serial (below base+maxDense), a map
// for the others.
type idHashes struct {
	base   int64
	dense  []uint64
	seen   []uint64 // bitset over dense
	sparse map[int32]uint64
	n      int
}

// newIDHashes holds ids from base, with room for the first n of them: a
// slice grown later is copied, and for a moment held twice.
func newIDHashes(base int64, n int) *idHashes {
	n = min(n, maxDense)
	return &idHashes{base: base, dense: make([]uint64, n), seen: make([]uint64, (n+63)/64), sparse: map[int32]uint64{}}
}

// slot is id's index in the slices, or -1 for the map.
func (m *idHashes) slot(id int32) int32 {
	if off := int64(id) - m.base; off >= 0 && off < maxDense {
		return int32(off) // #nosec G115 -- below maxDense
	}
	return -1
}

func (m *idHashes) set(id int32, h uint64) {
	i := m.slot(id)
	if i < 0 {
		if _, ok := m.sparse[id]; !ok {
			m.n++
		}
		m.sparse[id] = h
		return
	}
	if int(i) >= len(m.dense) {
		n := max(1024, int(i)+1, len(m.dense)+len(m.dense)/2)
		m.dense = append(m.dense, make([]uint64, n-len(m.dense))...)
		m.seen = append(m.seen, make([]uint64, (n+63)/64-len(m.seen))...)
	}
	if !has(m.seen, i) {
		m.n++
		set(m.seen, i)
	}
	m.dense[i] = h
}

// take returns id's hash and forgets it.
func (m *idHashes) take(id int32) (uint64, bool) {
	i := m.slot(id)
	if i < 0 {
		h, ok := m.sparse[id]
		if ok {
			delete(m.sparse, id)
			m.n--
		}
		return h, ok
	}
	if int(i) >= len(m.dense) || !has(m.seen, i) {
		return 0, false
	}
	m.seen[i/64] &^= 1 << (i % 64)
	m.n--
	return m.dense[i], true
}

func (m *idHashes) len() int { return m.n }

// ids returns up to n of the ids held, smallest first.
func (m *idHashes) ids(n int) []int32 {
	if n <= 0 {
		return nil
	}
	var out []int32
	for _, id := range slices.Sorted(maps.Keys(m.sparse)) {
		if int64(id) < m.base {
			out = append(out, id)
		}
	}
	for i := range m.dense {
		if slot := int32(i); has(m.seen, slot) { // #nosec G115 -- i < maxDense
			out = append(out, int32(m.base)+slot) // #nosec G115 -- an int4 id
		}
		if len(out) >= n {
			return out[:n]
		}
	}
	for _, id := range slices.Sorted(maps.Keys(m.sparse)) {
		if int64(id) >= m.base {
			out = append(out, id)
		}
	}
	return out[:min(n, len(out))]
}
