package audit

import (
	"math"
	"slices"
	"testing"
)

// TestIDHashes: serial, negative and far ids are held alike; take forgets
// an id once; ids lists what is left, smallest first.
func TestIDHashes(t *testing.T) {
	m := newIDHashes(0)
	for _, id := range []int32{5, -3, maxDense + 7, 0, 5, 2000} {
		m.set(id, uint64(id)+1)
	}
	if m.len() != 5 {
		t.Fatalf("len %d, want 5 (id 5 set twice)", m.len())
	}
	for _, id := range []int32{5, maxDense + 7} {
		if h, ok := m.take(id); !ok || h != uint64(id)+1 {
			t.Errorf("take %d: %d %v", id, h, ok)
		}
		if _, ok := m.take(id); ok {
			t.Errorf("id %d taken twice", id)
		}
	}
	if _, ok := m.take(1 << 20); ok {
		t.Error("an id never set was taken")
	}
	if got := m.ids(10); !slices.Equal(got, []int32{-3, 0, 2000}) || m.len() != 3 {
		t.Errorf("ids %v, len %d", got, m.len())
	}
	if got := m.ids(2); !slices.Equal(got, []int32{-3, 0}) {
		t.Errorf("two ids: %v", got)
	}
	if m.ids(0) != nil {
		t.Error("ids(0) is not empty")
	}
}

// TestIDTableSparse: ids past the dense slots are audited as the others.
func TestIDTableSparse(t *testing.T) {
	ids := newIDTable(pass{from: math.MinInt64, to: math.MaxInt64, dense: 4})
	ids.keepAll = true
	ids.setSource(2, 100)    // dense, landed as is
	ids.setSource(1000, 100) // sparse, landed as is
	ids.setSource(1001, 100) // sparse, never landed
	ids.setLanded(2, 100)    //
	ids.setLanded(1000, 100) //
	ids.setLanded(1002, 50)  // sparse, gone from the source
	ids.setLanded(3, 50)     // dense, gone, with a tombstone
	ids.setTombstone(3)      //
	tr := &TableReport{}
	ids.findings(tr, func(int64) bool { return false })
	if tr.Missing != 1 || tr.Deleted != 1 || tr.DeletedRecorded != 1 ||
		!slices.Equal(ids.missing, []int32{1001}) || !slices.Equal(ids.deleted, []int32{1002}) {
		t.Fatalf("findings %+v, missing %v, deleted %v", *tr, ids.missing, ids.deleted)
	}
}
