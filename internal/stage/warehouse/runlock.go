package warehouse

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// runLockKey is the advisory lock that one `sandstone run` holds on a
// warehouse schema for its whole life, distinct from lockKey (which each
// load transaction takes).
func (s schema) runLockKey() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("sandstone run " + string(s)))
	return int64(h.Sum64()) // #nosec G115 -- any 64 bits make a lock key
}

// RunLock is the hold one `sandstone run` has on an installation (a
// warehouse schema and the buckets loaded into it).
type RunLock struct {
	conn *pgx.Conn
	key  int64
}

// LockRun takes the installation's run lock on the handle's connection,
// which it renames (application_name) after this process and host; the
// lock lasts until Release, or until the handle closes. When another run
// holds it, the error (of kind ConfigInvalid) names that run: its
// application_name, its server process and client address, and since when
// it has been connected.
func (w *Warehouse) LockRun(ctx context.Context) (*RunLock, error) {
	host, _ := os.Hostname()
	name := fmt.Sprintf("sandstone run pid %d on %s", os.Getpid(), host)
	if len(name) > 63 {
		name = name[:63]
	}
	s := w.s
	var ok bool
	if _, err := w.conn.Exec(ctx, "SELECT pg_catalog.set_config('application_name', $1, false)", name); err != nil {
		return nil, errkind.Wrap(errkind.WarehouseUnreachable, fmt.Errorf("name the run's connection: %w", err))
	}
	if err := w.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", s.runLockKey()).Scan(&ok); err != nil {
		return nil, errkind.Wrap(errkind.WarehouseUnreachable, fmt.Errorf("take the run lock: %w", err))
	}
	if ok {
		return &RunLock{conn: w.conn, key: s.runLockKey()}, nil
	}
	holder := "a session whose details this role cannot see"
	var app, client string
	var pid int32
	var since time.Time
	err := w.conn.QueryRow(ctx, `SELECT coalesce(a.application_name, ''), a.pid,
			coalesce(host(a.client_addr), 'the local socket'), a.backend_start
		FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
		  AND l.classid = (($1::bigint >> 32) & 4294967295)::oid AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1
		LIMIT 1`, s.runLockKey()).Scan(&app, &pid, &client, &since)
	switch {
	case err == nil:
		holder = fmt.Sprintf("%q (server process %d, from %s, connected since %s UTC)", app, pid, client, since.UTC().Format("2006-01-02 15:04:05"))
	case !errors.Is(err, pgx.ErrNoRows):
		holder = "a session that could not be identified (" + err.Error() + ")"
	}
	return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf(
		"another sandstone run already runs against this warehouse (schema %s): %s; stop it, or give this one another --warehouse-schema and buckets",
		q(string(s)), holder))
}

// Release gives the run lock up, on its connection, which stays open: a
// run started the moment Release returns finds it free (a closed
// connection's server process lets its locks go only once it has ended,
// a little later).
func (l *RunLock) Release(ctx context.Context) error {
	if l == nil || l.conn == nil {
		return nil
	}
	_, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key)
	return err
}
