package ingest

import (
	"context"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// captureSource is a database holding the totesys schema, its URL and its
// default slot, dropped when the test ends.
func captureSource(t *testing.T, url string) (string, string) {
	t.Helper()
	pgtest.Exec(t, url, totesys.Schema)
	slot := config.DefaultSlot(url)
	t.Cleanup(func() { pgtest.DropSlot(t, url, slot) })
	return url, slot
}

// runPreflight connects to url and runs preflight with the publication
// "sandstone".
func runPreflight(t *testing.T, url, slot string) (*capturePlan, error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	return preflight(ctx, conn, slot, config.DefaultPublication, false)
}

// wantNotReady fails the test unless err is of kind, with every one of
// wants in its text.
func wantNotReady(t *testing.T, err error, kind errkind.Kind, wants ...string) {
	t.Helper()
	if errkind.Of(err) != kind || !errkind.Permanent(err) {
		t.Fatalf("want a permanent %s error, got %s: %v", kind, errkind.Of(err), err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q:\n%v", w, err)
		}
	}
}

// allTables is the CREATE PUBLICATION list of the eleven tables.
func allTables() string {
	var names []string
	for _, tbl := range totesys.Tables {
		names = append(names, pgx.Identifier{"public", tbl.Name}.Sanitize())
	}
	return strings.Join(names, ", ")
}

// TestPreflightReady: a ready source passes; the publication is created
// (and said so) the first time only; each table's identity is told; an
// existing slot's row comes back.
func TestPreflightReady(t *testing.T) {
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	pgtest.Exec(t, url, `ALTER TABLE sales_order REPLICA IDENTITY FULL`)
	plan, err := runPreflight(t, url, slot)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.CreatedPublication || plan.Existing != nil || plan.ServerVersion < minCaptureVersion || len(plan.Tables) != len(totesys.Tables) {
		t.Fatalf("plan %+v", plan)
	}
	for _, tbl := range plan.Tables {
		if !tbl.Keyed || tbl.OldTuple() != (tbl.Name == "sales_order") || tbl.Schema != "public" {
			t.Errorf("%+v", tbl)
		}
		if want := "previous version the pipeline holds"; tbl.Name == "sales_order" {
			want = "taken from the old row"
			if !strings.Contains(tbl.String(), want) {
				t.Errorf("%s: %s", tbl.Name, tbl.String())
			}
		} else if !strings.Contains(tbl.String(), want) {
			t.Errorf("%s: %s", tbl.Name, tbl.String())
		}
	}
	if n := pgtest.QueryInt(t, url, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'sandstone'`); n != 11 {
		t.Fatalf("the publication has %d tables", n)
	}
	pgtest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	plan, err = runPreflight(t, url, slot)
	if err != nil {
		t.Fatal(err)
	}
	s := plan.Existing
	if plan.CreatedPublication || s == nil || s.Plugin != "pgoutput" || s.SlotType != "logical" || s.Active || s.ActivePID != 0 ||
		s.ConfirmedFlushLSN == 0 || s.RestartLSN == 0 || s.WALStatus != "reserved" || !strings.HasPrefix(s.Database, "t") {
		t.Fatalf("second plan %+v, slot %+v", plan, s)
	}
}

// TestPreflightRoleWithoutReplication: a role without REPLICATION that
// does not own the tables is told both the grant and the CREATE
// PUBLICATION a DBA must run, in one error; nothing is created.
func TestPreflightRoleWithoutReplication(t *testing.T) {
	src, slot := captureSource(t, pgtest.NewDatabase(t))
	role := "pf_reader_" + strings.TrimPrefix(slot, "sandstone_")
	pgtest.Exec(t, src, `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() { pgtest.Exec(t, src, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	pgtest.Exec(t, src, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+role)
	u, err := url.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	_, err = runPreflight(t, u.String(), slot)
	wantNotReady(t, err, errkind.CaptureNotReady,
		`ALTER ROLE "`+role+`" WITH REPLICATION;`, `GRANT rds_replication TO "`+role+`"`,
		`CREATE PUBLICATION "sandstone" FOR TABLE `+allTables()+`;`, "may not create it", "2 to do")
	if n := pgtest.QueryInt(t, src, `SELECT count(*) FROM pg_publication`); n != 0 {
		t.Errorf("%d publications", n)
	}
}

// TestPreflightWalLevelReplica: a server without logical decoding is told
// the setting, here and on RDS.
func TestPreflightWalLevelReplica(t *testing.T) {
	srv := startServer(t, map[string]string{"wal_level": "replica"})
	db, err := srv.CreateDatabase(context.Background(), "totesys")
	if err != nil {
		t.Fatal(err)
	}
	url, slot := captureSource(t, db)
	_, err = runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady, "wal_level is replica", "ALTER SYSTEM SET wal_level = logical;",
		"restart PostgreSQL", "rds.logical_replication = 1", "1 to do")
}

// startServer starts a server of its own for the test, with settings.
// limitedSlot starts a server whose slots may hold back 1 MB of WAL at
// most (max_slot_wal_keep_size), and creates the capture slot of its
// database "totesys", with the totesys schema; it returns both.
func limitedSlot(t *testing.T) (url, slot string) {
	t.Helper()
	srv := startServer(t, map[string]string{"wal_level": "logical", "max_slot_wal_keep_size": "1MB", "max_wal_size": "32MB", "min_wal_size": "32MB"})
	db, err := srv.CreateDatabase(context.Background(), "totesys")
	if err != nil {
		t.Fatal(err)
	}
	url, slot = captureSource(t, db)
	pgtest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	return url, slot
}

// pushWAL writes WAL and has the server remove what it may: past its
// limit, a slot's WAL goes and the slot is lost.
func pushWAL(t *testing.T, url string) {
	t.Helper()
	pgtest.Exec(t, url, `INSERT INTO currency (currency_code, created_at, last_updated) SELECT 'GBP', now(), now() FROM generate_series(1, 1000)`)
	pgtest.Exec(t, url, `SELECT pg_switch_wal()`)
	pgtest.Exec(t, url, `CHECKPOINT`)
}

func startServer(t *testing.T, settings map[string]string) *pgserver.Server {
	t.Helper()
	srv, err := pgserver.Start(context.Background(), pgserver.Options{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
		_ = os.RemoveAll(srv.Dir)
	})
	return srv
}

// TestPreflightPublicationIncomplete: a publication lacking tables, with
// one too many, and not publishing deletes, is told the three ALTER
// PUBLICATION statements; it is not changed.
func TestPreflightPublicationIncomplete(t *testing.T) {
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	pgtest.Exec(t, url, `CREATE TABLE audit_log (id int PRIMARY KEY);
		CREATE PUBLICATION sandstone FOR TABLE address, counterparty, currency, department, design, staff, payment_type,
			sales_order, purchase_order, audit_log WITH (publish = 'insert, update')`)
	_, err := runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady,
		`ALTER PUBLICATION "sandstone" ADD TABLE "public"."transaction", "public"."payment";`,
		`ALTER PUBLICATION "sandstone" DROP TABLE "public"."audit_log";`,
		`ALTER PUBLICATION "sandstone" SET (publish = 'insert, update, delete, truncate');`, "lacks 2 of the totesys tables", "3 to do")
	if n := pgtest.QueryInt(t, url, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'sandstone'`); n != 10 {
		t.Errorf("the publication was changed: %d tables", n)
	}
}

// TestPreflightReplicaIdentity: a table with REPLICA IDENTITY NOTHING,
// and one with no primary key, could not carry their keys in deletes:
// each is told its ALTER TABLE, and no publication is created (it would
// make their UPDATEs and DELETEs fail).
func TestPreflightReplicaIdentity(t *testing.T) {
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	pgtest.Exec(t, url, `ALTER TABLE payment REPLICA IDENTITY NOTHING;
		ALTER TABLE currency DROP CONSTRAINT currency_pkey CASCADE`)
	_, err := runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady,
		`public.payment has REPLICA IDENTITY NOTHING`, `ALTER TABLE "public"."payment" REPLICA IDENTITY DEFAULT;`,
		`public.currency has REPLICA IDENTITY DEFAULT without its key currency_id`, `ALTER TABLE "public"."currency" REPLICA IDENTITY FULL;`,
		`there is no publication sandstone: once the tables are fixed`, "3 to do")
	if n := pgtest.QueryInt(t, url, `SELECT count(*) FROM pg_publication`); n != 0 {
		t.Errorf("%d publications", n)
	}
}

// TestPreflightActiveSlot: a slot another process streams from is told
// with that process's pid.
func TestPreflightActiveSlot(t *testing.T) {
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	if _, err := runPreflight(t, url, slot); err != nil { // creates the publication
		t.Fatal(err)
	}
	pgtest.Exec(t, url, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	pid, release := holdSlot(t, url, slot)
	defer release()
	_, err := runPreflight(t, url, slot)
	wantBusy(t, err, "in use by process "+itoa(pid), "wal_sender_timeout", "sandstone run tries again", "pg_terminate_backend("+itoa(pid)+")")
	// With something else missing, the source is not ready, and says both.
	pgtest.Exec(t, url, `ALTER TABLE payment REPLICA IDENTITY NOTHING`)
	_, err = runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady, "in use by process "+itoa(pid), "REPLICA IDENTITY NOTHING", "2 to do")
}

// holdSlot streams from slot, as another consumer would, until release;
// it returns the WAL sender's process id once the slot is active.
func holdSlot(t *testing.T, url, slot string) (pid uint32, release func()) {
	t.Helper()
	ctx := context.Background()
	repl, err := pgconn.Connect(ctx, url+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	release = func() { _ = repl.Close(ctx) }
	if err := pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'sandstone'"}}); err != nil {
		release()
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); pgtest.QueryInt(t, url,
		`SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active`, slot) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			release()
			t.Fatal("the slot never became active")
		}
	}
	return repl.PID(), release
}

// wantBusy fails the test unless err is a capture_slot_busy error, not
// permanent, with every one of wants in its text.
func wantBusy(t *testing.T, err error, wants ...string) {
	t.Helper()
	if errkind.Of(err) != errkind.CaptureSlotBusy || errkind.Permanent(err) {
		t.Fatalf("want a capture_slot_busy error, retried, got %s (permanent %v): %v", errkind.Of(err), errkind.Permanent(err), err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q:\n%v", w, err)
		}
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// TestPreflightLostSlot: a slot the server invalidated (it removed WAL
// the slot needed, past max_slot_wal_keep_size) is a capture gap.
func TestPreflightLostSlot(t *testing.T) {
	url, slot := limitedSlot(t)
	for deadline := time.Now().Add(30 * time.Second); ; {
		var status string
		pgtest.Scan(t, url, []any{&status}, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if status == "lost" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot is %s, not lost", status)
		}
		pushWAL(t, url)
	}
	_, err := runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureGap, "was invalidated", "pg_drop_replication_slot('"+slot+"')", "audit --repair")
}

// TestCaptureOptions: the capture settings default to the poll, the
// source database's slot and the publication "sandstone"; a bad one is
// config_invalid, named.
func TestCaptureOptions(t *testing.T) {
	bucket, err := lake.Open(context.Background(), "mem://")
	if err != nil {
		t.Fatal(err)
	}
	o, err := Options{SourceURL: "postgres://u@h/Totesys", Bucket: bucket}.check()
	if err != nil || o.Capture != config.CapturePoll || o.Slot != "sandstone_totesys" || o.Publication != "sandstone" {
		t.Fatalf("defaults %q %q %q, %v", o.Capture, o.Slot, o.Publication, err)
	}
	for _, bad := range []Options{{Capture: "cdc"}, {Slot: "Slot"}, {Publication: strings.Repeat("p", 64)}} {
		bad.SourceURL, bad.Bucket = "postgres://u@h/totesys", bucket
		if _, err := bad.check(); errkind.Of(err) != errkind.ConfigInvalid || !strings.Contains(err.Error(), "ingest: ") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestPreflightForeignSlot: a slot of the name that is physical, or a
// logical one of another database, is not this pipeline's.
func TestPreflightForeignSlot(t *testing.T) {
	url, slot := captureSource(t, pgtest.NewDatabase(t))
	pgtest.Exec(t, url, `SELECT pg_create_physical_replication_slot($1)`, slot)
	_, err := runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady, "is a physical slot", "--slot (SANDSTONE_SLOT)", "1 to do")
	pgtest.DropSlot(t, url, slot)

	other := pgtest.NewDatabase(t)
	pgtest.Exec(t, other, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	_, err = runPreflight(t, url, slot)
	wantNotReady(t, err, errkind.CaptureNotReady, "belongs to the database t", "not this one", "1 to do")
}
