package transform

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// chunk is how many rows are read, transformed and written at a time.
const chunk = 8192

// object is an output object being written.
type object interface {
	// commit closes the object; ok is false when it holds no rows (and
	// was never created).
	commit() (obj lake.Object, ok bool, err error)
	abort()
}

// output streams one star table's rows of a batch into its Parquet object,
// created on the first row.
type output[T any] struct {
	table string
	out   *outputs
	w     *lake.ParquetWriter[T]
}

// newOutput is the output of the star table of row type T.
func newOutput[T any](o *outputs) *output[T] {
	w := &output[T]{table: star.TableOf[T]().Name, out: o}
	o.all = append(o.all, w)
	return w
}

func (w *output[T]) write(rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	if w.w == nil {
		key := lake.DataKey(w.table, w.out.now, w.out.seq, w.out.runID, "parquet")
		pw, err := lake.NewParquetWriter[T](w.out.ctx, w.out.bucket, key, nil)
		if err != nil {
			return err
		}
		w.w = pw
	}
	return w.w.Write(rows)
}

func (w *output[T]) commit() (lake.Object, bool, error) {
	if w.w == nil {
		return lake.Object{}, false, nil
	}
	pw := w.w
	w.w = nil
	size, sum, err := pw.Close()
	if err != nil {
		return lake.Object{}, false, err
	}
	return lake.Object{Table: w.table, Key: pw.Key(), Rows: pw.Rows(), Bytes: size, SHA256: sum, MaxLen: pw.MaxLen()}, true, nil
}

func (w *output[T]) abort() {
	if w.w != nil {
		w.w.Abort()
		w.w = nil
	}
}

// outputs are the objects of one processed batch.
type outputs struct {
	ctx    context.Context
	bucket *lake.Bucket
	now    time.Time
	seq    int64
	runID  string
	all    []object
}

// abort drops every object not yet committed.
func (o *outputs) abort() {
	for _, w := range o.all {
		w.abort()
	}
}

// rejectWriter streams rejected rows as JSON lines into the batch's rejects
// object, created on the first reject.
type rejectWriter struct {
	out     *outputs
	up      *lake.Upload
	bw      *bufio.Writer
	rows    int64
	byTable map[string]map[string]int64 // source table -> reject kind -> rows
	first   string
}

// rejectsTable names the rejects objects.
const rejectsTable = "rejects"

// rejectLine is one line of a rejects object.
type rejectLine struct {
	Table  string          `json:"table"`
	Kind   rejectKind      `json:"kind"`
	Reason string          `json:"reason"`
	Row    json.RawMessage `json:"row"`
}

func (r *rejectWriter) add(table string, row any, p *problem) error {
	if r.up == nil {
		key := lake.DataKey(rejectsTable, r.out.now, r.out.seq, r.out.runID, "jsonl")
		up, err := r.out.bucket.Create(r.out.ctx, key)
		if err != nil {
			return err
		}
		r.up, r.bw = up, bufio.NewWriterSize(up, 64*1024)
		r.byTable = map[string]map[string]int64{}
		r.first = fmt.Sprintf("%s: %s", table, p.reason)
	}
	line, err := json.Marshal(rejectLine{Table: table, Kind: p.kind, Reason: p.reason, Row: sourceJSON(row)})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := r.bw.Write(line); err != nil {
		return fmt.Errorf("write %s: %w", r.up.Key, err)
	}
	r.rows++
	if r.byTable[table] == nil {
		r.byTable[table] = map[string]int64{}
	}
	r.byTable[table][string(p.kind)]++
	return nil
}

func (r *rejectWriter) commit() (lake.Object, bool, error) {
	if r.up == nil {
		return lake.Object{}, false, nil
	}
	up := r.up
	r.up = nil
	if err := r.bw.Flush(); err != nil {
		up.Abort()
		return lake.Object{}, false, fmt.Errorf("write %s: %w", up.Key, err)
	}
	if err := up.Close(); err != nil {
		return lake.Object{}, false, err
	}
	return lake.Object{Table: rejectsTable, Key: up.Key, Rows: r.rows, Bytes: up.Size(), SHA256: up.SHA256()}, true, nil
}

func (r *rejectWriter) abort() {
	if r.up != nil {
		r.up.Abort()
		r.up = nil
	}
}

// sourceJSON renders a source row as a JSON object keyed by the source's
// column names, in column order: money as a decimal string, timestamps as
// text, NULL as null. A row already rendered (a json.RawMessage) is taken
// as it is.
func sourceJSON(row any) json.RawMessage {
	if raw, ok := row.(json.RawMessage); ok {
		return raw // rendered already, from values no row type holds
	}
	v := reflect.Indirect(reflect.ValueOf(row))
	t := v.Type()
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("parquet"), ",")
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(tag[0]))
		b.WriteByte(':')
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				b.WriteString("null")
				continue
			}
			f = f.Elem()
		}
		val := f.Interface()
		switch x := val.(type) {
		case time.Time:
			val = formatStamp(x)
		case int64:
			if len(tag) > 1 && strings.HasPrefix(tag[1], "decimal(2:") {
				val = formatCents(x)
			}
		}
		enc, err := json.Marshal(val)
		if err != nil {
			enc = []byte("null")
		}
		b.Write(enc)
	}
	b.WriteByte('}')
	return json.RawMessage(b.String())
}
