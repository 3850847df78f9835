// Package pgtest gives tests a fresh database on a throwaway PostgreSQL
// server that the test binary starts itself, and the real totesys snapshot.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and call NewDatabase in each test.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
)

// SnapshotEnv names the environment variable that points at the totesys
// snapshot directory (shared/totesys, with schema.sql and data/*.csv).
const SnapshotEnv = "SANDSTONE_TOTESYS_DIR"

var (
	server *pgserver.Server
	dbSeq  atomic.Int64
)

// Logical are the settings of the test server: logical decoding on, so
// that log-based capture can be tested on it.
var Logical = map[string]string{"wal_level": "logical", "max_replication_slots": "20", "max_wal_senders": "20"}

// Main starts the server, runs the tests and stops the server.
func Main(m *testing.M) int {
	s, err := pgserver.Start(context.Background(), pgserver.Options{Settings: Logical})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	server = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
	}
	_ = os.RemoveAll(s.Dir)
	return code
}

// NewDatabase creates an empty database for the test and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if server == nil {
		t.Fatal("pgtest: no server: call pgtest.Main from TestMain")
	}
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), sanitize(t.Name()))
	url, err := server.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 40; i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

// SnapshotDir returns the totesys snapshot directory named by SnapshotEnv.
// The test is skipped when the variable is unset and fails when it is set but
// the data is not there.
func SnapshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(SnapshotEnv)
	if dir == "" {
		t.Skipf("%s is not set: this test needs the real totesys snapshot (shared/totesys); .ci/run sets it", SnapshotEnv)
	}
	for _, f := range []string{"schema.sql", "data/sales_order.csv"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil { // #nosec G703 -- a test data directory the operator names
			t.Fatalf("%s=%s but the snapshot is missing: %v", SnapshotEnv, dir, err)
		}
	}
	return dir
}

// LoadSnapshot fills the empty database at url with the real totesys
// snapshot: its schema and every row, with each id sequence moved past its
// data (as shared/totesys/load.sh does).
func LoadSnapshot(t testing.TB, url string) {
	t.Helper()
	dir := SnapshotDir(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	schema, err := os.ReadFile(filepath.Join(dir, "schema.sql")) // #nosec G304 -- test data
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(schema)); err != nil {
		t.Fatalf("snapshot schema: %v", err)
	}
	for _, tbl := range totesys.Tables {
		f, err := os.Open(filepath.Join(dir, "data", tbl.Name+".csv")) // #nosec G304 -- test data
		if err != nil {
			t.Fatal(err)
		}
		ident := pgx.Identifier{tbl.Name}.Sanitize()
		_, err = conn.PgConn().CopyFrom(ctx, f, "COPY "+ident+` FROM STDIN WITH (FORMAT csv, HEADER true, NULL '\N')`)
		_ = f.Close()
		if err != nil {
			t.Fatalf("snapshot %s: %v", tbl.Name, err)
		}
		if _, err := conn.Exec(ctx, "SELECT setval(pg_get_serial_sequence($1, $2), (SELECT max("+
			pgx.Identifier{tbl.Key}.Sanitize()+") FROM "+ident+"))", tbl.Name, tbl.Key); err != nil {
			t.Fatalf("snapshot %s sequence: %v", tbl.Name, err)
		}
	}
}

// ReferenceRows inserts, into a database holding the totesys schema, one
// row of each table that sales orders refer to: address, counterparty,
// currency (GBP), department, design, staff and payment type, id 1 each,
// stamped a day back.
const ReferenceRows = `
	INSERT INTO address VALUES (1,'1 A St',NULL,NULL,'Leeds','LS1','UK','0113', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO counterparty VALUES (1,'Acme',1,NULL,NULL, now() - interval '1 day', now() - interval '1 day');
	INSERT INTO currency VALUES (1,'GBP', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO department VALUES (1,'Sales',NULL,NULL, now() - interval '1 day', now() - interval '1 day');
	INSERT INTO design VALUES (1, now() - interval '1 day','Wooden','/usr','w.json', now() - interval '1 day');
	INSERT INTO staff VALUES (1,'Ann','Lee',1,'a@x', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO payment_type VALUES (1,'SALES_RECEIPT', now() - interval '1 day', now() - interval '1 day');`

// Exec runs SQL statements on url, failing the test on error.
func Exec(t testing.TB, url string, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// Scan runs a query that yields one row and scans it into dest.
func Scan(t testing.TB, url string, dest []any, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
}

// QueryInt returns the single integer a query yields.
func QueryInt(t testing.TB, url string, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	Scan(t, url, []any{&n}, sql, args...)
	return n
}

// DropSlot drops the replication slot when it exists, waiting (10 s at
// most) for the last process streaming from it to leave it: tests drop
// every slot they create.
func DropSlot(t testing.TB, url, slot string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err = conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
	}
}
