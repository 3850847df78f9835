package lake

import (
	"encoding/json"
	"time"
)

// Manifest describes one batch of either bucket. It is written last, so a
// batch with a manifest is whole.
type Manifest struct {
	Version  int    `json:"version"`
	Stage    string `json:"stage"` // "ingest" or "transform"
	Batch    string `json:"batch"`
	Sequence int64  `json:"sequence"`
	RunID    string `json:"run_id"`
	// CreatedAt is when the manifest was written.
	CreatedAt time.Time `json:"created_at"`
	// SnapshotAt is the source's clock when ingest took its snapshot.
	SnapshotAt time.Time `json:"snapshot_at,omitzero"`
	// SourceNewest is the newest last_updated among the batch's source rows.
	SourceNewest time.Time `json:"source_newest,omitzero"`
	Tables       []Object  `json:"tables"`
	// Rejects holds the rows transform could not turn into star rows.
	Rejects *Object `json:"rejects,omitempty"`
	// Released counts rows rejected earlier that this batch let through.
	Released int64 `json:"released,omitempty"`
	// StateKey names an object with the stage's state after this batch.
	StateKey string `json:"state_key,omitempty"`
	// State is the stage's own resume state, when small enough to inline.
	State json.RawMessage `json:"state,omitempty"`
	// Repair marks an ingested batch that sandstone audit --repair landed:
	// source versions no watermark saw, and the tombstones in Deleted.
	Repair bool `json:"repair,omitempty"`
	// Deleted are tombstones: per source table, the ids an audit found gone
	// from the source at SnapshotAt (ingest), carried on by transform.
	Deleted map[string][]int32 `json:"deleted,omitempty"`
	// Revived are, per source table, ids recorded as deleted by an earlier
	// batch that the source holds again (log-based capture saw them
	// inserted), carried on by transform: load takes them out of the
	// warehouse's deletions.
	Revived map[string][]int32 `json:"revived,omitempty"`
	// Capture is set on a batch that log-based capture read (ingest), and
	// on the processed batch made from it (transform); nil for the poll.
	Capture *Capture `json:"capture,omitempty"`
	// Source is the batch of the previous stage this batch was made from
	// (transform: the ingested batch); nil in manifests written before it
	// was recorded.
	Source *BatchRef `json:"source,omitempty"`
}

// BatchRef identifies one committed batch of a bucket: its sequence, the
// run that wrote it and the SHA-256 of its manifest's bytes. A bucket wiped
// and refilled, or another bucket, has batches of the same sequence but
// other identities.
type BatchRef struct {
	Sequence       int64  `json:"sequence"`
	RunID          string `json:"run_id"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// Object is one object of a batch.
type Object struct {
	Table  string `json:"table"`
	Key    string `json:"key"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Watermark is the range of last_updated the rows cover (ingest).
	Watermark *Range `json:"watermark,omitempty"`
	// Columns are the object's columns and their types (ingest).
	Columns []Column `json:"columns,omitempty"`
	// MaxLen is the length, in characters, of the longest value of each
	// text column (transform), for checking the warehouse's column lengths.
	MaxLen map[string]int `json:"max_len,omitempty"`
}

// Range is a closed range of timestamps.
type Range struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Column is a column's name and its Parquet logical type.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Table returns the batch's object for table, if any.
func (m *Manifest) Table(table string) (Object, bool) {
	for _, o := range m.Tables {
		if o.Table == table {
			return o, true
		}
	}
	return Object{}, false
}

// Rows is the total number of rows in the batch's tables.
func (m *Manifest) Rows() int64 {
	var n int64
	for _, o := range m.Tables {
		n += o.Rows
	}
	return n
}
