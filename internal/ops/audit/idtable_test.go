package audit

import (
	"math"
	"slices"
	"testing"
)

// TestIDHashes: serial, negative and far ids are held alike; take forgets
// an id once; ids lists what is left, smallest first.
func TestIDHashes(t *testing.T) {
	t.Parallel()
	m := newIDHashes(0, 1000) // 2000 and up grow it
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
	t.Parallel()
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

// TestLowerIDs: a full pass over a fact keeps about three quarters of its
// versions, its lower ids whole, and ends at the first id it drops; one id
// holding most of them is kept whole, and one id alone cannot be split.
func TestLowerIDs(t *testing.T) {
	t.Parallel()
	vs := func(ids ...int32) []version {
		out := make([]version, len(ids))
		for i, id := range ids {
			out[i] = version{id, int64(i)}
		}
		return out
	}
	tests := []struct {
		name    string
		in      []version
		keep    int
		wantEnd int64
	}{
		{"ids in any order", vs(8, 1, 7, 2, 6, 3, 5, 4), 6, 7},
		{"an id's versions stay together", vs(1, 2, 3, 4, 4, 4, 4, 5), 3, 4},
		{"the first id holds most", vs(1, 1, 1, 1, 1, 1, 1, 2), 7, 2},
		{"one id alone", vs(4, 4, 4, 4, 4, 4, 4, 4), 8, math.MaxInt64},
		{"duplicates freed room", append(vs(1, 2, 3, 4), vs(1, 2, 3, 4)...), 4, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got, end := lowerIDs(in, math.MaxInt64, 8)
			if len(got) != tc.keep || end != tc.wantEnd {
				t.Fatalf("kept %d versions, ending at %d; want %d, ending at %d", len(got), end, tc.keep, tc.wantEnd)
			}
			// Every distinct version of the input below end, in order.
			var want []version
			for _, v := range slices.SortedFunc(slices.Values(tc.in), version.compare) {
				if int64(v.id) < end && (len(want) == 0 || want[len(want)-1] != v) {
					want = append(want, v)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", got, want)
			}
		})
	}
}
