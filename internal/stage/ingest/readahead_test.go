package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// changeAcrossTables writes, after a first run, new versions to four
// tables that land in turn, all sharing one last_updated: 5 designs, 6
// sales orders (one an update), 4 transactions and their payments.
func changeAcrossTables(f *fixture) {
	f.exec(`INSERT INTO design SELECT 10 + g, now(), 'D' || g, '/d', 'd', now() FROM generate_series(1, 5) g;
	INSERT INTO sales_order SELECT 10 + g, now(), now(), 1, 1, 1, g, 1.00, 1, '2024-02-02', '2024-02-03', 1
		FROM generate_series(1, 5) g;
	UPDATE sales_order SET units_sold = 7, last_updated = now() WHERE sales_order_id = 1;
	INSERT INTO transaction SELECT 10 + g, 'SALE', 10 + g, NULL, now(), now() FROM generate_series(1, 4) g;
	INSERT INTO payment SELECT 10 + g, now(), now(), 10 + g, 1, 5.00, 1, 1, false, '2024-02-03', 1, 2
		FROM generate_series(1, 4) g`)
}

// runDebug runs ingest with a bound, logging at debug level.
func runDebug(t *testing.T, f *fixture, bound int64) Result {
	t.Helper()
	opts := f.opts()
	opts.MaxBatchRows = bound
	opts.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	return res
}

func TestReadAheadLandsEachVersionOnceInOrder(t *testing.T) {
	t.Parallel()
	for _, bound := range []int64{0, 30, 9, 3} {
		t.Run(fmt.Sprintf("bound %d", bound), func(t *testing.T) {
			f := newFixture(t)
			smallSource(f)
			f.run()
			first := batchVersions(t, f.bucket, 1)
			changeAcrossTables(f)
			// pending are, per table, the versions still to land.
			pending := map[string]map[version]bool{}
			for table, source := range sourceVersions(t, f.url) {
				pending[table] = source
				for _, v := range first[table] {
					delete(source, v)
				}
			}
			for run := 1; ; run++ {
				if run > 20 {
					t.Fatal("the changes never drained")
				}
				res := runDebug(t, f, bound)
				if bound > 0 && res.Total() > bound {
					t.Fatalf("run %d landed %d rows, more than the bound %d", run, res.Total(), bound)
				}
				if res.Sequence == 0 {
					break
				}
				if run == 1 && (bound == 0 || bound >= 19) && (res.More || res.Total() != 19) {
					t.Fatalf("the batch landed %v (more: %v), want all 19 changes", res.Rows, res.More)
				}
				for table, vs := range batchVersions(t, f.bucket, res.Sequence) {
					for _, v := range vs {
						if !pending[table][v] {
							t.Errorf("run %d landed %s version %v, which was not pending", run, table, v)
						}
						delete(pending[table], v)
					}
				}
				// A table lands only once every table before it has landed
				// all it had.
				for i, table := range totesys.Tables {
					if res.Rows[table.Name] == 0 {
						continue
					}
					for _, before := range totesys.Tables[:i] {
						if n := len(pending[before.Name]); n > 0 {
							t.Errorf("run %d landed %s with %d %s versions still pending", run, table.Name, n, before.Name)
						}
					}
				}
				if res.More == (sumPending(pending) == 0) {
					t.Errorf("run %d says more: %v, with %d versions pending", run, res.More, sumPending(pending))
				}
			}
			if n := sumPending(pending); n != 0 {
				t.Errorf("%d versions never landed: %v", n, pending)
			}
			if !strings.Contains(f.logs.String(), `"connections":3`) {
				t.Errorf("the caught-up run did not read over 3 connections:\n%s", f.logs)
			}
		})
	}
}

func sumPending(p map[string]map[version]bool) (n int) {
	for _, vs := range p {
		n += len(vs)
	}
	return n
}

func TestReadAheadSharesTheSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	smallSource(f)
	tx, _, closeSource, err := OpenSnapshot(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSource()
	var name string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	f.exec(`INSERT INTO staff VALUES (2,'Bo','Ray',1,'b@x', now(), now())`) // committed after the snapshot
	other, closeOther, err := openTx(ctx, f.url, name)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOther()
	for who, q := range map[string]pgx.Tx{"the exporter": tx, "the importer": other} {
		var n int
		if err := q.QueryRow(ctx, "SELECT count(*) FROM staff").Scan(&n); err != nil || n != 1 {
			t.Errorf("%s sees %d staff (%v), want the 1 of the snapshot", who, n, err)
		}
	}
	// A name that is not an exported snapshot's is refused, as a literal.
	for _, bad := range []string{"00000003-0000001B-1", "x'; DROP TABLE staff; --"} {
		if _, _, err := openTx(ctx, f.url, bad); err == nil || !strings.Contains(err.Error(), "snapshot") {
			t.Errorf("snapshot %q: %v, want it refused", bad, err)
		}
	}
	if n := pgtest.QueryInt(t, f.url, "SELECT count(*) FROM staff"); n != 2 {
		t.Errorf("staff holds %d rows, want 2", n)
	}
}

func TestReadAheadWithOneConnectionAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.run()
	changeAcrossTables(f)
	// A role that may hold one connection at a time, as a source's DBA may
	// allow: the other connections are refused, and ingest lands it all
	// over the one it has.
	role := "sandstone_one_connection"
	f.exec(`DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + role + `') THEN
			CREATE ROLE ` + role + ` LOGIN CONNECTION LIMIT 1;
		END IF; END $$;
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO ` + role)
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	f.url = u.String()
	res := runDebug(t, f, 0)
	if want := (map[string]int64{"design": 5, "sales_order": 6, "transaction": 4, "payment": 4}); fmt.Sprint(res.Rows) != fmt.Sprint(want) {
		t.Errorf("landed %v, want %v", res.Rows, want)
	}
	if !strings.Contains(f.logs.String(), "fewer connections") || !strings.Contains(f.logs.String(), `"connections":1`) {
		t.Errorf("no word of the refused connections:\n%s", f.logs)
	}
}

func TestReadsInTurnWhereATableIsReadWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.scanAdvice = 1 // every table big enough to need its index
	smallSource(f)
	f.exec(`CREATE INDEX ON address (last_updated); CREATE INDEX ON design (last_updated); ANALYZE`)
	f.run()
	changeAcrossTables(f)
	// The source scans a table without the index in parallel already: one
	// connection.
	if res := runDebug(t, f, 0); res.Total() != 19 {
		t.Fatalf("landed %v, want the 19 changes", res.Rows)
	}
	if strings.Contains(f.logs.String(), "read the tables ahead") {
		t.Errorf("read ahead with tables read whole:\n%s", f.logs)
	}
	// Indexed all, the next caught-up run reads ahead.
	for _, table := range totesys.Tables {
		f.exec("CREATE INDEX ON " + pgx.Identifier{table.Name}.Sanitize() + " (last_updated)")
	}
	f.exec(`ANALYZE; UPDATE staff SET last_updated = now()`)
	if res := runDebug(t, f, 0); res.Total() != 1 {
		t.Fatalf("landed %v, want the one staff change", res.Rows)
	}
	if !strings.Contains(f.logs.String(), `"connections":3`) {
		t.Errorf("did not read ahead with every table indexed:\n%s", f.logs)
	}
}
