package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// walFixture is a fixture read by log-based capture; its slot is dropped
// when the test ends.
func walFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.capture = config.CaptureWAL
	// Other tests write WAL on the same server: no empty batches for it,
	// but in the test of them.
	f.quiet = 1 << 40
	t.Cleanup(func() { pgtest.DropSlot(t, f.url, config.DefaultSlot(f.url)) })
	return f
}

// manifest reads batch seq's manifest.
func (f *fixture) manifest(seq int64) lake.Manifest {
	f.t.Helper()
	var m lake.Manifest
	if err := f.bucket.ReadManifest(context.Background(), seq, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// confirmed is the slot's confirmed_flush_lsn.
func (f *fixture) confirmed() lake.LSN {
	f.t.Helper()
	var s string
	pgtest.Scan(f.t, f.url, []any{&s}, "SELECT confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
		config.DefaultSlot(f.url))
	l, err := lake.ParseLSN(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// captured is one landed row of a table as capture wrote it.
type captured struct {
	ID          int32     `parquet:"sales_order_id"`
	UnitsSold   int32     `parquet:"units_sold"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
	Op          string    `parquet:"_sandstone_op"`
	LSN         int64     `parquet:"_sandstone_lsn"`
}

func TestCaptureLandsEveryCommittedVersion(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	res := f.run()
	m := f.manifest(1)
	if res.Sequence != 1 || res.Total() != 10 || m.Capture == nil || !m.Capture.Snapshot || !m.Capture.SnapshotDone {
		t.Fatalf("first run: %+v, capture %+v", res, m.Capture)
	}
	if got := f.confirmed(); got != m.Capture.End {
		t.Errorf("slot confirmed to %s, the snapshot batch ends at %s", got, m.Capture.End)
	}
	for _, so := range rows[captured](t, f.bucket, 1, "sales_order") {
		if so.Op != lake.OpSnapshot || so.LSN != int64(m.Capture.End) {
			t.Errorf("snapshot row %+v", so)
		}
	}
	// Three versions, one correction that keeps last_updated, a delete.
	for _, units := range []int{101, 102, 103} {
		f.exec("UPDATE sales_order SET units_sold = $1, last_updated = last_updated + interval '1 second' WHERE sales_order_id = 1", units)
	}
	f.exec("UPDATE sales_order SET units_sold = 104 WHERE sales_order_id = 1")
	f.exec("DELETE FROM payment WHERE payment_id = 1")
	res = f.run()
	m = f.manifest(2)
	if res.Sequence != 2 || res.Rows["sales_order"] != 4 || m.Capture == nil || m.Capture.Snapshot {
		t.Fatalf("second run: %+v, capture %+v", res, m.Capture)
	}
	got := rows[captured](t, f.bucket, 2, "sales_order")
	for i, units := range []int32{101, 102, 103, 104} {
		if got[i].UnitsSold != units || got[i].Op != lake.OpUpdate || i > 0 && got[i].LSN <= got[i-1].LSN {
			t.Errorf("version %d: %+v", i, got[i])
		}
	}
	if !got[3].LastUpdated.Equal(got[2].LastUpdated) {
		t.Errorf("the correction's last_updated %v, the version it corrects %v", got[3].LastUpdated, got[2].LastUpdated)
	}
	if ids := m.Deleted["payment"]; len(ids) != 1 || ids[0] != 1 {
		t.Errorf("tombstones %v, want payment 1", m.Deleted)
	}
	if c := f.confirmed(); c != m.Capture.End || m.Capture.Start != f.manifest(1).Capture.End {
		t.Errorf("slot confirmed to %s; batch runs %s to %s", c, m.Capture.Start, m.Capture.End)
	}
	if res := f.run(); res.Sequence != 0 {
		t.Fatalf("a run with nothing new landed %+v", res)
	}
	// The id comes back: it leaves the deletions.
	f.exec(`INSERT INTO payment VALUES (1, now(), now(),1,1,394.00,1,1,false,'2024-01-03',1,2)`)
	f.run()
	if m := f.manifest(3); len(m.Revived["payment"]) != 1 || len(m.Deleted) != 0 {
		t.Errorf("re-insert: revived %v, deleted %v", m.Revived, m.Deleted)
	}
}

func TestCaptureGapIsLoud(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	pgtest.Exec(t, f.url, "SELECT pg_catalog.pg_drop_replication_slot($1)", config.DefaultSlot(f.url))
	f.exec("UPDATE sales_order SET units_sold = 7 WHERE sales_order_id = 1")
	_, err := Run(context.Background(), f.opts())
	if errkind.Of(err) != errkind.CaptureGap {
		t.Fatalf("a dropped slot: %v (%s), want capture_gap", err, errkind.Of(err))
	}
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 1 {
		t.Fatalf("a gap landed batch %d", n)
	}
	opts := f.opts()
	opts.Resnapshot = true
	res, err := Run(context.Background(), opts)
	if err != nil || res.Sequence != 2 {
		t.Fatalf("resnapshot: %+v, %v", res, err)
	}
	_ = totesys.Tables
}

func TestCaptureNeverSplitsATransaction(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	// One transaction of 500 orders, then one of 1, under a bound of 100.
	f.exec(`INSERT INTO sales_order SELECT g, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1 FROM generate_series(10, 509) g`)
	f.exec(`INSERT INTO sales_order VALUES (600, now(), now(),1,1,1,1,1.00,1,'2024-01-02','2024-01-03',1)`)
	opts := f.opts()
	opts.MaxBatchRows = 100
	res, err := Run(context.Background(), opts)
	if err != nil || res.Rows["sales_order"] != 500 || !res.More {
		t.Fatalf("a transaction over the bound: %+v, %v; want its 500 rows whole, and more", res, err)
	}
	res, err = Run(context.Background(), opts)
	if err != nil || res.Rows["sales_order"] != 1 || res.More {
		t.Fatalf("the next: %+v, %v", res, err)
	}
}

func TestCaptureUnchangedToastedValue(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	// A value large enough to be TOASTed out of line, and not compressible.
	f.exec(`UPDATE design SET file_location = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g) WHERE design_id = 1`)
	want := pgtest.QueryInt(t, f.url, "SELECT length(file_location) FROM design WHERE design_id = 1")
	f.run()
	cases := []struct {
		name, identity string
	}{
		{"the lake's previous version", "DEFAULT"},
		{"the old row", "FULL"},
	}
	for i, c := range cases {
		f.exec("ALTER TABLE design REPLICA IDENTITY " + c.identity)
		f.exec("UPDATE design SET design_name = $1, last_updated = now() WHERE design_id = 1", c.name)
		res := f.run()
		ds := rows[totesys.Design](t, f.bucket, res.Sequence, "design")
		if len(ds) != 1 || int64(len(ds[0].FileLocation)) != want || ds[0].DesignName != c.name {
			t.Fatalf("case %d (%s): landed %d rows, file_location of %d characters, want %d", i, c.name, len(ds), len(ds[0].FileLocation), want)
		}
	}
	// Two updates in one batch under the default identity: the second
	// takes the value from the first, landed first in a batch of its own.
	f.exec("ALTER TABLE design REPLICA IDENTITY DEFAULT")
	f.exec("UPDATE design SET file_location = file_location || 'x', last_updated = now() WHERE design_id = 1")
	f.exec("UPDATE design SET design_name = 'again', last_updated = now() WHERE design_id = 1")
	first := f.run()
	second := f.run()
	a := rows[totesys.Design](t, f.bucket, first.Sequence, "design")
	b := rows[totesys.Design](t, f.bucket, second.Sequence, "design")
	if len(a) != 1 || len(b) != 1 || a[0].FileLocation != b[0].FileLocation || int64(len(b[0].FileLocation)) != want+1 || b[0].DesignName != "again" {
		t.Fatalf("two updates in one batch: %d then %d rows", len(a), len(b))
	}
}

func TestCaptureSchemaChangeCutsTheBatch(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec("UPDATE currency SET currency_code = 'EUR', last_updated = now() WHERE currency_id = 1")
	f.exec("ALTER TABLE currency ADD COLUMN note text")
	f.exec("UPDATE currency SET note = 'new', last_updated = now() WHERE currency_id = 1")
	first := f.run()
	second := f.run()
	c1, c2 := f.manifest(first.Sequence), f.manifest(second.Sequence)
	o1, _ := c1.Table("currency")
	o2, _ := c2.Table("currency")
	if o1.Rows != 1 || o2.Rows != 1 || len(o2.Columns) != len(o1.Columns)+1 {
		t.Fatalf("a new column mid-stream: %+v then %+v", o1, o2)
	}
	if !strings.Contains(f.logs.String(), "source has a column the pipeline does not know") {
		t.Error("the new column was carried without a warning")
	}
}

func TestCaptureTypeChangeKeepsEveryValue(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec("UPDATE sales_order SET units_sold = 2147483647, last_updated = now() WHERE sales_order_id = 1")
	f.exec("ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint, ALTER COLUMN unit_price TYPE numeric(14,4)")
	f.exec("UPDATE sales_order SET units_sold = 9223372036854775807, unit_price = 1234567890.1234, last_updated = now() WHERE sales_order_id = 1")
	first, second := f.run(), f.run()
	m1, m2 := f.manifest(first.Sequence), f.manifest(second.Sequence)
	o1, _ := m1.Table("sales_order")
	o2, _ := m2.Table("sales_order")
	if o1.Rows != 1 || o2.Rows != 1 {
		t.Fatalf("a type change mid-stream: %d then %d rows", o1.Rows, o2.Rows)
	}
	types := func(o lake.Object) map[string]string {
		out := map[string]string{}
		for _, c := range o.Columns {
			out[c.Name] = c.Type
		}
		return out
	}
	if t1, t2 := types(o1), types(o2); t1["units_sold"] != "INT32" || t2["units_sold"] != "INT64" || t2["unit_price"] != "DECIMAL(14,4)" {
		t.Fatalf("column types %v then %v", t1, t2)
	}
	got := objectRows(t, f.bucket, second.Sequence, "sales_order")
	if got[0]["units_sold"] != "9223372036854775807" {
		t.Errorf("units_sold landed as %s", got[0]["units_sold"])
	}
}

// objectRows reads the rows of table in batch seq as column name to value,
// without the capture columns.
// openTableObject opens table's object of batch seq.
func openTableObject(t *testing.T, b *lake.Bucket, seq int64, table string) *lake.ParquetFile {
	t.Helper()
	var m lake.Manifest
	if err := b.ReadManifest(context.Background(), seq, &m); err != nil {
		t.Fatal(err)
	}
	obj, ok := m.Table(table)
	if !ok {
		t.Fatalf("batch %d has no %s", seq, table)
	}
	p, err := lake.OpenObject(context.Background(), b, obj)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// objectOptional tells, per column of table's object of batch seq (the
// capture columns left out), whether it is optional.
func objectOptional(t *testing.T, b *lake.Bucket, seq int64, table string) map[string]bool {
	t.Helper()
	p := openTableObject(t, b, seq, table)
	defer p.Close()
	out := map[string]bool{}
	for _, f := range p.File().Schema().Fields() {
		if !lake.IsCaptureColumn(f.Name()) {
			out[f.Name()] = f.Optional()
		}
	}
	return out
}

func objectRows(t *testing.T, b *lake.Bucket, seq int64, table string) []map[string]string {
	t.Helper()
	p := openTableObject(t, b, seq, table)
	defer p.Close()
	r := parquet.NewReader(p.File())
	fields := p.File().Schema().Fields()
	var out []map[string]string
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			m := map[string]string{}
			for _, v := range row {
				name := fields[v.Column()].Name()
				if !lake.IsCaptureColumn(name) {
					m[name] = v.String()
				}
			}
			out = append(out, m)
		}
		if err != nil {
			break
		}
	}
	return out
}

func TestCaptureLandsWhatThePollLands(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.exec(`ALTER TABLE currency ADD COLUMN i2 smallint, ADD COLUMN f4 real, ADD COLUMN f8 double precision, ADD COLUMN u uuid,
		ADD COLUMN j jsonb, ADD COLUMN n numeric, ADD COLUMN n124 numeric(12,4), ADD COLUMN c5 char(5), ADD COLUMN i8 bigint,
		ADD COLUMN tz timestamptz, ADD COLUMN d date, ADD COLUMN b boolean, ADD COLUMN iv interval`)
	f.run()
	f.exec(`UPDATE currency SET i2 = -32768, f4 = 3.4e38, f8 = -1.5e-300, u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		j = '{"a": [1, 2.50]}', n = 12345678901234567890.123456789, n124 = -99999999.9999, c5 = 'ab', i8 = -9223372036854775808,
		tz = '2024-02-29 23:59:59.999999+05:30', d = '0001-01-01', b = true, iv = '1 day 02:03:04', last_updated = now()
		WHERE currency_id = 1`)
	res := f.run()
	got := objectRows(t, f.bucket, res.Sequence, "currency")
	poll := newFixture(t) // the poll, into a bucket of its own, from the same source
	poll.url = f.url
	p := poll.run()
	var want map[string]string
	for _, r := range objectRows(t, poll.bucket, p.Sequence, "currency") {
		if r["currency_id"] == "1" {
			want = r
		}
	}
	if len(got) != 1 || len(want) == 0 {
		t.Fatalf("captured %d rows, the poll %d", len(got), len(want))
	}
	// NOT NULL columns are required in both: transform reads such objects
	// straight into its row types.
	if got, want := objectOptional(t, f.bucket, res.Sequence, "currency"), objectOptional(t, poll.bucket, p.Sequence, "currency"); !maps.Equal(got, want) {
		t.Errorf("optional columns: captured %v, the poll %v", got, want)
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s: captured %q, the poll %q", k, got[0][k], v)
		}
	}
}

func TestCaptureTakesOverFromThePoll(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.run() // the poll's first batch
	f.exec("UPDATE sales_order SET units_sold = 2, last_updated = now() WHERE sales_order_id = 1")
	f.exec(`INSERT INTO sales_order VALUES (2, now(), now(),1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`)
	w := walFixture(t)
	w.url, w.dir, w.bucket = f.url, f.dir, f.bucket
	res := w.run() // the first wal run lands what the poll had not
	m := w.manifest(2)
	if res.Sequence != 2 || res.Total() != 2 || res.Rows["sales_order"] != 2 || m.Capture == nil || !m.Capture.SnapshotDone {
		t.Fatalf("switch to wal: %+v", res)
	}
	w.exec("UPDATE sales_order SET units_sold = 3, last_updated = now() WHERE sales_order_id = 2")
	if res := w.run(); res.Total() != 1 {
		t.Fatalf("stream after the switch: %+v", res)
	}
	// And back to the poll: nothing lands twice, and the slot is named.
	w.exec("UPDATE sales_order SET units_sold = 4, last_updated = now() WHERE sales_order_id = 2")
	if res := f.run(); res.Total() != 1 {
		t.Fatalf("back to the poll: %+v", res)
	}
	if !strings.Contains(f.logs.String(), "replication slot") {
		t.Errorf("the poll did not say what becomes of the slot:\n%s", f.logs)
	}
}

// TestCaptureQuietPublicationDoesNotPinWAL runs alone: the WAL that other
// tests write, and their transactions under way, would hold the slot's
// restart point back too.
func TestCaptureQuietPublicationDoesNotPinWAL(t *testing.T) {
	f := walFixture(t)
	f.quiet = quietBytes
	smallSource(f)
	f.run()
	// 64 MB of WAL from a table outside the publication.
	f.exec("CREATE TABLE outside (v text)")
	f.exec("INSERT INTO outside SELECT repeat(md5(g::text), 32) FROM generate_series(1, 40000) g")
	res := f.run()
	m := f.manifest(2)
	if res.Sequence != 2 || res.Total() != 0 || m.Capture == nil || m.Capture.End <= m.Capture.Start {
		t.Fatalf("a run over WAL of other tables: %+v, capture %+v; want an empty batch that moves the slot on", res, m.Capture)
	}
	// The slot lets go of the WAL (restart_lsn, what the server keeps on
	// disk) only past a record of the running transactions: the run has
	// the server write one, and confirms past it.
	held := pgtest.QueryInt(t, f.url, "SELECT $2::pg_lsn - restart_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
		config.DefaultSlot(f.url), m.Capture.End.String())
	if held >= 16<<20 {
		t.Errorf("the slot holds back %d bytes of WAL after the run", held)
	}
	if n := pgtest.QueryInt(t, f.url, "SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name LIKE 'sandstone_mark_%'"); n != 0 {
		t.Errorf("%d slots left behind by the record's writing", n)
	}
}

func TestDropCapture(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	slot := config.DefaultSlot(f.url)
	d, err := DropCapture(context.Background(), f.url, slot, config.DefaultPublication)
	if err != nil || !d.Slot || !d.Publication {
		t.Fatalf("drop what capture created: %+v, %v", d, err)
	}
	if n := pgtest.QueryInt(t, f.url, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot) +
		pgtest.QueryInt(t, f.url, "SELECT count(*) FROM pg_publication"); n != 0 {
		t.Fatalf("%d slots or publications left", n)
	}
	// A slot a pipeline streams from is refused.
	pgtest.Exec(t, f.url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	f.exec("CREATE PUBLICATION sandstone FOR TABLE currency")
	pid, release := holdSlot(t, f.url, slot)
	_, err = DropCapture(context.Background(), f.url, slot, config.DefaultPublication)
	release()
	if errkind.Of(err) != errkind.CaptureNotReady || !strings.Contains(err.Error(), "in use by process "+itoa(pid)) {
		t.Fatalf("dropping a slot in use: %v", err)
	}
	pgtest.DropSlot(t, f.url, slot)
	f.exec("DROP PUBLICATION sandstone")
	// A DBA's publication stays; nothing to drop is no error.
	f.exec("CREATE PUBLICATION theirs FOR TABLE currency")
	d, err = DropCapture(context.Background(), f.url, slot, "theirs")
	if err != nil || d.Slot || d.Publication || !d.KeptPublication {
		t.Fatalf("a publication Sandstone did not create: %+v, %v", d, err)
	}
}

// TestCaptureCrashAfterLandingBeforeConfirming: a run that stops once its
// batch's manifest is committed and before the slot is confirmed leaves
// the batch in the lake and the slot behind it; the next run lands none of
// it again (it goes on from the lake's end, not the slot's) and confirms
// the slot to the lake's end.
func TestCaptureCrashAfterLandingBeforeConfirming(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	before := f.confirmed()
	for _, units := range []int{101, 102, 103} {
		f.exec("UPDATE sales_order SET units_sold = $1, last_updated = last_updated + interval '1 second' WHERE sales_order_id = 1", units)
	}
	f.exec("DELETE FROM payment WHERE payment_id = 1")
	crash := errors.New("crashed after landing")
	opts := f.opts()
	opts.afterLand = func() error { return crash }
	if _, err := Run(context.Background(), opts); !errors.Is(err, crash) {
		t.Fatalf("the crashing run: %v", err)
	}
	m := f.manifest(2)
	if o, _ := m.Table("sales_order"); o.Rows != 3 || len(m.Deleted["payment"]) != 1 {
		t.Fatalf("the crashing run landed %+v, deleted %v", m.Tables, m.Deleted)
	}
	if got := f.confirmed(); got != before {
		t.Fatalf("the slot was confirmed to %s after the crash, want %s (the batch before)", got, before)
	}
	// Nothing new: nothing lands, and the slot is confirmed to the lake's end.
	if res := f.run(); res.Sequence != 0 || res.Total() != 0 {
		t.Fatalf("the run after the crash landed %+v", res)
	}
	if got := f.confirmed(); got != m.Capture.End {
		t.Errorf("the slot is confirmed to %s after the next run, want the lake's end %s", got, m.Capture.End)
	}
	// The next change lands alone, once.
	f.exec("UPDATE sales_order SET units_sold = 104, last_updated = last_updated + interval '1 second' WHERE sales_order_id = 1")
	res := f.run()
	next := f.manifest(res.Sequence)
	got := rows[captured](t, f.bucket, res.Sequence, "sales_order")
	if res.Sequence != 3 || res.Total() != 1 || len(got) != 1 || got[0].UnitsSold != 104 || len(next.Deleted) != 0 {
		t.Fatalf("the next batch %+v: %+v, deleted %v", res, got, next.Deleted)
	}
	if c := f.confirmed(); c != next.Capture.End {
		t.Errorf("the slot is confirmed to %s, the batch ends at %s", c, next.Capture.End)
	}
}

// TestCaptureRoleWithoutReplication: a role without REPLICATION running
// capture gets the one capture_not_ready error of preflight, and nothing
// lands.
func TestCaptureRoleWithoutReplication(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	role := "cap_reader_" + strings.TrimPrefix(config.DefaultSlot(f.url), "sandstone_")
	f.exec(`CREATE ROLE ` + role + ` LOGIN`)
	t.Cleanup(func() { pgtest.Exec(t, f.url, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	f.exec(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ` + role)
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	opts := f.opts()
	opts.SourceURL = u.String()
	opts.Slot = config.DefaultSlot(f.url)
	_, err = Run(context.Background(), opts)
	wantNotReady(t, err, errkind.CaptureNotReady, `ALTER ROLE "`+role+`" WITH REPLICATION;`, `CREATE PUBLICATION "sandstone"`)
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 0 {
		t.Fatalf("batch %d landed", n)
	}
	if n := pgtest.QueryInt(t, f.url, `SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE database = current_database()`); n != 0 {
		t.Errorf("%d slots created", n)
	}
}

// TestCaptureEnumColumn: an enum (transaction.transaction_type) streams as
// its label, as the poll reads it.
func TestCaptureEnumColumn(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec("UPDATE transaction SET last_updated = now() WHERE transaction_id = 1")
	res := f.run()
	got := rows[totesys.Transaction](t, f.bucket, res.Sequence, "transaction")
	if len(got) != 1 || got[0].TransactionType != "SALE" {
		t.Fatalf("landed %+v", got)
	}
}

func TestCaptureSnapshotStopsAtItsDeadline(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	opts := f.opts()
	opts.MaxBatchRows, opts.Deadline = 3, time.Now().Add(-time.Second)
	res, err := Run(context.Background(), opts)
	if err != nil || res.Sequence != 1 || !res.More {
		t.Fatalf("a snapshot past its deadline: %+v, %v; want one batch and more", res, err)
	}
	if m := f.manifest(1); m.Capture == nil || !m.Capture.Snapshot || m.Capture.SnapshotDone {
		t.Fatalf("the cut snapshot's batch: %+v", m.Capture)
	}
	opts.Deadline = time.Time{}
	if _, err := Run(context.Background(), opts); err != nil { // a new slot, the rest of the snapshot
		t.Fatal(err)
	}
	last, _ := f.bucket.LatestSeq(context.Background())
	if m := f.manifest(last); !m.Capture.SnapshotDone {
		t.Fatalf("batch %d does not finish the snapshot: %+v", last, m.Capture)
	}
	seen := map[string]bool{}
	for seq := int64(1); seq <= last; seq++ {
		for _, tbl := range totesys.Tables {
			m := f.manifest(seq)
			if _, ok := m.Table(tbl.Name); !ok {
				continue
			}
			for _, r := range objectRows(t, f.bucket, seq, tbl.Name) {
				v := tbl.Name + "/" + r[tbl.Key] + "/" + r["last_updated"]
				if seen[v] {
					t.Errorf("%s landed twice", v)
				}
				seen[v] = true
			}
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d versions landed, the source has 10", len(seen))
	}
}

func TestCaptureTruncateIsAGap(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec("TRUNCATE payment")
	_, err := Run(context.Background(), f.opts())
	if errkind.Of(err) != errkind.CaptureGap || !strings.Contains(err.Error(), "TRUNCATE") || !strings.Contains(err.Error(), "--resnapshot") {
		t.Fatalf("a TRUNCATE: %v (%s), want a capture_gap that says the way back", err, errkind.Of(err))
	}
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 1 {
		t.Fatalf("a TRUNCATE landed batch %d", n)
	}
	if (errCut{at: 0x16B3748}).Error() != "batch cut before 0/16B3748" {
		t.Error("errCut's message")
	}
}

func TestCaptureSlotConfirmedPastTheLakeIsAGap(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	// Another consumer reads the slot on: the change is gone from it.
	// (Committed synchronously: a slot advances only over flushed WAL.)
	f.exec("BEGIN; SET LOCAL synchronous_commit = on; UPDATE sales_order SET units_sold = 7, last_updated = now() WHERE sales_order_id = 1; COMMIT")
	before := f.confirmed()
	pgtest.Exec(t, f.url, "SELECT pg_catalog.pg_replication_slot_advance($1, pg_catalog.pg_current_wal_flush_lsn())", config.DefaultSlot(f.url))
	if f.confirmed() <= before {
		t.Fatal("the slot did not advance")
	}
	_, err := Run(context.Background(), f.opts())
	if errkind.Of(err) != errkind.CaptureGap || !strings.Contains(err.Error(), "past the lake's last batch") {
		t.Fatalf("a slot confirmed past the lake: %v (%s), want capture_gap", err, errkind.Of(err))
	}
	for code, name := range map[string]string{"d": "DEFAULT", "n": "NOTHING", "f": "FULL", "i": "USING INDEX"} {
		if got := identityName(code); got != name {
			t.Errorf("identity %s reads %s, want %s", code, got, name)
		}
	}
}

func TestCaptureSchemaChangeInsideATransactionIsLoud(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec(`BEGIN;
		UPDATE currency SET last_updated = now() WHERE currency_id = 1;
		ALTER TABLE currency ADD COLUMN note text;
		UPDATE currency SET note = 'x', last_updated = now() WHERE currency_id = 1;
		COMMIT`)
	_, err := Run(context.Background(), f.opts())
	if errkind.Of(err) != errkind.SourceSchemaMismatch || !strings.Contains(err.Error(), "changed its columns inside the transaction") {
		t.Fatalf("rows of two layouts in one transaction: %v (%s)", err, errkind.Of(err))
	}
	if n, _ := f.bucket.LatestSeq(context.Background()); n != 1 {
		t.Fatalf("batch %d landed", n)
	}
}

func TestCaptureBadSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		url  string
		kind errkind.Kind
	}{
		{"postgres://u:secret@%zz/db", errkind.ConfigInvalid},
		{"postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", errkind.SourceUnreachable},
	} {
		f := newFixture(t)
		opts := f.opts()
		opts.SourceURL, opts.Capture = c.url, config.CaptureWAL
		_, err1 := Run(ctx, opts)
		_, err2 := DropCapture(ctx, c.url, "s", "p")
		_, err3 := SlotLag(ctx, c.url, "s")
		for i, err := range []error{err1, err2, err3} {
			if errkind.Of(err) != c.kind || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s, call %d: %v (%s), want %s without the password", c.url, i, err, errkind.Of(err), c.kind)
			}
		}
	}
}

// TestThePollTakesOverFromSpilledBatches: wal capture keeps the versions
// it lands out of its state (TableState.Spilled); a poll that takes over
// reads them back from the lake, so that none of them lands again, and a
// version capture never saw (stamped within the lookback, committed after
// capture stopped) lands once, in one batch or in bounded ones.
func TestThePollTakesOverFromSpilledBatches(t *testing.T) {
	t.Parallel()
	for _, bound := range []int64{0, 1} {
		t.Run(fmt.Sprintf("bound %d", bound), func(t *testing.T) {
			t.Parallel()
			w := walFixture(t)
			smallSource(w)
			w.run()
			for id := 2; id <= 4; id++ {
				w.exec("UPDATE sales_order SET units_sold = $1, last_updated = now() WHERE sales_order_id = 1", id)
				w.exec(`INSERT INTO sales_order VALUES ($1, now(), now(),1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`, id)
				w.run()
			}
			_, st, err := LoadState(context.Background(), w.bucket)
			if err != nil {
				t.Fatal(err)
			}
			if ts := st.Tables["sales_order"]; len(ts.Spilled) == 0 || len(ts.Recent) != 0 {
				t.Fatalf("capture's state keeps %d versions of sales_order and %d spilled ranges, want none and some", len(ts.Recent), len(ts.Spilled))
			}
			w.exec("UPDATE sales_order SET units_sold = 99, last_updated = now() - interval '1 minute' WHERE sales_order_id = 2")

			p := *w
			p.capture = config.CapturePoll
			opts := p.opts()
			opts.MaxBatchRows = bound
			var landed []totesys.SalesOrder
			for more := true; more; {
				res, err := Run(context.Background(), opts)
				if err != nil {
					t.Fatal(err)
				}
				more = res.More
				if res.Total() != res.Rows["sales_order"] {
					t.Fatalf("the poll landed again what capture had: %v", res.Rows)
				}
				if res.Sequence != 0 {
					landed = append(landed, rows[totesys.SalesOrder](t, w.bucket, res.Sequence, "sales_order")...)
				}
			}
			if len(landed) != 1 || landed[0].SalesOrderID != 2 || landed[0].UnitsSold != 99 {
				t.Fatalf("the poll landed %+v, want sales order 2's late version alone", landed)
			}
			// The poll's own state keeps them now: its next run lands only
			// what is new.
			if _, st, err = LoadState(context.Background(), w.bucket); err != nil || len(st.Tables["sales_order"].Spilled) != 0 {
				t.Fatalf("after the poll: %+v, %v", st.Tables["sales_order"], err)
			}
			w.exec("UPDATE sales_order SET units_sold = 100, last_updated = now() WHERE sales_order_id = 3")
			if res := p.run(); res.Total() != 1 {
				t.Errorf("the poll's next run: %+v", res)
			}
		})
	}
}

func TestSpill(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var s []Spill
	s = spill(s, 5, at, 8*time.Minute)
	s = spill(s, 6, at.Add(30*time.Second), 8*time.Minute) // the same minute
	s = spill(s, 8, at.Add(-time.Hour), 8*time.Minute)     // an old stamp: a range of its own
	if want := []Spill{{5, 6, at.Add(30 * time.Second)}, {8, 8, at.Add(-time.Hour)}}; !reflect.DeepEqual(s, want) {
		t.Fatalf("spill: %+v, want %+v", s, want)
	}
	for seq := int64(9); seq < 9+2*maxSpills; seq++ {
		s = spill(s, seq, at.Add(time.Duration(seq)*time.Hour), 8*time.Minute)
	}
	if last := s[len(s)-1]; len(s) != maxSpills || last.To != 8+2*maxSpills || !last.Newest.Equal(at.Add((8+2*maxSpills)*time.Hour)) {
		t.Errorf("past %d ranges: %d, the last %+v", maxSpills, len(s), last)
	}
}

// TestThePollTakesOverFromALakeMissingAnObject: a spilled batch whose
// object is gone from the bucket stops the poll that takes over, loudly,
// rather than landing again what it cannot tell apart.
func TestThePollTakesOverFromALakeMissingAnObject(t *testing.T) {
	t.Parallel()
	w := walFixture(t)
	smallSource(w)
	w.run()
	w.exec("UPDATE sales_order SET units_sold = 7, last_updated = now() WHERE sales_order_id = 1")
	res := w.run()
	m := w.manifest(res.Sequence)
	obj, ok := m.Table("sales_order")
	if !ok {
		t.Fatalf("batch %d landed no sales_order", res.Sequence)
	}
	if err := os.Remove(filepath.Join(w.dir, filepath.FromSlash(obj.Key))); err != nil {
		t.Fatal(err)
	}
	p := *w
	p.capture = config.CapturePoll
	if _, err := Run(context.Background(), p.opts()); errkind.Of(err) != errkind.BucketReadFailed || !strings.Contains(err.Error(), "versions batch") {
		t.Fatalf("a spilled object gone: %v, want %s naming the batch", err, errkind.BucketReadFailed)
	}
}
