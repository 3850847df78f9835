package lake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ManifestPrefix is where a bucket's batch manifests live.
const ManifestPrefix = "manifests/"

// StatePrefix is where a stage keeps the state it resumes from.
const StatePrefix = "state/"

// StateKey is the key of the state a run saves with batch seq.
func StateKey(seq int64, run string) string {
	return fmt.Sprintf("%s%s-%s.json.gz", StatePrefix, BatchID(seq), run)
}

// shard groups manifests a thousand to a "directory", so that finding the
// newest batch lists two short pages however long the history.
const shard = 1000

// ManifestKey is the key of batch seq's manifest, e.g.
// manifests/000000/000000000042.json. Keys sort by sequence, and so by time.
func ManifestKey(seq int64) string {
	return fmt.Sprintf("%s%06d/%012d.json", ManifestPrefix, seq/shard, seq)
}

// BatchID is the printable id of batch seq.
func BatchID(seq int64) string { return fmt.Sprintf("%012d", seq) }

// DataKey is the key of one table's object in batch seq written at t:
// TABLE/YYYY/MM/DD/YYYYMMDDTHHMMSS.mmmZ-SEQ-RUN.EXT, grouped by table and
// date and sorted by time.
func DataKey(table string, t time.Time, seq int64, run, ext string) string {
	t = t.UTC()
	return fmt.Sprintf("%s/%s/%s-%s-%s.%s", table, t.Format("2006/01/02"),
		t.Format("20060102T150405.000Z"), BatchID(seq), run, ext)
}

// PutManifest creates batch seq's manifest, exclusively: ErrExists means
// another run committed that batch first. A stage commits with Commit.
func (b *Bucket) PutManifest(ctx context.Context, seq int64, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest %s: %w", BatchID(seq), err)
	}
	return b.Put(ctx, ManifestKey(seq), data)
}

// ReadManifest decodes batch seq's manifest into m.
func (b *Bucket) ReadManifest(ctx context.Context, seq int64, m *Manifest) error {
	_, err := b.ReadManifestSum(ctx, seq, m)
	return err
}

// ReadManifestSum decodes batch seq's manifest into m and returns the hex
// SHA-256 of its bytes, which identifies the batch (see BatchRef). A
// missing manifest is ErrNotFound.
func (b *Bucket) ReadManifestSum(ctx context.Context, seq int64, m *Manifest) (string, error) {
	data, err := b.Get(ctx, ManifestKey(seq))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, m); err != nil {
		return "", fmt.Errorf("manifest %s in %s: %w", BatchID(seq), b.url, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// LatestSeq is the sequence number of the newest batch, 0 when none.
func (b *Bucket) LatestSeq(ctx context.Context) (int64, error) {
	shards, err := b.shards(ctx)
	if err != nil || len(shards) == 0 {
		return 0, err
	}
	for i := len(shards) - 1; i >= 0; i-- {
		seqs, err := b.seqsIn(ctx, shards[i])
		if err != nil {
			return 0, err
		}
		if len(seqs) > 0 {
			return seqs[len(seqs)-1], nil
		}
	}
	return 0, nil
}

// SeqsAfter lists, in order, the batches whose sequence is above after.
func (b *Bucket) SeqsAfter(ctx context.Context, after int64) ([]int64, error) {
	shards, err := b.shards(ctx)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, s := range shards {
		if s < after/shard {
			continue
		}
		seqs, err := b.seqsIn(ctx, s)
		if err != nil {
			return nil, err
		}
		for _, q := range seqs {
			if q > after {
				out = append(out, q)
			}
		}
	}
	return out, nil
}

func (b *Bucket) shards(ctx context.Context) ([]int64, error) {
	keys, err := b.List(ctx, ManifestPrefix, "/")
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, k := range keys {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(k, ManifestPrefix), "/"), 10, 64)
		if err == nil && strings.HasSuffix(k, "/") {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (b *Bucket) seqsIn(ctx context.Context, s int64) ([]int64, error) {
	prefix := fmt.Sprintf("%s%06d/", ManifestPrefix, s)
	keys, err := b.List(ctx, prefix, "")
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, k := range keys {
		name := strings.TrimPrefix(k, prefix)
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(name, ".json"), 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// IsExists reports whether err means an object (a batch) already existed.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }
