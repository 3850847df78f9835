package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// DefaultConnectTimeout bounds connecting to the source or the warehouse
// (the TCP connection, TLS and authentication) when the URL sets no
// connect_timeout: a server that accepts the connection and never answers
// fails the stage instead of hanging it.
const DefaultConnectTimeout = 10 * time.Second

// ParsePG parses a PostgreSQL URL (or key=value connection string) into a
// pgx configuration whose ConnectTimeout is the URL's connect_timeout (or
// PGCONNECT_TIMEOUT's), else DefaultConnectTimeout; connect_timeout=0
// waits for ever, as in libpq; whose TLS verifies the server as
// verifyServer says (verify-full by default for an RDS host). The error's
// text has no password.
func ParsePG(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, RedactError(err)
	}
	if cfg.ConnectTimeout == 0 && !strings.Contains(url, "connect_timeout") && os.Getenv("PGCONNECT_TIMEOUT") == "" {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if err := verifyServer(cfg, url); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ConnectHint is the advice appended to a connection error: the timeout in
// force when it ran out.
func ConnectHint(cfg *pgx.ConnConfig, err error) error {
	if cfg == nil || cfg.ConnectTimeout == 0 || !strings.Contains(err.Error(), "timeout") {
		return err
	}
	return fmt.Errorf("%w (no answer within the connect timeout of %s; set connect_timeout=<seconds> in the URL to change it)",
		err, cfg.ConnectTimeout)
}

// Database is one of the two databases Sandstone connects to.
type Database int

// The two databases.
const (
	Source Database = iota
	Warehouse
)

// connectKinds are db's name, the settings that hold its URL, and its
// kinds of connection failure: unreachable, login refused, no such database.
func connectKinds(db Database) (name, setting string, unreachable, refused, missing errkind.Kind) {
	if db == Warehouse {
		return "warehouse", "--warehouse or " + EnvWarehouse,
			errkind.WarehouseUnreachable, errkind.WarehouseAuthFailed, errkind.WarehouseDatabaseMissing
	}
	return "source", "--source or " + EnvSource,
		errkind.SourceUnreachable, errkind.SourceAuthFailed, errkind.SourceDatabaseMissing
}

// ConnectFailure is err, a failed connection to db at url (configured by
// cfg), said once as "connect to <db> <url>: <cause>", without the
// password, and marked with its kind: the login refused (SQLSTATE 28P01,
// 28000, or 42501 for a role without CONNECT) and the database missing
// (3D000) are permanent (errkind.Permanent: no retry), said with the
// server's own words (the URL names the user, host and database) and what
// to check;
// anything else is unreachable, with ConnectHint's advice.
func ConnectFailure(db Database, url string, cfg *pgx.ConnConfig, err error) error {
	name, setting, unreachable, refused, missing := connectKinds(db)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "42501":
			return errkind.Wrap(refused, RedactError(fmt.Errorf("connect to %s %s: %w (the server refused the login: check the user and password of the URL in %s)",
				name, url, pgErr, setting)))
		case "3D000":
			return errkind.Wrap(missing, RedactError(fmt.Errorf("connect to %s %s: %w (no such database: check the database name of the URL in %s, or create it)",
				name, url, pgErr, setting)))
		}
	}
	return errkind.Wrap(unreachable, RedactError(fmt.Errorf("connect to %s %s: %w", name, url, ConnectHint(cfg, err))))
}
