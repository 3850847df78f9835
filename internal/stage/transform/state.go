package transform

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// stateVersion is the version of the state object's format.
const stateVersion = 1

// state is what transform remembers between batches: the current rows of
// the small tables it joins, the ids every other dimension holds, and the
// rows parked for a missing reference. It is saved, whole, with every
// processed batch; it does not grow with the history of the facts.
type state struct {
	Version int `json:"version"`
	// Sequence is the processed batch this state follows.
	Sequence int64 `json:"sequence"`

	Addresses      map[int32]*totesys.Address    `json:"addresses"`
	Departments    map[int32]*totesys.Department `json:"departments"`
	Counterparties map[int32]*heldCounterparty   `json:"counterparties"`
	Staff          map[int32]*heldStaff          `json:"staff"`

	// The ids dim_currency, dim_design, dim_payment_type and
	// dim_transaction hold.
	Currencies   *idSet `json:"currencies"`
	Designs      *idSet `json:"designs"`
	PaymentTypes *idSet `json:"payment_types"`
	Transactions *idSet `json:"transactions"`

	// Parked are the fact rows waiting for a row they refer to.
	Parked []parkedRow `json:"parked,omitempty"`
}

// held is the current version of a row that dimension rows join to a
// parent (a counterparty, a staff member). Loaded says its dimension row was
// emitted; Pending that it waits for its parent.
type held[R any] struct {
	Row     R    `json:"row"`
	Loaded  bool `json:"loaded,omitempty"`
	Pending bool `json:"pending,omitempty"`
}

// heldCounterparty and heldStaff are the two kinds of held rows.
type (
	heldCounterparty = held[totesys.Counterparty]
	heldStaff        = held[totesys.Staff]
)

// parkedRow is a source row rejected for a missing reference, kept to be
// tried again at every later batch.
type parkedRow struct {
	Table string `json:"table"`
	// Since is the batch that first rejected the row.
	Since  int64           `json:"since"`
	Reason string          `json:"reason"`
	Row    json.RawMessage `json:"row"`
}

func newState() *state {
	return &state{
		Version:        stateVersion,
		Addresses:      map[int32]*totesys.Address{},
		Departments:    map[int32]*totesys.Department{},
		Counterparties: map[int32]*heldCounterparty{},
		Staff:          map[int32]*heldStaff{},
		Currencies:     newIDSet(),
		Designs:        newIDSet(),
		PaymentTypes:   newIDSet(),
		Transactions:   newIDSet(),
	}
}

// fill gives the maps and sets of a decoded state that lacked them a value.
func (s *state) fill() {
	z := newState()
	if s.Addresses == nil {
		s.Addresses = z.Addresses
	}
	if s.Departments == nil {
		s.Departments = z.Departments
	}
	if s.Counterparties == nil {
		s.Counterparties = z.Counterparties
	}
	if s.Staff == nil {
		s.Staff = z.Staff
	}
	for _, p := range []**idSet{&s.Currencies, &s.Designs, &s.PaymentTypes, &s.Transactions} {
		if *p == nil {
			*p = newIDSet()
		}
	}
}

// counterpartyLoaded reports whether dim_counterparty holds id.
func (s *state) counterpartyLoaded(id int32) bool {
	c := s.Counterparties[id]
	return c != nil && c.Loaded
}

// staffLoaded reports whether dim_staff holds id.
func (s *state) staffLoaded(id int32) bool {
	m := s.Staff[id]
	return m != nil && m.Loaded
}

// encode returns the state as gzip-compressed JSON.
func (s *state) encode() ([]byte, error) {
	return lake.EncodeState(s)
}

// loadState reads the state saved with processed batch seq; batch 0 (none)
// has the empty state.
func loadState(ctx context.Context, b *lake.Bucket, seq int64) (*state, error) {
	if seq == 0 {
		return newState(), nil
	}
	var m lake.Manifest
	if err := b.ReadManifest(ctx, seq, &m); err != nil {
		return nil, fmt.Errorf("processed batch %s: %w", lake.BatchID(seq), err)
	}
	if m.StateKey == "" {
		return nil, fmt.Errorf("processed batch %s has no state", lake.BatchID(seq))
	}
	s := &state{}
	if err := b.ReadState(ctx, m.StateKey, s); err != nil {
		return nil, fmt.Errorf("processed batch %s: %w", lake.BatchID(seq), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state %s: version %d, want %d", m.StateKey, s.Version, stateVersion)
	}
	s.fill()
	return s, nil
}

// idSet is a set of positive ids, compressed (a roaring bitmap) in memory
// and in the state object.
type idSet struct{ b *roaring.Bitmap }

func newIDSet() *idSet { return &idSet{roaring.New()} }

// add puts id, which must be positive, in the set.
func (s *idSet) add(id int32) { s.b.Add(uint32(id)) } // #nosec G115 -- ids are checked positive

// has reports whether id is in the set.
func (s *idSet) has(id int32) bool { return id > 0 && s.b.Contains(uint32(id)) }

// len is the number of ids in the set.
func (s *idSet) len() int { return int(s.b.GetCardinality()) } // #nosec G115 -- at most 2^31 ids

// MarshalJSON encodes the set in roaring's portable format, base64.
func (s *idSet) MarshalJSON() ([]byte, error) {
	s.b.RunOptimize()
	data, err := s.b.ToBytes()
	if err != nil {
		return nil, err
	}
	return json.Marshal(data)
}

// UnmarshalJSON decodes MarshalJSON's form.
func (s *idSet) UnmarshalJSON(data []byte) error {
	var raw []byte
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	s.b = roaring.New()
	if len(raw) == 0 {
		return nil
	}
	return s.b.UnmarshalBinary(raw)
}
