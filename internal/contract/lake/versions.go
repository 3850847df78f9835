package lake

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// ReadVersions streams the (id, last_updated in µs) of every row of p, an
// ingested object, to fn: key names its INT32 id column. It reads those
// two columns alone, side by side, a few thousand values at a time, so
// that its memory does not grow with the object.
func ReadVersions(p *ParquetFile, key, lastUpdated string, fn func(id int32, us int64)) error {
	schema := p.file.Schema()
	kc, ok1 := schema.Lookup(key)
	lc, ok2 := schema.Lookup(lastUpdated)
	if !ok1 || !ok2 {
		return fmt.Errorf("read %s: no %s or %s column", p.Key, key, lastUpdated)
	}
	ids, lus := make([]parquet.Value, versionsAtOnce), make([]parquet.Value, versionsAtOnce)
	for _, rg := range p.file.RowGroups() {
		idr, lur := newColumnReader(rg.ColumnChunks()[kc.ColumnIndex]), newColumnReader(rg.ColumnChunks()[lc.ColumnIndex])
		err := func() error {
			defer idr.close()
			defer lur.close()
			for {
				n, err := idr.read(ids)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				// One stamp past the ids, to tell that there is none.
				m, err := lur.read(lus[:min(n+1, len(lus))])
				if err != nil {
					return fmt.Errorf("%s: %w", lastUpdated, err)
				}
				if m != n {
					return fmt.Errorf("the ids and the stamps of a row group differ in number")
				}
				if n == 0 {
					return nil
				}
				for i := range n {
					fn(ids[i].Int32(), lus[i].Int64())
				}
			}
		}()
		if err != nil {
			return fmt.Errorf("read %s: %w", p.Key, err)
		}
	}
	return nil
}

// versionsAtOnce is how many values of each column ReadVersions holds.
const versionsAtOnce = 4096

// columnReader reads a column chunk's values a page at a time.
type columnReader struct {
	pages parquet.Pages
	page  parquet.Page // nil between pages
	vals  parquet.ValueReader
}

func newColumnReader(cc parquet.ColumnChunk) *columnReader {
	return &columnReader{pages: cc.Pages()}
}

// read fills buf with the next values, fewer only at the chunk's end.
func (r *columnReader) read(buf []parquet.Value) (int, error) {
	n := 0
	for n < len(buf) {
		if r.page == nil {
			pg, err := r.pages.ReadPage()
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			r.page, r.vals = pg, pg.Values()
		}
		k, err := r.vals.ReadValues(buf[n:])
		n += k
		switch {
		case errors.Is(err, io.EOF):
			parquet.Release(r.page)
			r.page, r.vals = nil, nil
		case err != nil:
			return n, err
		case k == 0:
			return n, errors.New("a page gave no value")
		}
	}
	return n, nil
}

// close releases the page under way and the chunk's pages.
func (r *columnReader) close() {
	if r.page != nil {
		parquet.Release(r.page)
	}
	_ = r.pages.Close()
}

// columnValues reads every value of one column chunk.
func columnValues(cc parquet.ColumnChunk) ([]parquet.Value, error) {
	pages := cc.Pages()
	defer func() { _ = pages.Close() }()
	out := make([]parquet.Value, 0, cc.NumValues())
	for {
		pg, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		vals := make([]parquet.Value, pg.NumValues())
		n, err := pg.Values().ReadValues(vals)
		parquet.Release(pg)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		out = append(out, vals[:n]...)
	}
}

// LastText returns the value of text column col in the last row of p, an
// ingested object, whose INT32 key column holds id; ok is false when no
// row does, and the value nil when it is NULL.
func LastText(p *ParquetFile, key string, id int32, col string) (value []byte, ok bool, err error) {
	schema := p.file.Schema()
	kc, ok1 := schema.Lookup(key)
	vc, ok2 := schema.Lookup(col)
	if !ok1 || !ok2 {
		return nil, false, fmt.Errorf("read %s: no %s or %s column", p.Key, key, col)
	}
	for _, rg := range p.file.RowGroups() {
		ids, err := columnValues(rg.ColumnChunks()[kc.ColumnIndex])
		if err != nil {
			return nil, false, fmt.Errorf("read %s: %s: %w", p.Key, key, err)
		}
		hit := -1
		for i := range ids {
			if ids[i].Int32() == id {
				hit = i
			}
		}
		if hit < 0 {
			continue
		}
		vals, err := columnValues(rg.ColumnChunks()[vc.ColumnIndex])
		if err != nil || len(vals) != len(ids) {
			return nil, false, fmt.Errorf("read %s: %s: %d values for %d rows: %v", p.Key, col, len(vals), len(ids), err)
		}
		value, ok = nil, true
		if !vals[hit].IsNull() {
			value = vals[hit].Clone().ByteArray()
		}
	}
	return value, ok, nil
}
