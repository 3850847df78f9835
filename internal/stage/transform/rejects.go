package transform

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// Reject is one source row a processed batch set aside, as its rejects
// object holds it.
type Reject struct {
	Batch string    `json:"batch"`
	At    time.Time `json:"at"`
	Table string    `json:"table"`
	// ID is the row's key, when the row has one that reads as a number.
	ID     *int64          `json:"id"`
	Kind   string          `json:"kind"`
	Reason string          `json:"reason"`
	Row    json.RawMessage `json:"row"`
}

// Parked is a row waiting for a row it refers to: it flows when that row
// arrives (or an audit repairs it).
type Parked struct {
	Table  string `json:"table"`
	ID     *int64 `json:"id"`
	Reason string `json:"reason"`
	// Since is the batch that first rejected it, and when that was.
	Since   string    `json:"since_batch"`
	SinceAt time.Time `json:"since"`
}

// Rejects streams every row the processed bucket's batches rejected,
// oldest batch first, to fn. Each rejects object is checked against its
// manifest entry (size and SHA-256) before it is read.
func Rejects(ctx context.Context, b *lake.Bucket, fn func(Reject) error) error {
	seqs, err := b.SeqsAfter(ctx, 0)
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("rejects: %w", err))
	}
	for _, seq := range seqs {
		var m lake.Manifest
		if err := b.ReadManifest(ctx, seq, &m); err != nil {
			return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("rejects: %w", err))
		}
		if m.Rejects == nil {
			continue
		}
		if err := readRejects(ctx, b, &m, fn); err != nil {
			return err
		}
	}
	return nil
}

func readRejects(ctx context.Context, b *lake.Bucket, m *lake.Manifest, fn func(Reject) error) error {
	data, err := lake.GetObject(ctx, b, *m.Rejects)
	if err != nil {
		return errkind.Default(errkind.BucketReadFailed, fmt.Errorf("rejects of batch %s: %w", m.Batch, err))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		var l rejectLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("rejects of batch %s: %w", m.Batch, err))
		}
		r := Reject{Batch: m.Batch, At: m.CreatedAt, Table: l.Table, ID: rowID(l.Table, l.Row),
			Kind: string(l.Kind), Reason: l.Reason, Row: l.Row}
		if err := fn(r); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ParkedRows lists the rows waiting for a missing reference after the
// processed bucket's newest batch, oldest first: fact rows, and
// counterparties and staff waiting for their address or department.
func ParkedRows(ctx context.Context, b *lake.Bucket) ([]Parked, error) {
	seq, err := b.LatestSeq(ctx)
	if err != nil {
		return nil, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("parked rows: %w", err))
	}
	st, err := loadState(ctx, b, seq)
	if err != nil {
		return nil, errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("parked rows: %w", err))
	}
	at := map[int64]time.Time{}
	when := func(seq int64) time.Time {
		if t, ok := at[seq]; ok {
			return t
		}
		var m lake.Manifest
		if b.ReadManifest(ctx, seq, &m) == nil {
			at[seq] = m.CreatedAt
		}
		return at[seq]
	}
	var out []Parked
	for _, p := range st.Parked {
		out = append(out, Parked{Table: p.Table, ID: rowID(p.Table, p.Row), Reason: p.Reason,
			Since: lake.BatchID(p.Since), SinceAt: when(p.Since)})
	}
	for id, c := range st.Counterparties {
		if c.Pending {
			n := int64(id)
			out = append(out, Parked{Table: "counterparty", ID: &n,
				Reason: fmt.Sprintf("legal_address_id %d: no such address yet", c.Row.LegalAddressID)})
		}
	}
	for id, s := range st.Staff {
		if s.Pending {
			n := int64(id)
			out = append(out, Parked{Table: "staff", ID: &n,
				Reason: fmt.Sprintf("department_id %d: no such department yet", s.Row.DepartmentID)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Since < out[j].Since })
	return out, nil
}

// rowID reads the key of a rejected or parked row of table. Rejects name
// their fields as the source does (sales_order_id), parked rows as the row
// type does (SalesOrderID): both are matched.
func rowID(table string, row json.RawMessage) *int64 {
	t, ok := totesys.Lookup(table)
	if !ok {
		return nil
	}
	var fields map[string]any
	if json.Unmarshal(row, &fields) != nil {
		return nil
	}
	want := plain(t.Key)
	for name, v := range fields {
		if f, ok := v.(float64); ok && plain(name) == want {
			n := int64(f)
			return &n
		}
	}
	return nil
}

// plain is a field name in lower case without underscores.
func plain(name string) string { return strings.ToLower(strings.ReplaceAll(name, "_", "")) }
