package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// Versions are landed versions as [id, last_updated in µs] pairs, in no
// order. A table's state holds every one within the lookback, hundreds of
// thousands of pairs a run on a big source, decoded and encoded on every
// run, so the state packs them into one base64 string (docs/benchmarks.md
// has what that saves): a format byte, then per pair the time since the
// pair before and the id, as varints. The pairs come about in last_updated
// order, so most deltas take a byte. States written as arrays are read too.
type Versions [][2]int64

// The first byte of the packed form. Format 2 is format 1 in a table state
// that has spilled ranges (TableState.Spilled): a sandstone older than
// them reads only format 1, so it refuses such a state, loudly, rather
// than miss the versions the ranges stand for and land them again.
const (
	versionsFormat        = 1
	versionsFormatSpilled = 2
)

// MarshalText packs vs (see Versions), base64-encoded: JSON writes it as
// a string.
func (vs Versions) MarshalText() ([]byte, error) { return vs.pack(versionsFormat), nil }

// spilledVersions are the Versions of a table state with spilled ranges,
// packed as format 2.
type spilledVersions Versions

// MarshalText packs vs as format 2 (see versionsFormatSpilled).
func (vs spilledVersions) MarshalText() ([]byte, error) {
	return Versions(vs).pack(versionsFormatSpilled), nil
}

// MarshalJSON writes ts, its Recent packed as format 2 when it has
// spilled ranges.
func (ts TableState) MarshalJSON() ([]byte, error) {
	type plain TableState
	if len(ts.Spilled) == 0 {
		return json.Marshal(plain(ts))
	}
	return json.Marshal(struct {
		plain
		Recent spilledVersions `json:"recent"` // the shallower field wins
	}{plain(ts), spilledVersions(ts.Recent)})
}

// pack is vs packed (see Versions) behind format, base64-encoded.
func (vs Versions) pack(format byte) []byte {
	buf := make([]byte, 1, 1+4*len(vs))
	buf[0] = format
	var prev uint64
	for _, v := range vs {
		us := uint64(v[1])                             // #nosec G115 -- two's complement; the deltas wrap and unwrap alike
		buf = binary.AppendVarint(buf, int64(us-prev)) // #nosec G115 -- wraps, as decoding unwraps
		buf = binary.AppendVarint(buf, v[0])
		prev = us
	}
	return base64.StdEncoding.AppendEncode(nil, buf)
}

// UnmarshalJSON reads vs packed (see MarshalText), or as an array of pairs,
// as states written before the packed form hold them.
func (vs *Versions) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '"' {
		var pairs [][2]int64
		if err := json.Unmarshal(data, &pairs); err != nil {
			return fmt.Errorf("recent versions: %w", err)
		}
		*vs = pairs
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("recent versions: %w", err)
	}
	buf, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("recent versions: %w", err)
	}
	if len(buf) == 0 || (buf[0] != versionsFormat && buf[0] != versionsFormatSpilled) {
		return errors.New("recent versions: not in a format this version of sandstone reads")
	}
	out := make(Versions, 0, len(buf)/4)
	var us uint64
	for rest := buf[1:]; len(rest) > 0; {
		delta, n := binary.Varint(rest)
		if n <= 0 {
			return errors.New("recent versions: truncated")
		}
		rest = rest[n:]
		id, m := binary.Varint(rest)
		if m <= 0 {
			return errors.New("recent versions: truncated")
		}
		rest = rest[m:]
		us += uint64(delta)                        // #nosec G115 -- the delta wraps back, as MarshalText wrapped it
		out = append(out, [2]int64{id, int64(us)}) // #nosec G115 -- back to the µs MarshalText packed
	}
	*vs = out
	return nil
}
