package warehouse

// Connections, schemas and quoting: how the handle reaches the database.

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// schema is the warehouse's PostgreSQL schema name.
type schema string

// ident is the quoted, qualified name of table in the schema.
func (s schema) ident(table string) string { return pgx.Identifier{string(s), table}.Sanitize() }

// q quotes one identifier.
func q(name string) string { return pgx.Identifier{name}.Sanitize() }

// lockKey is the advisory lock that serialises everything Sandstone writes
// to one warehouse schema: migrations and each batch's transaction.
func (s schema) lockKey() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("sandstone warehouse " + string(s)))
	return int64(h.Sum64()) // #nosec G115 -- any 64 bits make a lock key
}

// begin starts a transaction that holds the schema's lock until it ends,
// with a search_path that no table of the warehouse can shadow.
func begin(ctx context.Context, conn *pgx.Conn, s schema) (pgx.Tx, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO pg_catalog, pg_temp"); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey()); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("wait for the warehouse lock: %w", err)
	}
	return tx, nil
}

// querier is what the catalogue look-ups need: a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// schemaOf is the schema named name, the default one when it is empty.
func schemaOf(name string) schema {
	if name == "" {
		return schema(config.DefaultSchema)
	}
	return schema(name)
}

// connect opens a connection to the warehouse at url, named app (its
// application_name) unless the URL names it; its errors are
// config_invalid or config.ConnectFailure's kinds (warehouse_unreachable,
// warehouse_auth_failed, warehouse_database_missing), without the password.
func connect(ctx context.Context, url, app string) (*pgx.Conn, error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, config.RedactError(fmt.Errorf("warehouse URL %s: %w", url, err)))
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = app
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, config.ConnectFailure(config.Warehouse, url, cfg, err)
	}
	return conn, nil
}
