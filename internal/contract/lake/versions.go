package lake

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// ReadVersions streams the (id, last_updated in µs) of every row of p, an
// ingested object, to fn: key names its INT32 id column. It reads those
// two columns alone, a row group at a time.
func ReadVersions(p *ParquetFile, key, lastUpdated string, fn func(id int32, us int64)) error {
	schema := p.file.Schema()
	kc, ok1 := schema.Lookup(key)
	lc, ok2 := schema.Lookup(lastUpdated)
	if !ok1 || !ok2 {
		return fmt.Errorf("read %s: no %s or %s column", p.Key, key, lastUpdated)
	}
	for _, rg := range p.file.RowGroups() {
		ids, err := columnValues(rg.ColumnChunks()[kc.ColumnIndex])
		if err != nil {
			return fmt.Errorf("read %s: %s: %w", p.Key, key, err)
		}
		lus, err := columnValues(rg.ColumnChunks()[lc.ColumnIndex])
		if err != nil {
			return fmt.Errorf("read %s: %s: %w", p.Key, lastUpdated, err)
		}
		if len(ids) != len(lus) {
			return fmt.Errorf("read %s: %d ids for %d stamps", p.Key, len(ids), len(lus))
		}
		for i := range ids {
			fn(ids[i].Int32(), lus[i].Int64())
		}
	}
	return nil
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
