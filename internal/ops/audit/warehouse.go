package audit

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// WarehouseTable is one warehouse table's findings against the processed
// bucket's loaded batches.
type WarehouseTable struct {
	// Rows counts the rows in the warehouse table.
	Rows int64 `json:"warehouse_rows"`
	// Processed counts the distinct fact versions, or the dimension ids,
	// that the loaded batches of the processed bucket hold.
	Processed int64 `json:"processed_rows"`
	// Missing counts fact versions or dimension ids of the processed
	// bucket that the warehouse lacks.
	Missing int64 `json:"missing"`
	// Duplicated counts fact versions the warehouse holds more than once
	// (only a table without the unique version key can).
	Duplicated int64 `json:"duplicated"`
	// Stale counts dimension ids whose warehouse row differs from the
	// latest processed value.
	Stale int64 `json:"stale"`
	// Examples names up to Examples ids from the findings.
	Examples []int32 `json:"examples,omitempty"`
}

// drift reports whether t found anything.
func (t *WarehouseTable) drift() bool { return t.Missing > 0 || t.Duplicated > 0 || t.Stale > 0 }

func (t *WarehouseTable) example(id int32) {
	if len(t.Examples) < Examples && !slices.Contains(t.Examples, id) {
		t.Examples = append(t.Examples, id)
	}
}

// CheckWarehouse compares the warehouse with the processed bucket: every
// fact version of a loaded batch must be in its fact table once, and every
// dimension (all but dim_date) must hold, per id, the latest value the
// loaded batches give it (later batches win; within a batch, the later
// row). Only the batches the warehouse's load ledger records count: one
// processed but not yet loaded is pending, not missing. The warehouse is
// read in one read-only REPEATABLE READ transaction, so the ledger and the
// tables are seen at one instant, and the ledger's batches must be the
// bucket's (by manifest SHA-256), or the error is of kind LedgerMismatch.
//
// Neither side is held as rows. Per fact version it keeps 16 bytes (the
// source id and last-updated instant), sorted, and merges them with the
// fact table streamed in key order; per dimension id, a 64-bit FNV-1a hash
// of the row's values in a text form both PostgreSQL and Go produce
// exactly (a NULL apart from an empty text), compared with the same hash
// of the warehouse row. Fact versions or dimension ids the warehouse holds and the
// bucket does not are counted in Rows only.
//
// Errors carry an errkind: WarehouseUnreachable, WarehouseSchemaMismatch (a
// table or column missing), LedgerMismatch, ObjectMismatch or
// BucketReadFailed.
func CheckWarehouse(ctx context.Context, processed *lake.Bucket, warehouseURL, schema string) (map[string]*WarehouseTable, error) {
	return checkWarehousePasses(ctx, processed, warehouseURL, schema, passSizes{})
}

// checkWarehousePasses is CheckWarehouse in passes of sizes.
func checkWarehousePasses(ctx context.Context, processed *lake.Bucket, warehouseURL, schema string, sizes passSizes) (map[string]*WarehouseTable, error) {
	sizes = sizes.orDefaults()
	switch {
	case processed == nil:
		return nil, errkind.Wrap(errkind.ConfigInvalid, errors.New("check the warehouse: no processed bucket"))
	case warehouseURL == "":
		return nil, errkind.Wrap(errkind.ConfigInvalid, errors.New("check the warehouse: no warehouse URL"))
	}
	if schema == "" {
		schema = config.DefaultSchema
	}
	wh, err := warehouse.Open(ctx, warehouseURL, schema, warehouse.App("sandstone audit"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	snap, err := wh.Snapshot(ctx)
	if err != nil {
		return nil, warehouseErr(fmt.Errorf("check the warehouse: %w", err))
	}
	defer snap.End(context.WithoutCancel(ctx))
	tx := snap.Tx()
	batches, err := loadedBatches(ctx, snap, processed)
	if err != nil {
		return nil, err
	}
	out := map[string]*WarehouseTable{}
	for _, t := range checked {
		var objs []lake.Object
		for _, b := range batches {
			for _, o := range b {
				if o.Table == t.name && o.Rows > 0 {
					objs = append(objs, o)
				}
			}
		}
		wt := &WarehouseTable{}
		if batches != nil { // else nothing was loaded, and the tables may not exist
			if err := t.check(ctx, tx, processed, schema, objs, wt, sizes); err != nil {
				return nil, fmt.Errorf("check %s: %w", t.name, err)
			}
		}
		out[t.name] = wt
	}
	return out, nil
}

// loadedBatches reads the ledger in snap and returns the tables of each
// batch it records, in sequence order; nil when there is no ledger
// (nothing was ever loaded).
func loadedBatches(ctx context.Context, snap *warehouse.Snapshot, b *lake.Bucket) ([][]lake.Object, error) {
	loaded, err := snap.Loaded(ctx)
	if err != nil {
		return nil, warehouseErr(err)
	}
	if loaded == nil {
		return nil, nil
	}
	out := make([][]lake.Object, 0, len(loaded))
	for _, e := range loaded {
		var m lake.Manifest
		sum, err := b.ReadManifestSum(ctx, e.Sequence, &m)
		switch {
		case errors.Is(err, lake.ErrNotFound):
			return nil, errkind.Wrap(errkind.LedgerMismatch, fmt.Errorf(
				"check the warehouse: its ledger records batch %s, and the processed bucket %s has none", lake.BatchID(e.Sequence), b.URL()))
		case err != nil:
			return nil, errkind.Default(errkind.BucketReadFailed, fmt.Errorf("check the warehouse: batch %s: %w", lake.BatchID(e.Sequence), err))
		case e.ManifestSHA256 != "" && e.ManifestSHA256 != sum:
			return nil, errkind.Wrap(errkind.LedgerMismatch, fmt.Errorf(
				"check the warehouse: batch %s in its ledger has manifest sha256 %s, the processed bucket %s's has %s",
				lake.BatchID(e.Sequence), e.ManifestSHA256, b.URL(), sum))
		}
		out = append(out, m.Tables)
	}
	return out, nil
}

// warehouseErr marks an error of the warehouse connection: a missing table
// or column (SQL class 42) is a schema mismatch, another server error keeps
// no kind, and anything else means the warehouse was lost.
func warehouseErr(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && strings.HasPrefix(pe.Code, "42"):
		return errkind.Wrap(errkind.WarehouseSchemaMismatch, err)
	case errors.As(err, &pe):
		return err
	}
	return errkind.Default(errkind.WarehouseUnreachable, err)
}

// column is one star column, as the check reads it from a row and from
// the warehouse.
type column struct {
	name  string
	field int
	typ   *star.Type
	null  bool // a pointer field: the column may be NULL
}

// sql is the column's text form in the warehouse, the same as appendText
// gives the Parquet value (the star type's TextSQL).
func (c column) sql() string { return c.typ.TextSQL(pgx.Identifier{c.name}.Sanitize()) }

// appendText appends the text form of v, a non-nil value of the column.
func (c column) appendText(b []byte, v reflect.Value) []byte { return c.typ.AppendText(b, v) }

// hasher hashes a row's column values, each NULL or length-prefixed text,
// so that no two rows of different values share an encoding.
type hasher struct{ buf []byte }

func (h *hasher) reset() { h.buf = h.buf[:0] }

func (h *hasher) null() { h.buf = append(h.buf, 0) }

// value starts a value; its text follows, then end.
func (h *hasher) value() int {
	h.buf = append(h.buf, 1, 0, 0, 0, 0)
	return len(h.buf)
}

func (h *hasher) end(start int) {
	binary.LittleEndian.PutUint32(h.buf[start-4:start], uint32(len(h.buf)-start)) // #nosec G115 -- a value under 4 GiB
}

func (h *hasher) sum() uint64 {
	f := fnv.New64a()
	_, _ = f.Write(h.buf)
	return f.Sum64()
}

// checkedTable is one warehouse table the check compares, with the star
// type transform writes for it.
type checkedTable struct {
	name      string
	dimension bool
	cols      []column // every field of the star type, in order
	key       []int    // indexes into cols of star.Tables' key
	// read streams the rows of a verified object, each as a struct value.
	read func(ctx context.Context, p *lake.ParquetFile, fn func(reflect.Value)) error
}

// checked are the tables CheckWarehouse compares: star.Tables but dim_date.
var checked = checkedTables(star.Tables)

// rowReader reads the rows of a verified object of one star row type,
// each as a struct value. Go generics need each row type named once:
// rowReaders does it, and nothing else about the tables is said here.
type rowReader struct {
	row  reflect.Type
	read func(ctx context.Context, p *lake.ParquetFile, fn func(reflect.Value)) error
}

func readerFor[T any]() rowReader {
	return rowReader{reflect.TypeFor[T](), func(ctx context.Context, p *lake.ParquetFile, fn func(reflect.Value)) error {
		return lake.ReadRows(ctx, p, 1024, func(rows []T) error {
			for i := range rows {
				fn(reflect.ValueOf(&rows[i]).Elem())
			}
			return nil
		})
	}}
}

var rowReaders = []rowReader{
	readerFor[star.DimStaff](), readerFor[star.DimLocation](), readerFor[star.DimCurrency](), readerFor[star.DimDesign](),
	readerFor[star.DimCounterparty](), readerFor[star.DimPaymentType](), readerFor[star.DimTransaction](),
	readerFor[star.FactSalesOrder](), readerFor[star.FactPurchaseOrder](), readerFor[star.FactPayment](),
}

// checkedTables describes the tables of sts but the calendar. A table it
// cannot check is a programming error: it panics at start-up.
func checkedTables(sts []star.Table) []checkedTable {
	var out []checkedTable
	for _, st := range sts {
		if st.Calendar {
			continue
		}
		t, err := describe(st)
		if err == nil {
			i := slices.IndexFunc(rowReaders, func(r rowReader) bool { return r.row == st.Row })
			if i < 0 {
				err = fmt.Errorf("no reader of %s in rowReaders", st.Row)
			} else {
				t.read = rowReaders[i].read
			}
		}
		if err != nil {
			panic(fmt.Sprintf("audit: %s: %v", st.Name, err))
		}
		out = append(out, t)
	}
	return out
}

// factKey is the types of a fact's key: the source id and the last-updated
// date and time, which checkFact and mergeFact read as a version.
var factKey = []*star.Type{star.Int, star.DateType, star.TimeType}

// describe maps the columns of star table st to the check's columns.
func describe(st star.Table) (checkedTable, error) {
	t := checkedTable{name: st.Name, dimension: st.Dimension}
	for _, sc := range st.Columns {
		t.cols = append(t.cols, column{name: sc.Name, field: sc.Field, typ: sc.Type, null: sc.Nullable})
	}
	for _, k := range st.Key {
		i := slices.IndexFunc(t.cols, func(c column) bool { return c.name == k })
		if i < 0 || t.cols[i].null {
			return t, fmt.Errorf("key column %s: none, or nullable", k)
		}
		t.key = append(t.key, i)
	}
	want := factKey
	if t.dimension {
		want = factKey[:1]
	}
	if keyTypes := t.keyTypes(); !slices.Equal(keyTypes, want) {
		return t, fmt.Errorf("key %v of types %v", st.Key, typeNames(keyTypes))
	}
	return t, nil
}

func typeNames(ts []*star.Type) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func (t *checkedTable) keyTypes() []*star.Type {
	out := make([]*star.Type, len(t.key))
	for i, k := range t.key {
		out[i] = t.cols[k].typ
	}
	return out
}

// forEachRow streams the processed rows of objs, in order, verified.
func (t *checkedTable) forEachRow(ctx context.Context, b *lake.Bucket, objs []lake.Object, fn func(reflect.Value)) error {
	for _, obj := range objs {
		p, err := lake.OpenObject(ctx, b, obj)
		if err != nil {
			return errkind.Default(errkind.BucketReadFailed, err)
		}
		err = t.read(ctx, p, fn)
		p.Close()
		if err != nil {
			return errkind.Default(errkind.BucketReadFailed, err)
		}
	}
	return nil
}

// version is a fact version: the source id and the last-updated instant in
// µs since 1970.
type version struct {
	id int32
	us int64
}

func (v version) compare(w version) int {
	return cmp.Or(cmp.Compare(v.id, w.id), cmp.Compare(v.us, w.us))
}

const usPerDay = 86_400_000_000

// check compares the table a range of ids at a time: a dimension's hashes
// (8 bytes and a bit an id) for as many ids a pass as the source audit
// holds (sizes.ids), a fact's versions (16 bytes each) for half as many,
// and never more than sizes.versions of them (see checkFact). Each pass
// reads the table's processed objects again, and its range of the
// warehouse.
func (t *checkedTable) check(ctx context.Context, tx pgx.Tx, b *lake.Bucket, schema string, objs []lake.Object, wt *WarehouseTable, sizes passSizes) error {
	var maxID int64
	key := pgx.Identifier{t.cols[t.key[0]].name}.Sanitize()
	if err := tx.QueryRow(ctx, "SELECT coalesce(max("+key+"), 0)::int8 FROM "+pgx.Identifier{schema, t.name}.Sanitize()).Scan(&maxID); err != nil {
		return warehouseErr(err)
	}
	if t.dimension {
		for p := range passesOf(maxID, sizes.ids) {
			if err := t.checkDimension(ctx, tx, b, schema, objs, wt, p); err != nil {
				return err
			}
		}
		return nil
	}
	rows := rowsOf(objs)
	for p := range passesOf(maxID, max(1, sizes.ids/2)) {
		// Room for the pass's share of the versions, and an eighth more.
		room := min(int64(sizes.versions), rows*int64(p.dense)/(maxID+1)*9/8+1024)
		for sub := p; ; {
			end, err := t.checkFact(ctx, tx, b, schema, objs, wt, sub, room, sizes.versions)
			if err != nil {
				return err
			}
			if end == p.to {
				break
			}
			sub.from = end
		}
	}
	return nil
}

// rowsOf is the number of rows objs hold.
func rowsOf(objs []lake.Object) int64 {
	var n int64
	for _, obj := range objs {
		n += obj.Rows
	}
	return n
}

// rangeSQL restricts a query of t to the ids of pass p.
func (t *checkedTable) rangeSQL() string {
	key := pgx.Identifier{t.cols[t.key[0]].name}.Sanitize()
	return " WHERE " + key + " >= $1::int8 AND " + key + " < $2::int8"
}

// factVersions bounds the versions a pass over a fact table holds (16
// bytes each: 32 MB), unless a test makes passes of a few (passSizes). A
// fact keeps every version of an id, so its ids alone do not bound a pass
// as its history grows.
const factVersions = 1 << 21

// checkFact merges the sorted versions of objs whose ids lie in p with the
// fact table's rows, streamed in the same order. Should the pass's
// versions reach most, it keeps its lower ids only and ends below the
// others: it returns where it ended, p.to when it covered all of p. room
// is the versions it makes room for at first.
func (t *checkedTable) checkFact(ctx context.Context, tx pgx.Tx, b *lake.Bucket, schema string, objs []lake.Object, wt *WarehouseTable, p pass, room int64, most int) (int64, error) {
	vs := make([]version, 0, room)
	id, day, ms := t.cols[t.key[0]], t.cols[t.key[1]], t.cols[t.key[2]]
	limit := most
	err := t.forEachRow(ctx, b, objs, func(r reflect.Value) {
		v := version{int32(r.Field(id.field).Int()), // #nosec G115 -- an int32 field
			r.Field(day.field).Int()*usPerDay + r.Field(ms.field).Int()*1000}
		if int64(v.id) >= p.from && int64(v.id) < p.to {
			if vs = append(vs, v); len(vs) >= limit {
				if vs, p.to = lowerIDs(vs, p.to, most); len(vs) >= limit {
					limit *= 2 // one id's versions: they cannot be split
				}
			}
		}
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(vs, version.compare)
	vs = slices.Compact(vs)
	wt.Processed += int64(len(vs))
	return p.to, t.mergeFact(ctx, tx, schema, vs, wt, p)
}

// lowerIDs sorts and dedupes vs, a pass's versions, at most most of them,
// and, unless that freed a quarter of it, keeps the versions of its lower
// ids only, about three quarters, returning the new end of the pass (the
// first id dropped); one id's versions are never split.
func lowerIDs(vs []version, end int64, most int) ([]version, int64) {
	slices.SortFunc(vs, version.compare)
	vs = slices.Compact(vs)
	if len(vs) < most/4*3 {
		return vs, end
	}
	cut := vs[len(vs)/4*3].id
	i, _ := slices.BinarySearchFunc(vs, cut, func(v version, id int32) int { return cmp.Compare(v.id, id) })
	if i == 0 { // the first id holds most of them: end after it
		if i = slices.IndexFunc(vs, func(v version) bool { return v.id != cut }); i < 0 {
			return vs, end // one id only: it cannot be split
		}
	}
	return vs[:i], int64(vs[i].id)
}

// mergeFact merges vs, sorted, with the rows of the fact table's range p,
// streamed in the same order: a version not in the table is missing, one
// there twice duplicated.
func (t *checkedTable) mergeFact(ctx context.Context, tx pgx.Tx, schema string, vs []version, wt *WarehouseTable, p pass) error {
	id, day, ms := t.cols[t.key[0]], t.cols[t.key[1]], t.cols[t.key[2]]
	qi, qd, qt := pgx.Identifier{id.name}.Sanitize(), pgx.Identifier{day.name}.Sanitize(), pgx.Identifier{ms.name}.Sanitize()
	rows, err := tx.Query(ctx, "SELECT "+qi+", ("+qd+" - DATE '1970-01-01')::int8 * "+strconv.Itoa(usPerDay)+
		" + (EXTRACT(EPOCH FROM "+qt+") * 1000000)::int8 FROM "+pgx.Identifier{schema, t.name}.Sanitize()+t.rangeSQL()+
		" ORDER BY "+qi+", "+qd+", "+qt, p.from, p.to)
	if err != nil {
		return warehouseErr(err)
	}
	i := 0
	var w, prev version
	dup := false
	_, err = pgx.ForEachRow(rows, []any{&w.id, &w.us}, func() error {
		wt.Rows++
		if wt.Rows > 1 {
			switch c := w.compare(prev); {
			case c < 0:
				return errkind.Wrap(errkind.Internal, fmt.Errorf("the warehouse returned version (%d, %d) after (%d, %d)", w.id, w.us, prev.id, prev.us))
			case c == 0:
				if !dup {
					wt.Duplicated++
					wt.example(w.id)
					dup = true
				}
				return nil
			}
		}
		prev, dup = w, false
		for ; i < len(vs) && vs[i].compare(w) < 0; i++ {
			wt.Missing++
			wt.example(vs[i].id)
		}
		if i < len(vs) && vs[i] == w {
			i++
		}
		return nil
	})
	if err != nil {
		return warehouseErr(err)
	}
	for ; i < len(vs); i++ {
		wt.Missing++
		wt.example(vs[i].id)
	}
	return nil
}

// rowHash hashes the values of r, a row of the star type.
func (t *checkedTable) rowHash(h *hasher, r reflect.Value) uint64 {
	h.reset()
	for _, c := range t.cols {
		v := r.Field(c.field)
		if c.null {
			if v.IsNil() {
				h.null()
				continue
			}
			v = v.Elem()
		}
		start := h.value()
		h.buf = c.appendText(h.buf, v)
		h.end(start)
	}
	return h.sum()
}

// selectText selects every column of the table's rows, in the text forms
// rowHash hashes, in key order.
func (t *checkedTable) selectText(schema string) string {
	exprs := make([]string, len(t.cols))
	for i, c := range t.cols {
		exprs[i] = c.sql()
	}
	return "SELECT " + strings.Join(exprs, ", ") + " FROM " + pgx.Identifier{schema, t.name}.Sanitize() + t.rangeSQL() +
		" ORDER BY " + pgx.Identifier{t.cols[t.key[0]].name}.Sanitize()
}

// rawHash hashes a row selectText selected (nil is NULL) as rowHash hashes
// the same values.
func rawHash(h *hasher, vals [][]byte) uint64 {
	h.reset()
	for _, v := range vals {
		if v == nil {
			h.null()
			continue
		}
		start := h.value()
		h.buf = append(h.buf, v...)
		h.end(start)
	}
	return h.sum()
}

// checkDimension hashes the latest processed row of each id and compares
// each warehouse row's hash with it.
func (t *checkedTable) checkDimension(ctx context.Context, tx pgx.Tx, b *lake.Bucket, schema string, objs []lake.Object, wt *WarehouseTable, p pass) error {
	// Room for the pass's ids, or as many as the objects hold, if fewer.
	latest := newIDHashes(p.base, int(min(int64(p.dense), rowsOf(objs))))
	key := t.cols[t.key[0]]
	var h hasher
	err := t.forEachRow(ctx, b, objs, func(r reflect.Value) {
		if id := r.Field(key.field).Int(); id >= p.from && id < p.to {
			latest.set(int32(id), t.rowHash(&h, r)) // #nosec G115 -- an int32 field
		}
	})
	if err != nil {
		return err
	}
	wt.Processed += int64(latest.len())

	rows, err := tx.Query(ctx, t.selectText(schema), p.from, p.to)
	if err != nil {
		return warehouseErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		wt.Rows++
		vals := rows.RawValues()
		if len(vals) != len(t.cols) {
			return errkind.Wrap(errkind.Internal, fmt.Errorf("%d values for %d columns", len(vals), len(t.cols)))
		}
		sum := rawHash(&h, vals)
		n, err := strconv.ParseInt(string(vals[t.key[0]]), 10, 32)
		if err != nil {
			return errkind.Wrap(errkind.WarehouseSchemaMismatch, fmt.Errorf("key %s: %w", key.name, err))
		}
		id := int32(n)
		want, ok := latest.take(id)
		if !ok { // not in the processed bucket, or the id a second time
			continue
		}
		if want != sum {
			wt.Stale++
			wt.example(id)
		}
	}
	if err := rows.Err(); err != nil {
		return warehouseErr(err)
	}
	wt.Missing += int64(latest.len())
	for _, id := range latest.ids(Examples - len(wt.Examples)) {
		wt.example(id)
	}
	return nil
}
