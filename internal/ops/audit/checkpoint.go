package audit

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// CheckpointPrefix is where audits keep their checkpoints in the ingestion
// bucket, under ReportPrefix (the audit may create objects there only).
//
// A checkpoint keeps what an audit verified of the lake up to one batch,
// so that the next audit reads only the batches landed since. Per source
// table it holds, for every id that landed or has a tombstone, whether the
// source's stamp the audit saw had landed (then that stamp) and the
// tombstone bit, plus the count of landed versions: all a later audit
// needs, since a later source stamp is found when it equals the verified
// one or lands after the checkpoint. (A source row set back to a stamp one
// of its older versions had, other than the verified one, counts as
// missing, and a repair lands it again.)
//
// It is two kinds of write-once objects, as a batch is: one gzip-compressed
// object per table (checkpointEntries), then, created last and
// exclusively, the index, CheckpointPrefix + BATCH-SHA256.json, whose
// name carries the SHA-256 of its body and whose body carries each table
// object's size and SHA-256 and the batch's identity (lake.BatchRef). An
// audit verifies all of it before use, and refuses, with a WARN line naming
// it, a checkpoint that is corrupt, truncated or of a batch whose manifest
// is no longer the one it covered (a bucket wiped and refilled): it then
// reads every batch.
const CheckpointPrefix = ReportPrefix + "checkpoints/"

// checkpointVersion is the format of checkpoints written now.
const checkpointVersion = 1

// unverified is the stamp of an id that landed but whose source stamp at
// the checkpoint's audit had not: it equals no source stamp.
const unverified = math.MinInt64

// Entry flags in a checkpoint's table object.
const (
	flagLanded = 1 << iota
	flagVerified
	flagTombstone
)

// checkpointIndex is a checkpoint's index object.
type checkpointIndex struct {
	Version int           `json:"version"`
	Batch   lake.BatchRef `json:"batch"`
	// Tables are the source tables' entries, by table name.
	Tables map[string]checkpointTable `json:"tables"`
}

// checkpointTable is one source table of a checkpoint.
type checkpointTable struct {
	lake.Object
	// Landed counts the table's landed versions up to the batch.
	Landed int64 `json:"landed_versions"`
	// IDs counts the entries of the object.
	IDs int64 `json:"ids"`
}

// checkpointKey is the key of the index of batch seq's checkpoint whose
// body has SHA-256 sum.
func checkpointKey(seq int64, sum string) string {
	return CheckpointPrefix + lake.BatchID(seq) + "-" + sum + ".json"
}

// parseCheckpointKey is checkpointKey's inverse; ok is false for another
// key.
func parseCheckpointKey(key string) (seq int64, sum string, ok bool) {
	name, prefixed := strings.CutPrefix(key, CheckpointPrefix)
	name, index := strings.CutSuffix(name, ".json")
	batch, sum, dash := strings.Cut(name, "-")
	seq, err := strconv.ParseInt(batch, 10, 64)
	return seq, sum, prefixed && index && dash && err == nil && len(sum) == sha256.Size*2
}

// checkpoint is a verified checkpoint, its table objects downloaded.
type checkpoint struct {
	key   string
	index checkpointIndex
	files map[string]*os.File
}

// seq is the batch the checkpoint covers; 0 for none.
func (c *checkpoint) seq() int64 {
	if c == nil {
		return 0
	}
	return c.index.Batch.Sequence
}

// landed counts table's landed versions up to the checkpoint's batch.
func (c *checkpoint) landed(table string) int64 {
	if c == nil {
		return 0
	}
	return c.index.Tables[table].Landed
}

func (c *checkpoint) close() {
	if c == nil {
		return
	}
	for _, f := range c.files {
		lake.RemoveTemp(f)
	}
}

// apply marks in ids what the checkpoint holds of table: each landed id
// (with its verified stamp, if any) and each tombstone.
func (c *checkpoint) apply(table string, ids *idTable) error {
	if c == nil {
		return nil
	}
	f := c.files[table]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.key, err)
	}
	n, err := readEntries(f, func(id int32, flags byte, stamp int64) {
		if flags&flagLanded != 0 {
			ids.setLanded(id, stamp)
		}
		if flags&flagTombstone != 0 {
			ids.setTombstone(id)
		}
	})
	if err == nil && n != c.index.Tables[table].IDs {
		err = fmt.Errorf("%d ids, its index says %d", n, c.index.Tables[table].IDs)
	}
	if err != nil {
		return errkind.Wrap(errkind.BucketReadFailed, fmt.Errorf("checkpoint %s, table %s: %w", c.key, table, err))
	}
	return nil
}

// loadCheckpoint finds the newest checkpoint of a batch up to seq that
// verifies whole, newest first (of one batch, any), with a WARN line naming
// each it refuses (the bucket keeps every object: a damaged checkpoint stays
// until a newer one passes it). It returns nil when there is none, after
// a WARN line that the audit reads every batch when it refused any.
func loadCheckpoint(ctx context.Context, b *lake.Bucket, seq int64, log *slog.Logger) *checkpoint {
	keys, err := b.List(ctx, CheckpointPrefix, "/")
	if err != nil {
		refused(log, CheckpointPrefix, err)
	}
	var candidates []string
	for _, k := range keys {
		if s, _, ok := parseCheckpointKey(k); ok && s <= seq {
			candidates = append(candidates, k)
		}
	}
	slices.Sort(candidates) // by batch: the keys' batch ids are zero-padded
	for i := len(candidates) - 1; i >= 0; i-- {
		c, err := openCheckpoint(ctx, b, candidates[i])
		if err == nil {
			return c
		}
		refused(log, candidates[i], err)
	}
	if err != nil || len(candidates) > 0 {
		log.Warn("no audit checkpoint could be used: the audit reads every batch", logging.KeyStage, Stage)
	}
	return nil
}

// refused logs the WARN line of a checkpoint the audit will not use.
func refused(log *slog.Logger, key string, err error) {
	log.Warn("audit checkpoint refused", logging.KeyStage, Stage, "checkpoint", key, logging.KeyError, err.Error())
}

// openCheckpoint reads and verifies the checkpoint whose index is key.
func openCheckpoint(ctx context.Context, b *lake.Bucket, key string) (*checkpoint, error) {
	seq, want, _ := parseCheckpointKey(key)
	data, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != want {
		return nil, fmt.Errorf("its body (%d bytes) has SHA-256 %x, its name says %s: corrupt or truncated", len(data), sum, want)
	}
	c := &checkpoint{key: key, files: map[string]*os.File{}}
	if err := json.Unmarshal(data, &c.index); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if c.index.Version != checkpointVersion || c.index.Batch.Sequence != seq {
		return nil, fmt.Errorf("version %d of batch %d, want version %d of batch %d",
			c.index.Version, c.index.Batch.Sequence, checkpointVersion, seq)
	}
	var m lake.Manifest
	sum, err := b.ReadManifestSum(ctx, seq, &m)
	if err != nil {
		return nil, fmt.Errorf("its batch: %w", err)
	}
	if sum != c.index.Batch.ManifestSHA256 || m.RunID != c.index.Batch.RunID {
		return nil, fmt.Errorf("batch %s's manifest is not the one it covered (SHA-256 %s, it covered %s): the bucket was rebuilt",
			lake.BatchID(seq), sum, c.index.Batch.ManifestSHA256)
	}
	for _, table := range totesys.Tables {
		f, err := download(ctx, b, c.index.Tables[table.Name].Object)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("table %s: %w", table.Name, err)
		}
		c.files[table.Name] = f
	}
	return c, nil
}

// download copies obj into a temporary file and verifies its size and
// SHA-256.
func download(ctx context.Context, b *lake.Bucket, obj lake.Object) (*os.File, error) {
	if obj.Key == "" {
		return nil, errors.New("not in its index")
	}
	f, err := b.Download(ctx, obj.Key)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	var n int64
	if _, err = f.Seek(0, io.SeekStart); err == nil {
		n, err = io.Copy(h, f)
	}
	if err == nil && (n != obj.Bytes || hex.EncodeToString(h.Sum(nil)) != obj.SHA256) {
		err = fmt.Errorf("%s holds %d bytes, SHA-256 %x; its index says %d bytes, %s: corrupt or truncated",
			obj.Key, n, h.Sum(nil), obj.Bytes, obj.SHA256)
	}
	if err != nil {
		lake.RemoveTemp(f)
		return nil, err
	}
	return f, nil
}

// readEntries decodes a table object, calling fn with each entry in id
// order, and returns their number.
func readEntries(r io.Reader, fn func(id int32, flags byte, stamp int64)) (int64, error) {
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return 0, err
	}
	br := bufio.NewReader(zr)
	var n, id, stamp int64
	for {
		delta, err := binary.ReadVarint(br)
		if err == io.EOF {
			return n, zr.Close()
		}
		if err != nil {
			return n, err
		}
		flags, err := br.ReadByte()
		if err != nil {
			return n, err
		}
		id += delta
		s := int64(unverified)
		if flags&flagVerified != 0 {
			d, err := binary.ReadVarint(br)
			if err != nil {
				return n, err
			}
			stamp += d
			s = stamp
		}
		if id < math.MinInt32 || id > math.MaxInt32 {
			return n, fmt.Errorf("id %d out of range", id)
		}
		fn(int32(id), flags, s)
		n++
	}
}
