package ingest

import (
	"sync/atomic"

	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
)

// chunkRows is how many rows are decoded before they are written.
const chunkRows = 2048

// chunksInFlight is how many chunks a table's reading and writing share: one
// being filled, one being written, one waiting.
const chunksInFlight = 3

// chunk is a run of rows decoded column by column.
type chunk struct {
	cols  [][]parquet.Value
	arena []byte // the bytes of the chunk's text values
	rows  int
}

func newChunk(columns int) *chunk {
	ch := &chunk{cols: make([][]parquet.Value, columns)}
	for i := range ch.cols {
		ch.cols[i] = make([]parquet.Value, 0, chunkRows)
	}
	return ch
}

// reset empties the chunk for the next rows, keeping its memory.
func (ch *chunk) reset() {
	for i := range ch.cols {
		ch.cols[i] = ch.cols[i][:0]
	}
	ch.arena = ch.arena[:0]
	ch.rows = 0
}

// chunkWriter writes chunks to a Parquet writer from a goroutine of its
// own, so that encoding and compressing one chunk overlaps reading the next
// from the source. A fixed set of chunks goes round, so memory stays flat.
type chunkWriter struct {
	free, full chan *chunk
	done       chan struct{}
	failed     atomic.Bool
	err        error // set by the goroutine; read after done
}

func startChunkWriter(w *lake.ParquetWriter[any], columns int) *chunkWriter {
	cw := &chunkWriter{free: make(chan *chunk, chunksInFlight), full: make(chan *chunk, chunksInFlight),
		done: make(chan struct{})}
	for range chunksInFlight {
		cw.free <- newChunk(columns)
	}
	go func() {
		defer close(cw.done)
		for ch := range cw.full {
			if cw.err == nil {
				if cw.err = w.WriteColumns(ch.cols); cw.err != nil {
					cw.failed.Store(true)
				}
			}
			ch.reset()
			cw.free <- ch
		}
	}()
	return cw
}

// next returns an empty chunk, waiting for one to be free.
func (cw *chunkWriter) next() *chunk { return <-cw.free }

// send hands a filled chunk to the writer; it reports false once the
// writer has failed.
func (cw *chunkWriter) send(ch *chunk) bool {
	cw.full <- ch
	return !cw.failed.Load()
}

// close waits until every chunk sent is written and returns the writer's
// error. The Parquet writer is then free to be closed or aborted.
func (cw *chunkWriter) close() error {
	close(cw.full)
	<-cw.done
	return cw.err
}
