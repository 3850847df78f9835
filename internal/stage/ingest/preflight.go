package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// minCaptureVersion is the oldest server wal capture reads: pgoutput's
// binary values came with PostgreSQL 14.
const minCaptureVersion = 140000

// capturePlan is what preflight found on a source ready for wal capture.
type capturePlan struct {
	Slot        string
	Publication string
	// ServerVersion is the server's server_version_num (e.g. 160004).
	ServerVersion int
	// CreatedPublication says preflight created the publication: Sandstone
	// owns it, and an uninstall may drop it.
	CreatedPublication bool
	// Existing is the slot's row; nil when the slot does not exist yet.
	Existing *slotState
	// Tables is what each table's replica identity means for capture.
	Tables []tableIdentity
}

// slotState is a replication slot's row in pg_replication_slots.
type slotState struct {
	Database string
	Plugin   string
	SlotType string
	Active   bool
	// ActivePID is the process streaming from the slot; 0 when inactive.
	ActivePID         int32
	RestartLSN        lake.LSN
	ConfirmedFlushLSN lake.LSN
	// WALStatus is reserved, extended, unreserved or lost.
	WALStatus string
}

// tableIdentity is a source table and what its replica identity carries.
type tableIdentity struct {
	// Schema and Name are the table the source's search_path finds.
	Schema, Name string
	// Identity is pg_class.relreplident: d (default: the primary key),
	// n (nothing), f (full: the whole old row) or i (an index).
	Identity string
	// Keyed says a delete (and the old row of an update) carries the
	// table's key.
	Keyed bool
	// hasPK says the table has a primary key holding its key column.
	hasPK bool
}

// OldTuple says an unchanged TOASTed value can be taken from the old row
// pgoutput sends (REPLICA IDENTITY FULL); otherwise it must come from the
// previous version the pipeline holds.
func (t tableIdentity) OldTuple() bool { return t.Identity == "f" }

// qualified is the table's quoted, schema-qualified name.
func (t tableIdentity) qualified() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// String says, for the log, what the table's identity means.
func (t tableIdentity) String() string {
	if t.OldTuple() {
		return fmt.Sprintf("%s.%s: REPLICA IDENTITY FULL: deletes carry the key; an unchanged TOASTed value is taken from the old row", t.Schema, t.Name)
	}
	return fmt.Sprintf("%s.%s: REPLICA IDENTITY %s: deletes carry the key; an unchanged TOASTed value is taken from the previous version the pipeline holds (FULL would send it in the old row, at the cost of more WAL)",
		t.Schema, t.Name, identityName(t.Identity))
}

func identityName(code string) string {
	switch code {
	case "n":
		return "NOTHING"
	case "f":
		return "FULL"
	case "i":
		return "USING INDEX"
	}
	return "DEFAULT"
}

// notReady gathers what the source lacks, each with what to run or set.
type notReady struct {
	missing []string
	// gap: the slot was invalidated, so changes are lost already.
	gap bool
	// busy: another consumer holds the slot; alone, that passes.
	busy bool
}

func (r *notReady) add(format string, args ...any) {
	r.missing = append(r.missing, fmt.Sprintf(format, args...))
}

// err is the one error naming everything missing, or nil.
func (r *notReady) err(slot, publication string) error {
	if len(r.missing) == 0 {
		return nil
	}
	if r.busy && len(r.missing) == 1 {
		return errkind.Wrap(errkind.CaptureSlotBusy, errors.New(r.missing[0]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the source is not ready for --capture wal (slot %s, publication %s): %d to do, then run again (or keep --capture poll):",
		slot, publication, len(r.missing))
	for i, m := range r.missing {
		fmt.Fprintf(&b, "\n  %d. %s", i+1, m)
	}
	kind := errkind.CaptureNotReady
	if r.gap {
		kind = errkind.CaptureGap
	}
	return errkind.Wrap(kind, errors.New(b.String()))
}

// preflight checks, on a normal connection and before anything lands,
// that the source can be read by wal capture through slot and publication:
// server version, wal_level, the role's right to replicate, the
// publication (created when missing and the role may), the slot, and each
// table's replica identity. A source that is not ready fails with one
// error of kind errkind.CaptureNotReady naming everything missing and what
// to run or set (errkind.CaptureGap when the slot was invalidated;
// errkind.CaptureSlotBusy when all it lacks is a slot another consumer
// holds, which passes). Other errors are the server's, unmarked.
//
// The publication is created only when every table's replica identity
// lets deletes carry the key: once published, a table without one
// refuses its application's UPDATEs and DELETEs. replacing says the run
// drops and creates the slot again (a snapshot), so an invalidated one is
// no gap.
func preflight(ctx context.Context, conn *pgx.Conn, slot, publication string, replacing bool) (*capturePlan, error) {
	plan := &capturePlan{Slot: slot, Publication: publication}
	var r notReady
	rds, err := checkServer(ctx, conn, plan, &r)
	if err != nil {
		return nil, err
	}
	if plan.ServerVersion < minCaptureVersion { // nothing else can help
		return nil, r.err(slot, publication)
	}
	if err := checkRole(ctx, conn, rds, &r); err != nil {
		return nil, err
	}
	if plan.Tables, err = readIdentities(ctx, conn, &r); err != nil {
		return nil, err
	}
	if plan.CreatedPublication, err = checkPublication(ctx, conn, publication, plan.Tables, &r); err != nil {
		return nil, err
	}
	if plan.Existing, err = checkSlot(ctx, conn, slot, replacing, &r); err != nil {
		return nil, err
	}
	if err := r.err(slot, publication); err != nil {
		return nil, err
	}
	return plan, nil
}

// checkServer reads the version and checks wal_level and the WAL senders.
// It reports whether the server is Amazon RDS or Aurora (it has the role
// rds_replication), whose settings live in a DB parameter group.
func checkServer(ctx context.Context, conn *pgx.Conn, plan *capturePlan, r *notReady) (rds bool, err error) {
	var version, walLevel string
	var senders int
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version'),
		current_setting('wal_level'), current_setting('max_wal_senders')::int,
		EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')`).
		Scan(&plan.ServerVersion, &version, &walLevel, &senders, &rds)
	if err != nil {
		return false, fmt.Errorf("capture preflight: read the server's settings: %w", err)
	}
	if plan.ServerVersion < minCaptureVersion {
		r.add("PostgreSQL %s is older than 14, the first to send pgoutput's values in binary: upgrade the source", version)
		return rds, nil
	}
	if walLevel != "logical" {
		if rds {
			r.add("wal_level is %s, and logical decoding needs logical: set rds.logical_replication = 1 in the instance's DB parameter group, and reboot the instance", walLevel)
		} else {
			r.add("wal_level is %s, and logical decoding needs logical: run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL "+
				"(on Amazon RDS or Aurora: set rds.logical_replication = 1 in the DB parameter group, and reboot)", walLevel)
		}
	}
	if senders == 0 {
		r.add("max_wal_senders is 0, and streaming from a slot needs a WAL sender: set max_wal_senders = 10 and restart PostgreSQL (on RDS: in the DB parameter group)")
	}
	return rds, nil
}

// checkRole checks the login may stream from a slot: a superuser, a role
// with REPLICATION, or (on RDS) a member of rds_replication.
func checkRole(ctx context.Context, conn *pgx.Conn, rds bool, r *notReady) error {
	var role string
	var super, repl, rdsRepl bool
	err := conn.QueryRow(ctx, `SELECT rolname, rolsuper, rolreplication,
		EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'MEMBER'))
		FROM pg_roles WHERE rolname = current_user`).Scan(&role, &super, &repl, &rdsRepl)
	if err != nil {
		return fmt.Errorf("capture preflight: read the role: %w", err)
	}
	if super || repl || rdsRepl {
		return nil
	}
	ident := pgx.Identifier{role}.Sanitize()
	if rds {
		r.add("the role %s may not stream from a replication slot: as the master user, run GRANT rds_replication TO %s;", role, ident)
	} else {
		r.add("the role %s may not stream from a replication slot: as a superuser, run ALTER ROLE %s WITH REPLICATION; "+
			"(on Amazon RDS or Aurora: GRANT rds_replication TO %s;)", role, ident, ident)
	}
	return nil
}

// readIdentities finds each totesys table (as the search_path does) and
// what its replica identity carries; a table whose deletes would not
// carry its key is missing something.
func readIdentities(ctx context.Context, conn *pgx.Conn, r *notReady) ([]tableIdentity, error) {
	var out []tableIdentity
	for _, tbl := range totesys.Tables {
		var t tableIdentity
		var found, hasIdx bool
		err := conn.QueryRow(ctx, `SELECT c.oid IS NOT NULL, coalesce(n.nspname, ''), coalesce(c.relname, ''), coalesce(c.relreplident::text, ''),
			coalesce((SELECT bool_or(i.indisprimary) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
				WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = $2), false),
			coalesce((SELECT bool_or(i.indisreplident) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
				WHERE i.indrelid = c.oid AND i.indisreplident AND a.attname = $2), false)
			FROM (SELECT to_regclass($1) AS oid) t LEFT JOIN pg_class c ON c.oid = t.oid LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
			pgx.Identifier{tbl.Name}.Sanitize(), tbl.Key).Scan(&found, &t.Schema, &t.Name, &t.Identity, &t.hasPK, &hasIdx)
		if err != nil {
			return nil, fmt.Errorf("capture preflight: read table %s: %w", tbl.Name, err)
		}
		if !found {
			r.add("the source has no table %s (on the search_path): is this the totesys database?", tbl.Name)
			continue
		}
		t.Keyed = t.Identity == "f" || (t.Identity == "d" && t.hasPK) || (t.Identity == "i" && hasIdx)
		if !t.Keyed {
			fix := "ALTER TABLE " + t.qualified() + " REPLICA IDENTITY FULL;"
			if t.hasPK {
				fix = "ALTER TABLE " + t.qualified() + " REPLICA IDENTITY DEFAULT;"
			}
			r.add("the table %s.%s has REPLICA IDENTITY %s without its key %s, so its deletes could not carry the key "+
				"(and, once published, the table would refuse UPDATE and DELETE): run %s", t.Schema, t.Name, identityName(t.Identity), tbl.Key, fix)
		}
		out = append(out, t)
	}
	return out, nil
}

// checkPublication checks the publication publishes inserts, updates and
// deletes of exactly the tables; a missing one is created when the role
// may (it owns the tables, or is a superuser) and every table is keyed,
// and created reports it.
func checkPublication(ctx context.Context, conn *pgx.Conn, name string, tables []tableIdentity, r *notReady) (created bool, err error) {
	ident := pgx.Identifier{name}.Sanitize()
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.qualified()
	}
	create := "CREATE PUBLICATION " + ident + " FOR TABLE " + strings.Join(names, ", ") + ";"
	var all, ins, upd, del bool
	err = conn.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1`, name).
		Scan(&all, &ins, &upd, &del)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return createPublication(ctx, conn, name, create, tables, r)
	case err != nil:
		return false, fmt.Errorf("capture preflight: read publication %s: %w", name, err)
	case all:
		r.add("the publication %s is FOR ALL TABLES, and capture reads the eleven totesys tables only: name another with --publication (SANDSTONE_PUBLICATION), which Sandstone creates when it may, or run %s", name, create)
		return false, nil
	}
	if !ins || !upd || !del {
		r.add("the publication %s does not publish every insert, update and delete: run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate');", name, ident)
	}
	return false, comparePublished(ctx, conn, name, ident, names, r)
}

// comparePublished reports the tables the publication lacks, and those it
// has beyond the totesys tables (names, quoted and qualified).
func comparePublished(ctx context.Context, conn *pgx.Conn, name, ident string, names []string, r *notReady) error {
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, name)
	if err != nil {
		return fmt.Errorf("capture preflight: read the tables of publication %s: %w", name, err)
	}
	var published []string
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			return fmt.Errorf("capture preflight: read the tables of publication %s: %w", name, err)
		}
		published = append(published, pgx.Identifier{schema, table}.Sanitize())
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("capture preflight: read the tables of publication %s: %w", name, err)
	}
	var lacking, extra []string
	for _, n := range names {
		if !slices.Contains(published, n) {
			lacking = append(lacking, n)
		}
	}
	for _, p := range published {
		if !slices.Contains(names, p) {
			extra = append(extra, p)
		}
	}
	if len(lacking) > 0 {
		r.add("the publication %s lacks %d of the totesys tables: run ALTER PUBLICATION %s ADD TABLE %s;",
			name, len(lacking), ident, strings.Join(lacking, ", "))
	}
	if len(extra) > 0 {
		r.add("the publication %s publishes tables beyond the totesys ones: run ALTER PUBLICATION %s DROP TABLE %s; or name another with --publication (SANDSTONE_PUBLICATION)",
			name, ident, strings.Join(extra, ", "))
	}
	return nil
}

// createPublication runs create, unless a table is missing or could not
// carry its key (publishing it would break its application's writes); a
// role that may not (insufficient_privilege) leaves it to a DBA.
func createPublication(ctx context.Context, conn *pgx.Conn, name, create string, tables []tableIdentity, r *notReady) (bool, error) {
	ready := len(tables) == len(totesys.Tables)
	for _, t := range tables {
		ready = ready && t.Keyed
	}
	if !ready {
		r.add("there is no publication %s: once the tables are fixed, Sandstone creates it when its role owns them; else a DBA runs %s", name, create)
		return false, nil
	}
	// Created and marked as Sandstone's in one transaction, so that
	// DropCapture drops it, and only it.
	_, err := conn.Exec(ctx, "BEGIN; "+create+" COMMENT ON PUBLICATION "+pgx.Identifier{name}.Sanitize()+" IS '"+ownMark+"'; COMMIT;")
	if err != nil {
		_, _ = conn.Exec(ctx, "ROLLBACK")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		r.add("there is no publication %s, and Sandstone's role may not create it (%s): the owner of the tables (with CREATE on the database), or a superuser, runs %s",
			name, pgErr.Message, create)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("capture preflight: %s: %w", create, err)
	}
	return true, nil
}

// checkSlot reads the slot: when it exists it must be a logical pgoutput
// slot of this database, idle, and not invalidated; when it does not, a
// slot must be free for it.
func checkSlot(ctx context.Context, conn *pgx.Conn, name string, replacing bool, r *notReady) (*slotState, error) {
	var s slotState
	var pid *int32
	var restart, confirmed, database, plugin, status *string
	var here bool
	err := conn.QueryRow(ctx, `SELECT database, coalesce(database = current_database(), false), plugin, slot_type, active, active_pid,
		restart_lsn::text, confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&database, &here, &plugin, &s.SlotType, &s.Active, &pid, &restart, &confirmed, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, checkSlotFree(ctx, conn, name, r)
	}
	if err != nil {
		return nil, fmt.Errorf("capture preflight: read slot %s: %w", name, err)
	}
	s.Database, s.Plugin, s.WALStatus = deref(database), deref(plugin), deref(status)
	if pid != nil {
		s.ActivePID = *pid
	}
	if s.RestartLSN, err = parseLSN(restart); err == nil {
		s.ConfirmedFlushLSN, err = parseLSN(confirmed)
	}
	if err != nil {
		return nil, fmt.Errorf("capture preflight: slot %s: %w", name, err)
	}
	drop := fmt.Sprintf("SELECT pg_drop_replication_slot('%s');", name) // a valid slot name needs no quoting
	switch {
	case s.SlotType != "logical" || s.Plugin != "pgoutput":
		r.add("the slot %s is a %s slot (plugin %q), not a logical pgoutput one: name another with --slot (SANDSTONE_SLOT), or run %s if nothing uses it", name, s.SlotType, s.Plugin, drop)
	case !here:
		r.add("the slot %s belongs to the database %s, not this one: name another with --slot (SANDSTONE_SLOT)", name, s.Database)
	case s.WALStatus == "lost" && !replacing:
		r.gap = true
		r.add("the slot %s was invalidated (wal_status lost: the server removed WAL it still needed, see max_slot_wal_keep_size), so changes after %s are gone: "+
			"drop it (%s) and close the gap with a fresh snapshot or sandstone audit --repair", name, s.ConfirmedFlushLSN, drop)
	}
	if s.Active {
		r.busy = true
		r.add("the slot %s is in use by process %d (another pipeline on this slot, a run still streaming, or a killed one whose WAL sender holds it until wal_sender_timeout passes): "+
			"sandstone run tries again; if it lasts, stop the other consumer, or run SELECT pg_terminate_backend(%d);", name, s.ActivePID, s.ActivePID)
	}
	return &s, nil
}

// checkSlotFree checks a slot may still be created: max_replication_slots
// is not used up.
func checkSlotFree(ctx context.Context, conn *pgx.Conn, name string, r *notReady) error {
	var used, most int
	err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int`).Scan(&used, &most)
	if err != nil {
		return fmt.Errorf("capture preflight: count the replication slots: %w", err)
	}
	if used >= most {
		r.add("the slot %s does not exist and cannot be created: all %d replication slots are taken (max_replication_slots): "+
			"drop one that is no longer used (SELECT slot_name, active FROM pg_replication_slots;) or raise max_replication_slots and restart PostgreSQL (on RDS: in the DB parameter group)", name, most)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseLSN reads an LSN the server printed; NULL is 0.
func parseLSN(s *string) (lake.LSN, error) {
	if s == nil {
		return 0, nil
	}
	return lake.ParseLSN(*s)
}
