package audit

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// checkpointWriter writes the checkpoint of the batch an audit compared
// with, a table at a time, a pass at a time, as the audit goes (see
// CheckpointPrefix). Its first error stops it: the audit carries on, and
// Run reports the error as a WARN line.
type checkpointWriter struct {
	ctx   context.Context
	b     *lake.Bucket
	seq   int64
	run   string
	index checkpointIndex
	err   error
	up    *lake.Upload
	zw    *gzip.Writer
	bw    *bufio.Writer
	buf   []byte
	table string
	ids   int64
	id    int64
	stamp int64
}

func newCheckpointWriter(ctx context.Context, b *lake.Bucket, seq int64) *checkpointWriter {
	return &checkpointWriter{ctx: ctx, b: b, seq: seq, run: lake.NewRunID(),
		index: checkpointIndex{Version: checkpointVersion, Tables: map[string]checkpointTable{}}}
}

// startTable starts table's object.
func (w *checkpointWriter) startTable(table string) {
	if w.err != nil {
		return
	}
	key := fmt.Sprintf("%s%s/%s/%s.bin.gz", CheckpointPrefix, lake.BatchID(w.seq), w.run, table)
	if w.up, w.err = w.b.Create(w.ctx, key); w.err != nil {
		return
	}
	w.table, w.ids, w.id, w.stamp = table, 0, 0, 0
	w.zw, _ = gzip.NewWriterLevel(w.up, gzip.BestCompression) // a valid level: no error
	w.bw = bufio.NewWriter(w.zw)
}

// addPass writes the entries of one pass, in id order.
func (w *checkpointWriter) addPass(ids *idTable) {
	if w.err != nil {
		return
	}
	ids.each(func(id int32, flags byte, stamp int64) {
		w.buf = binary.AppendVarint(w.buf[:0], int64(id)-w.id)
		w.buf = append(w.buf, flags)
		if flags&flagVerified != 0 {
			w.buf = binary.AppendVarint(w.buf, stamp-w.stamp)
			w.stamp = stamp
		}
		w.id = int64(id)
		w.ids++
		if _, err := w.bw.Write(w.buf); err != nil && w.err == nil {
			w.err = err
		}
	})
}

// endTable commits the table's object, which counts landed versions.
func (w *checkpointWriter) endTable(landed int64) {
	if w.err != nil {
		return
	}
	if w.err = w.bw.Flush(); w.err == nil {
		w.err = w.zw.Close()
	}
	if w.err != nil {
		w.abort()
		return
	}
	obj := lake.Object{Table: w.table, Key: w.up.Key, Bytes: w.up.Size(), SHA256: w.up.SHA256()}
	if w.err = w.up.Close(); w.err == nil {
		w.index.Tables[w.table] = checkpointTable{Object: obj, Landed: landed, IDs: w.ids}
	}
	w.up = nil
}

// commit creates the index, last and exclusively: a checkpoint of the
// batch that another audit committed first stands.
func (w *checkpointWriter) commit() error {
	if w.err != nil {
		w.abort()
		return w.err
	}
	var m lake.Manifest
	sum, err := w.b.ReadManifestSum(w.ctx, w.seq, &m)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", lake.BatchID(w.seq), err)
	}
	w.index.Batch = lake.BatchRef{Sequence: w.seq, RunID: m.RunID, ManifestSHA256: sum}
	data, err := json.MarshalIndent(w.index, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", lake.BatchID(w.seq), err)
	}
	body := sha256.Sum256(data)
	if err := w.b.Put(w.ctx, checkpointKey(w.seq, hex.EncodeToString(body[:])), data); err != nil && !lake.IsExists(err) {
		return fmt.Errorf("checkpoint %s: %w", lake.BatchID(w.seq), err)
	}
	return nil
}

// abort drops the table object being written, if any.
func (w *checkpointWriter) abort() {
	if w.up != nil {
		w.up.Abort()
		w.up = nil
	}
}

// each calls fn, in id order, with every id of the pass that landed or has
// a tombstone: its checkpoint flags and, when its source stamp landed
// (found), that stamp.
func (t *idTable) each(fn func(id int32, flags byte, stamp int64)) {
	note := func(id int32, stamp int64, found, landed bool) {
		var flags byte
		if landed {
			flags |= flagLanded
		}
		if found {
			flags |= flagVerified
		}
		if t.tombstones[id] {
			flags |= flagTombstone
		}
		if flags != 0 {
			fn(id, flags, stamp)
		}
	}
	extra := map[int32]bool{}
	for id := range t.sparse {
		extra[id] = true
	}
	for id := range t.tombstones {
		if t.slot(id) < 0 {
			extra[id] = true
		}
	}
	ids := slices.Sorted(maps.Keys(extra))
	sparse := func(id int32) {
		e := t.sparse[id]
		if e == nil {
			e = &idEntry{stamp: absent}
		}
		note(id, e.stamp, e.found, e.landed)
	}
	i := 0
	for ; i < len(ids) && int64(ids[i]) < t.base; i++ {
		sparse(ids[i])
	}
	for j, s := range t.stamp {
		slot := int32(j)           // #nosec G115 -- j < passIDs
		id := int32(t.base) + slot // #nosec G115 -- base + slot is an int4 id
		if has(t.landed, slot) || len(t.tombstones) > 0 {
			note(id, s, has(t.found, slot), has(t.landed, slot))
		}
	}
	for ; i < len(ids); i++ {
		sparse(ids[i])
	}
}
