package warehouse

// The handle: one connection to one warehouse schema, through which every
// caller loads, counts, reads the ledger and takes the run lock.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Warehouse is an open connection to one warehouse schema. Like the
// connection, it serves one caller at a time.
type Warehouse struct {
	conn *pgx.Conn
	s    schema
	app  string
	set  settings
}

// settings are the load's tunables: the defaults in production, which
// tests change (through an Option of their own) to cover the other paths.
type settings struct {
	// now is the clock that the deadline is checked against.
	now func() time.Time
	// setBasedChecks turns the set-based foreign-key check on (see
	// refCheck).
	setBasedChecks bool
	// maxKeyValues bounds the distinct values collected of one column (see
	// valueSet): 2^18 take about 5 MB.
	maxKeyValues int
	// bulkCheckMinRows and bulkCheckRatio: smaller batches, and batches
	// under 1/bulkCheckRatio of the table, are checked row by row (see
	// dropKeysForBulk).
	bulkCheckMinRows, bulkCheckRatio int64
}

// defaultSettings are the settings of every Warehouse that Open opens.
func defaultSettings() settings {
	return settings{now: time.Now, setBasedChecks: true, maxKeyValues: 1 << 18,
		bulkCheckMinRows: 50_000, bulkCheckRatio: 20}
}

// Option changes how Open opens a warehouse.
type Option func(*Warehouse)

// App names the connection (its application_name, unless the URL names
// it): "sandstone" by default.
func App(name string) Option { return func(w *Warehouse) { w.app = name } }

// Open connects to the warehouse at url, to work in schema schemaName
// ("public" when empty). Its errors are config_invalid (no URL, a bad one,
// a schema name longer than PostgreSQL's 63 bytes) or
// warehouse_unreachable, without the password. Close it after use.
func Open(ctx context.Context, url, schemaName string, opts ...Option) (*Warehouse, error) {
	if url == "" {
		return nil, errkind.Wrap(errkind.ConfigInvalid, errors.New("no warehouse URL given"))
	}
	w := &Warehouse{s: schemaOf(schemaName), app: "sandstone", set: defaultSettings()}
	if len(w.s) > 63 {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("schema name %q is longer than PostgreSQL's 63 bytes", string(w.s)))
	}
	for _, o := range opts {
		o(w)
	}
	conn, err := connect(ctx, url, w.app)
	if err != nil {
		return nil, err
	}
	w.conn = conn
	return w, nil
}

// Close closes the connection.
func (w *Warehouse) Close(ctx context.Context) error {
	return w.conn.Close(ctx)
}
