package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultConnectTimeout bounds connecting to the source or the warehouse
// (the TCP connection, TLS and authentication) when the URL sets no
// connect_timeout: a server that accepts the connection and never answers
// fails the stage instead of hanging it.
const DefaultConnectTimeout = 10 * time.Second

// ParsePG parses a PostgreSQL URL (or key=value connection string) into a
// pgx configuration whose ConnectTimeout is the URL's connect_timeout (or
// PGCONNECT_TIMEOUT's), else DefaultConnectTimeout; connect_timeout=0
// waits for ever, as in libpq. The error's text has no password.
func ParsePG(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, RedactError(err)
	}
	if cfg.ConnectTimeout == 0 && !strings.Contains(url, "connect_timeout") && os.Getenv("PGCONNECT_TIMEOUT") == "" {
		cfg.ConnectTimeout = DefaultConnectTimeout
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
