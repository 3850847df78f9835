package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// asRole returns the test database's URL for logging in as role, created
// with LOGIN and nothing else. Roles are the server's, not the database's:
// a test running beside this one may be creating the same role.
func asRole(t *testing.T, dbURL, role string) string {
	t.Helper()
	pgtest.Exec(t, dbURL, fmt.Sprintf(`DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`, role))
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

func TestWarehouseRoleWithoutPrivileges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("may not create the schema", func(t *testing.T) {
		e := newEnv(t)
		pgtest.Exec(t, e.url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
		e.url = asRole(t, e.url, "sandstone_nobody")
		e.schema = "mart"
		put(t, e.bucket, world(1))
		_, err := e.loadWith(ctx, e.opts())
		if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), `create schema "mart"`) ||
			!strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("load: %v", err)
		}
	})
	t.Run("may not create tables", func(t *testing.T) {
		e := newEnv(t)
		pgtest.Exec(t, e.url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
		e.url = asRole(t, e.url, "sandstone_nobody")
		put(t, e.bucket, world(1))
		_, err := e.loadWith(ctx, e.opts())
		if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), migrationsTable) {
			t.Fatalf("load: %v", err)
		}
		// The status helpers report an empty warehouse, not an error.
		if c, err := opened(ctx, e.url, "", (*Warehouse).Counts); err != nil || len(c) != 0 {
			t.Fatalf("counts: %v %v", c, err)
		}
	})
	t.Run("may only write rows", func(t *testing.T) {
		e := newEnv(t)
		e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1 // a big batch, which the owner would check in bulk
		owner := e.url
		e.load(t) // the owner migrates
		e.url = asRole(t, owner, "sandstone_writer")
		pgtest.Exec(t, owner, `GRANT USAGE ON SCHEMA public TO sandstone_writer;
			GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO sandstone_writer;
			GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO sandstone_writer`)
		put(t, e.bucket, world(1))
		res := e.load(t)
		if len(res.Batches) != 1 || res.Batches[0].Rows["fact_payment"] != 1 {
			t.Fatalf("%+v", res)
		}
		if len(res.Vacuumed) != 0 { // only an owner may vacuum
			t.Errorf("vacuumed tables it does not own: %v", res.Vacuumed)
		}
	})
	t.Run("may not write a fact table", func(t *testing.T) {
		e := newEnv(t)
		owner := e.url
		put(t, e.bucket, world(1))
		e.load(t) // as the owner
		put(t, e.bucket, batch{seq: 2,
			staff: []star.DimStaff{{StaffID: 1, FirstName: "Changed", LastName: "F", DepartmentName: "D", Location: "L", EmailAddress: "E"}},
			sales: []star.FactSalesOrder{sale(1, "2024-01-05", "08:00:00.000", 1, 1)}})
		e.url = asRole(t, owner, "sandstone_loader")
		pgtest.Exec(t, owner, `GRANT USAGE ON SCHEMA public TO sandstone_loader;
			GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO sandstone_loader;
			REVOKE INSERT ON fact_sales_order FROM sandstone_loader`)
		_, err := e.loadWith(ctx, e.opts())
		if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), "fact_sales_order") ||
			!strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("load: %v", err)
		}
		if got := joined(query(t, owner, "SELECT first_name FROM dim_staff WHERE staff_id = 1")); got != "Jeremie" {
			t.Fatalf("the failed batch changed dim_staff: %s", got)
		}
		// A role that may not read the warehouse gets errors from the
		// status helpers, not wrong answers.
		pgtest.Exec(t, owner, "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM sandstone_loader")
		if _, err := opened(ctx, e.url, "", (*Warehouse).Counts); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("counts: %v", err)
		}
		if _, err := opened(ctx, e.url, "", (*Warehouse).LoadedSeq); err == nil {
			t.Error("loaded seq: no error")
		}
		if _, err := opened(ctx, e.url, "", func(w *Warehouse, ctx context.Context) ([]LedgerEntry, error) { return w.Freshness(ctx, 5) }); err == nil {
			t.Error("freshness: no error")
		}
	})
}

func TestRowsPostgreSQLRejectsFailTheBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	// A text with a NUL byte, which PostgreSQL cannot store, far into a big
	// object: COPY fails while the reader still has rows to give.
	const n = 30_000
	m := world(2)
	m.designs = nil
	for i := range n {
		m.designs = append(m.designs, star.DimDesign{DesignID: int32(i + 1), DesignName: "d", FileLocation: "/", FileName: "f"})
	}
	m.designs[n/3].DesignName = "bad\x00name"
	put(t, e.bucket, m)
	res, err := e.loadWith(context.Background(), e.opts())
	if errkind.Of(err) != errkind.LoadFailed || !strings.Contains(err.Error(), "dim_design") ||
		!strings.Contains(err.Error(), "000000000002") {
		t.Fatalf("load: %v", err)
	}
	if len(res.Batches) != 1 {
		t.Fatalf("%+v", res)
	}
	if c := e.counts(t); c["dim_design"] != 2 {
		t.Fatalf("dim_design has %d rows: the failed batch left some", c["dim_design"])
	}
}

func TestCancelledMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bucket := e.bucket
	putSynthetic(t, bucket, 1, synthetic{sales: 100_000})
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel when the first big table starts to load.
	log := &cancelOn{cancel: cancel, msg: "table loaded"}
	opts := e.opts()
	opts.Logger = log.logger()
	_, err := e.loadWith(ctx, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("load: %v", err)
	}
	if seq, err := opened(context.Background(), e.url, "", (*Warehouse).LoadedSeq); err != nil || seq != 0 {
		t.Fatalf("loaded seq %d, %v", seq, err)
	}
	if c := e.counts(t); c["dim_date"] != 0 || c["fact_sales_order"] != 0 {
		t.Fatalf("a cancelled batch left rows: %v", c)
	}
}

func TestBindTablesRefusesAMismatch(t *testing.T) {
	t.Parallel()
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	fresh := func() []*table {
		var out []*table
		for _, t := range tables {
			c := *t
			c.feed = feedOf[star.DimDate]()
			if tt, ok := tableByName(t.name); ok {
				c.feed = tt.feed
			}
			out = append(out, &c)
		}
		return out
	}
	mustPanic("a table short", func() { bindTables(fresh()[1:]) })
	mustPanic("a table renamed", func() { ts := fresh(); ts[0].name = "dim_day"; bindTables(ts) })
	mustPanic("a fact as dimension", func() { ts := fresh(); ts[8].role = dimension; bindTables(ts) })
	mustPanic("a key column missing", func() { ts := fresh(); ts[1].cols = ts[1].cols[1:]; bindTables(ts) })
	mustPanic("a column without a field", func() {
		ts := fresh()
		ts[1].cols = append(append([]column{}, ts[1].cols...), text("nickname"))
		bindTables(ts)
	})
}

// cancelOn is a log handler that cancels a context at the first record
// with message msg: a way to stop a load at a known point.
type cancelOn struct {
	cancel context.CancelFunc
	msg    string
}

func (c *cancelOn) logger() *slog.Logger { return slog.New(c) }

func (c *cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (c *cancelOn) Handle(_ context.Context, r slog.Record) error {
	if r.Message == c.msg {
		c.cancel()
	}
	return nil
}
func (c *cancelOn) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *cancelOn) WithGroup(string) slog.Handler      { return c }
