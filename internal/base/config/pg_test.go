package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// TestConnectFailure: the server's SQLSTATE picks the kind, the same on
// both sides; the message names the URL once, without its password, and
// what to check.
func TestConnectFailure(t *testing.T) {
	const url = "postgres://u:s3cret@h:5432/d"
	for _, c := range []struct {
		db   Database
		code string
		kind errkind.Kind
		want string
	}{
		{Source, "28P01", errkind.SourceAuthFailed, "check the user and password of the URL in --source or SANDSTONE_SOURCE_URL"},
		{Source, "28000", errkind.SourceAuthFailed, "refused the login"},
		{Source, "3D000", errkind.SourceDatabaseMissing, "check the database name of the URL in --source"},
		{Source, "57P03", errkind.SourceUnreachable, "the database system is starting up"},
		{Warehouse, "28P01", errkind.WarehouseAuthFailed, "--warehouse or SANDSTONE_WAREHOUSE_URL"},
		{Warehouse, "3D000", errkind.WarehouseDatabaseMissing, "no such database"},
		{Warehouse, "", errkind.WarehouseUnreachable, "connection refused"},
	} {
		cause := errors.New("dial tcp: connection refused")
		if c.code != "" {
			cause = fmt.Errorf("failed to connect to `user=u database=d`: %w",
				&pgconn.PgError{Severity: "FATAL", Code: c.code, Message: "the database system is starting up"})
		}
		err := ConnectFailure(c.db, url, nil, cause)
		msg := err.Error()
		if errkind.Of(err) != c.kind || !strings.Contains(msg, c.want) || strings.Contains(msg, "s3cret") ||
			strings.Count(msg, "connect to source")+strings.Count(msg, "connect to warehouse") != 1 || !strings.HasPrefix(msg, "connect to ") {
			t.Errorf("%v %q: kind %s, message %q", c.db, c.code, errkind.Of(err), msg)
		}
		if errkind.Permanent(err) != (c.kind != errkind.SourceUnreachable && c.kind != errkind.WarehouseUnreachable) {
			t.Errorf("%v %q: Permanent is %v", c.db, c.code, errkind.Permanent(err))
		}
	}
}
