package lake

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The columns that an ingested object read by log-based capture carries
// after the source's own: each version's operation, the LSN of its
// transaction's commit and the commit's time. Rows lie in commit order.
const (
	// OpColumn holds OpSnapshot, OpInsert or OpUpdate (STRING).
	OpColumn = "_sandstone_op"
	// LSNColumn holds the commit LSN of the version's transaction (INT64;
	// the consistent point for a snapshot row).
	LSNColumn = "_sandstone_lsn"
	// CommitTimeColumn holds the commit's time (TIMESTAMP, µs, UTC; the
	// snapshot's time for a snapshot row).
	CommitTimeColumn = "_sandstone_commit_time"
)

// The operations of OpColumn. A delete is no row: it is the batch's
// tombstone (Manifest.Deleted).
const (
	OpSnapshot = "snapshot" // read from the slot's exported snapshot
	OpInsert   = "insert"
	OpUpdate   = "update"
)

// CaptureColumns are the columns capture adds, in order, with their types
// as the manifest records them.
var CaptureColumns = []Column{
	{Name: OpColumn, Type: "STRING"},
	{Name: LSNColumn, Type: "INT64"},
	{Name: CommitTimeColumn, Type: "TIMESTAMP(MICROS,UTC)"},
}

// IsCaptureColumn reports whether name is one of the columns capture adds.
func IsCaptureColumn(name string) bool { return strings.HasPrefix(name, "_sandstone_") }

// Capture describes a batch that log-based capture read: the slot, the
// server it lives on, and where in that server's WAL the batch ends. A
// processed batch carries its ingested batch's Capture.
type Capture struct {
	Slot        string `json:"slot"`
	Publication string `json:"publication"`
	// SystemID and Timeline are the source server's (IDENTIFY_SYSTEM): a
	// slot of the same name on another server is another slot.
	SystemID string `json:"system_id"`
	Timeline int32  `json:"timeline"`
	// Start is where the batch's stream began (the previous batch's End);
	// End is what the slot may be confirmed to once the batch is durable,
	// and where the next batch resumes: the end of the last transaction
	// landed, or the slot's consistent point for a snapshot batch.
	Start LSN `json:"start_lsn"`
	End   LSN `json:"end_lsn"`
	// Snapshot marks a batch read from the slot's exported snapshot, and
	// SnapshotDone the last of them: streaming follows from End.
	Snapshot     bool `json:"snapshot,omitempty"`
	SnapshotDone bool `json:"snapshot_done,omitempty"`
}

// Moves reports whether a batch of c is worth landing with no rows: a
// snapshot batch (it records where streaming starts), or a stream batch
// that moves the slot on (past WAL that holds no change of the
// publication's tables). False for nil.
func (c *Capture) Moves() bool { return c != nil && (c.Snapshot || c.End > c.Start) }

// LSN is a position in PostgreSQL's WAL. It reads and writes as
// PostgreSQL prints it, e.g. "16/B374D848".
type LSN uint64

// String prints l as PostgreSQL does.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// ParseLSN reads an LSN as PostgreSQL prints it.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if ok {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return LSN(h<<32 | l), nil
		}
	}
	return 0, fmt.Errorf("%q is not an LSN", s)
}

// MarshalJSON writes l as a string.
func (l LSN) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON reads l from a string.
func (l *LSN) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseLSN(s)
	*l = v
	return err
}
