package transform

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// source is one ingest batch's rows, table by table.
type sourceRows struct {
	Address       []totesys.Address
	Counterparty  []totesys.Counterparty
	Currency      []totesys.Currency
	Department    []totesys.Department
	Design        []totesys.Design
	Staff         []totesys.Staff
	PaymentType   []totesys.PaymentType
	SalesOrder    []totesys.SalesOrder
	PurchaseOrder []totesys.PurchaseOrder
	Transaction   []totesys.Transaction
	Payment       []totesys.Payment
}

// putBatch writes rows as ingest batch seq: one Parquet object per table
// with rows, then the manifest, as internal/stage/ingest does; extra objects
// (written already) join the manifest too.
func putBatch(t testing.TB, b *lake.Bucket, seq int64, rows sourceRows, extra ...lake.Object) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	m := lake.Manifest{Version: 1, Stage: "ingest", Batch: lake.BatchID(seq), Sequence: seq, RunID: "test", CreatedAt: now}
	add := func(obj lake.Object, ok bool, newest time.Time) {
		if ok {
			m.Tables = append(m.Tables, obj)
			if newest.After(m.SourceNewest) {
				m.SourceNewest = newest
			}
		}
	}
	add(putTable(t, b, "address", seq, rows.Address, func(r totesys.Address) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "counterparty", seq, rows.Counterparty, func(r totesys.Counterparty) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "currency", seq, rows.Currency, func(r totesys.Currency) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "department", seq, rows.Department, func(r totesys.Department) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "design", seq, rows.Design, func(r totesys.Design) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "staff", seq, rows.Staff, func(r totesys.Staff) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "payment_type", seq, rows.PaymentType, func(r totesys.PaymentType) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "sales_order", seq, rows.SalesOrder, func(r totesys.SalesOrder) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "purchase_order", seq, rows.PurchaseOrder, func(r totesys.PurchaseOrder) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "transaction", seq, rows.Transaction, func(r totesys.Transaction) time.Time { return r.LastUpdated }))
	add(putTable(t, b, "payment", seq, rows.Payment, func(r totesys.Payment) time.Time { return r.LastUpdated }))
	m.Tables = append(m.Tables, extra...)
	if err := b.PutManifest(ctx, seq, &m); err != nil {
		t.Fatal(err)
	}
}

func putTable[T any](t testing.TB, b *lake.Bucket, table string, seq int64, rows []T, lu func(T) time.Time) (lake.Object, bool, time.Time) {
	t.Helper()
	if len(rows) == 0 {
		return lake.Object{}, false, time.Time{}
	}
	w, err := lake.NewParquetWriter[T](context.Background(), b, lake.DataKey(table, time.Now(), seq, "test", "parquet"), ingestSchema[T](table))
	if err != nil {
		t.Fatal(err)
	}
	var newest time.Time
	for i := 0; i < len(rows); i += chunk {
		end := min(i+chunk, len(rows))
		if err := w.Write(rows[i:end]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rows {
		if l := lu(r); l.After(newest) {
			newest = l
		}
	}
	size, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return lake.Object{Table: table, Key: w.Key(), Rows: int64(len(rows)), Bytes: size, SHA256: sum}, true, newest
}

// ingestSchema is the schema internal/stage/ingest writes table with: a group of
// the source's columns, which Parquet orders by name.
func ingestSchema[T any](table string) *parquet.Schema {
	g := parquet.Group{}
	for _, f := range parquet.SchemaOf(new(T)).Fields() {
		g[f.Name()] = f
	}
	return parquet.NewSchema(table, g)
}

// processed reads processed batch seq's manifest.
func processed(t testing.TB, b *lake.Bucket, seq int64) lake.Manifest {
	t.Helper()
	var m lake.Manifest
	if err := b.ReadManifest(context.Background(), seq, &m); err != nil {
		t.Fatalf("processed batch %d: %v", seq, err)
	}
	return m
}

// rowsOf reads the star table's rows of processed batch seq (none when the
// batch has no object for it).
func rowsOf[T any](t testing.TB, b *lake.Bucket, seq int64, table string) []T {
	t.Helper()
	m := processed(t, b, seq)
	obj, ok := m.Table(table)
	if !ok {
		return nil
	}
	var out []T
	if err := lake.ReadParquet(context.Background(), b, obj.Key, 4096, func(rs []T) error { out = append(out, rs...); return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(len(out)) != obj.Rows {
		t.Fatalf("%s: manifest says %d rows, object holds %d", table, obj.Rows, len(out))
	}
	return out
}

// allRowsOf reads the star table's rows of processed batches 1..n.
func allRowsOf[T any](t testing.TB, b *lake.Bucket, n int64, table string) []T {
	t.Helper()
	var out []T
	for seq := int64(1); seq <= n; seq++ {
		out = append(out, rowsOf[T](t, b, seq, table)...)
	}
	return out
}

// rejectsOf reads processed batch seq's rejects.
func rejectsOf(t testing.TB, b *lake.Bucket, seq int64) []rejectLine {
	t.Helper()
	m := processed(t, b, seq)
	if m.Rejects == nil {
		return nil
	}
	data, err := b.Get(context.Background(), m.Rejects.Key)
	if err != nil {
		t.Fatal(err)
	}
	var out []rejectLine
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var l rejectLine
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	if int64(len(out)) != m.Rejects.Rows {
		t.Fatalf("rejects: manifest says %d rows, object holds %d", m.Rejects.Rows, len(out))
	}
	return out
}

func buckets(t testing.TB) (ingest, proc *lake.Bucket) {
	t.Helper()
	ctx := context.Background()
	var err error
	if ingest, err = lake.Open(ctx, "file://"+filepath.Join(t.TempDir(), "ingest")); err != nil {
		t.Fatal(err)
	}
	if proc, err = lake.Open(ctx, "file://"+filepath.Join(t.TempDir(), "processed")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ingest.Close(); _ = proc.Close() })
	return ingest, proc
}

// logBuffer collects a run's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the log records at level whose msg is msg.
func (l *logBuffer) records(level, msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["level"] == level && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func run(t testing.TB, ingest, proc *lake.Bucket) Result {
	t.Helper()
	res, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// ts parses a totesys timestamp, e.g. "2022-11-03 14:20:52.186".
func ts(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05.999999", s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// day is the star.Date of "YYYY-MM-DD".
func day(s string) star.Date {
	d, ok := parseDate(s)
	if !ok {
		panic(s)
	}
	return d
}

// clock is the star.TimeOfDay of "HH:MM:SS.mmm".
func clock(s string) star.TimeOfDay {
	t, err := time.Parse("15:04:05.999", s)
	if err != nil {
		panic(err)
	}
	return star.TimeOf(t)
}

func ptr[T any](v T) *T { return &v }

// loadCSV reads a totesys snapshot CSV into rows of T, matching columns to
// T's parquet tags: \N is NULL, money has two decimals.
func loadCSV[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path) // #nosec G304 -- test data
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	typ := reflect.TypeFor[T]()
	out := make([]T, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		var row T
		v := reflect.ValueOf(&row).Elem()
		for i := 0; i < typ.NumField(); i++ {
			tag := strings.Split(typ.Field(i).Tag.Get("parquet"), ",")
			idx, ok := col[tag[0]]
			if !ok {
				t.Fatalf("%s: no column %s", path, tag[0])
			}
			setField(t, v.Field(i), rec[idx], len(tag) > 1 && strings.HasPrefix(tag[1], "decimal"))
		}
		out = append(out, row)
	}
	return out
}

func setField(t testing.TB, f reflect.Value, s string, decimal bool) {
	t.Helper()
	if f.Kind() == reflect.Pointer {
		if s == `\N` {
			return
		}
		f.Set(reflect.New(f.Type().Elem()))
		f = f.Elem()
	}
	var err error
	switch f.Interface().(type) {
	case string:
		f.SetString(s)
	case int32:
		var n int64
		n, err = strconv.ParseInt(s, 10, 32)
		f.SetInt(n)
	case int64:
		if decimal {
			whole, frac, _ := strings.Cut(s, ".")
			frac = (frac + "00")[:2]
			var n int64
			n, err = strconv.ParseInt(whole+frac, 10, 64)
			f.SetInt(n)
		} else {
			var n int64
			n, err = strconv.ParseInt(s, 10, 64)
			f.SetInt(n)
		}
	case bool:
		var v bool
		v, err = strconv.ParseBool(s)
		f.SetBool(v)
	case time.Time:
		f.Set(reflect.ValueOf(ts(s)))
	default:
		t.Fatalf("unsupported field type %s", f.Type())
	}
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
}

// snapshotRows reads the whole real totesys snapshot in dir.
func snapshotRows(t testing.TB, dir string) sourceRows {
	t.Helper()
	p := func(name string) string { return filepath.Join(dir, "data", name+".csv") }
	return sourceRows{
		Address:       loadCSV[totesys.Address](t, p("address")),
		Counterparty:  loadCSV[totesys.Counterparty](t, p("counterparty")),
		Currency:      loadCSV[totesys.Currency](t, p("currency")),
		Department:    loadCSV[totesys.Department](t, p("department")),
		Design:        loadCSV[totesys.Design](t, p("design")),
		Staff:         loadCSV[totesys.Staff](t, p("staff")),
		PaymentType:   loadCSV[totesys.PaymentType](t, p("payment_type")),
		SalesOrder:    loadCSV[totesys.SalesOrder](t, p("sales_order")),
		PurchaseOrder: loadCSV[totesys.PurchaseOrder](t, p("purchase_order")),
		Transaction:   loadCSV[totesys.Transaction](t, p("transaction")),
		Payment:       loadCSV[totesys.Payment](t, p("payment")),
	}
}
