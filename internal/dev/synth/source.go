package synth

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// connect opens a connection to the source whose session runs in UTC, so
// that LOCALTIMESTAMP and CURRENT_TIMESTAMP stamp rows in UTC as totesys
// does.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := config.ParsePG(url)
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("source URL: %w", config.RedactError(err)))
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, config.ConnectFailure(config.Source, url, cfg, err)
	}
	return conn, nil
}

// enumTypes are the schema's enum types.
var enumTypes = []string{"PaymentTypeName", "TransactionType"}

// existing returns the totesys tables and types already in the source's
// current schema.
func existing(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	names := make([]string, 0, len(totesys.Tables)+len(enumTypes))
	for _, t := range totesys.Tables {
		names = append(names, t.Name)
	}
	names = append(names, enumTypes...)
	rows, err := conn.Query(ctx, `
		SELECT name FROM (
			SELECT 1 AS kind, c.relname AS name FROM pg_class c
			WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = ANY($1)
			UNION ALL
			SELECT 2, t.typname FROM pg_type t
			WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype <> 'c' AND t.typname = ANY($1)) x
		ORDER BY kind, name`, names)
	if err != nil {
		return nil, fmt.Errorf("look for totesys tables: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look for totesys tables: %w", err)
	}
	return found, nil
}

// requireSchema fails unless the source holds the totesys tables.
func requireSchema(ctx context.Context, conn *pgx.Conn) error {
	found, err := existing(ctx, conn)
	if err != nil {
		return err
	}
	var missing []string
	for _, t := range totesys.Tables {
		if !contains(found, t.Name) {
			missing = append(missing, t.Name)
		}
	}
	if len(missing) > 0 {
		return errkind.Wrap(errkind.SourceSchemaMismatch, fmt.Errorf(
			"the source has no totesys tables %s: create them with `sandstone seed` (or load a snapshot) first",
			strings.Join(missing, ", ")))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
