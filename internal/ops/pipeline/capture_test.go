package pipeline

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// installWAL is install read by log-based capture; the slot is dropped
// when the test ends.
func installWAL(t *testing.T) config.Config {
	cfg := install(t)
	cfg.Capture = config.CaptureWAL
	t.Cleanup(func() { pgtest.DropSlot(t, cfg.SourceURL, config.DefaultSlot(cfg.SourceURL)) })
	return cfg
}

// recordVersions has a trigger record every row version written to the
// fact sources, in commit order (the test writes on one connection), into
// history.versions.
func recordVersions(t *testing.T, src string) {
	t.Helper()
	sql := `CREATE TABLE history.versions (seq bigserial PRIMARY KEY, tbl text NOT NULL, id int NOT NULL,
			lu timestamp NOT NULL, txid bigint NOT NULL DEFAULT txid_current(), v jsonb NOT NULL);
		CREATE FUNCTION history.record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO history.versions (tbl, id, lu, v)
			VALUES (TG_TABLE_NAME, (to_jsonb(NEW) ->> TG_ARGV[0])::int, NEW.last_updated, to_jsonb(NEW));
			RETURN NULL;
		END $$;`
	for _, tbl := range []string{"sales_order", "purchase_order", "payment"} {
		sql += fmt.Sprintf(`CREATE TRIGGER record AFTER INSERT OR UPDATE ON public.%s FOR EACH ROW EXECUTE FUNCTION history.record('%s_id');`, tbl, tbl)
	}
	pgtest.Exec(t, src, sql)
}

// keyed maps each row's "id@last_updated" (the query's first two columns)
// to its third column; a version found twice fails the test.
func keyed(t *testing.T, url, sql string, args ...any) map[string]string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(t.Context()) }()
	rows, err := conn.Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id int32
		var lu, v string
		if err := rows.Scan(&id, &lu, &v); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%d@%s", id, lu)
		if _, dup := out[k]; dup {
			t.Errorf("version %s twice", k)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ids runs a query of ids on the replay's source.
func (r *replay) ids(sql string, args ...any) []int32 {
	r.t.Helper()
	return collectIDs(r.t, r.conn, sql, args...)
}

// idsAt runs a query of ids on the database at url.
func idsAt(t *testing.T, url, sql string, args ...any) []int32 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(t.Context()) }()
	return collectIDs(t, conn, sql, args...)
}

// collectIDs runs a query of ids on conn.
func collectIDs(t *testing.T, conn *pgx.Conn, sql string, args ...any) []int32 {
	t.Helper()
	rows, err := conn.Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplayHistoryInWALMode replays the real snapshot as
// TestReplayHistoryInSlices does, read by log-based capture, with what the
// poll cannot see between the cycles: orders updated three times, updates
// that keep last_updated (corrections), payments updated twice, sales
// orders deleted with their cascade (the transaction's sales_order_id set
// NULL, keeping last_updated), and an order deleted and inserted again.
// Every version a trigger recorded is then one fact row, holding the
// version's last values; each correction of a row the warehouse held is
// in the ledger once; the dimensions equal the final source; the
// deletions hold the ids deleted and not inserted again.
// TestReplayHistoryInWALMode replays the real history with the wal, in
// cycles and following (one replication connection for the whole
// history): every version, correction, delete and revival reaches the
// warehouse once.
func TestReplayHistoryInWALMode(t *testing.T) {
	t.Run("cycles", func(t *testing.T) { replayInWALMode(t, func(cfg config.Config) { cycle(t, cfg) }) })
	t.Run("following", func(t *testing.T) {
		var p *Pipeline
		replayInWALMode(t, func(cfg config.Config) {
			if p == nil {
				p = open(t, cfg)
				p.FollowWait = time.Second // what committed is flushed within it
			}
			followed(t, p)
		})
	})
}

// followed lands what committed with p's following ingest, until a run
// lands nothing, then transforms and loads it.
func followed(t *testing.T, p *Pipeline) {
	t.Helper()
	r := &Runner{Stages: p.FollowStages()}
	for {
		rep, err := r.Run(t.Context(), r.Stages[0])
		if err != nil {
			t.Fatalf("follow: %v", err)
		}
		if len(rep.Batches) == 0 {
			break
		}
	}
	for _, s := range r.Stages[1:] {
		if _, err := r.Run(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
	}
}

func replayInWALMode(t *testing.T, step func(config.Config)) {
	cfg := installWAL(t)
	src := cfg.SourceURL
	r := newReplay(t, src, "INCLUDING ALL") // primary keys: the replica identity of updates and deletes
	recordVersions(t, src)
	deleted := map[int32]bool{} // sales orders deleted (true) or inserted again (false)
	corrections := map[int32]int{}
	var revived int32
	held := r.from // rows created before it are in the warehouse
	for i, to := range replayBounds(3, 5) {
		r.slice(to)
		if i > 0 {
			so := r.ids(`SELECT sales_order_id FROM sales_order WHERE created_at < $1 ORDER BY sales_order_id OFFSET $2 LIMIT 8`, held, 10*i)
			pay := r.ids(`SELECT payment_id FROM payment WHERE created_at < $1 AND paid ORDER BY payment_id OFFSET $2 LIMIT 2`, held, 10*i)
			if len(so) < 8 || len(pay) < 2 {
				t.Fatalf("slice %d: %d sales orders and %d payments to change", i, len(so), len(pay))
			}
			for k := range 3 {
				r.exec(`UPDATE sales_order SET units_sold = units_sold + 1, last_updated = last_updated + interval '1 second'
					WHERE sales_order_id = ANY($1)`, so[:3])
				if k < 2 {
					r.exec(`UPDATE payment SET payment_amount = payment_amount + 1, last_updated = last_updated + interval '1 second'
						WHERE payment_id = ANY($1)`, pay)
				}
			}
			// A correction of a version the warehouse does not hold yet: no
			// ledger entry, the last values win.
			r.exec(`UPDATE sales_order SET units_sold = units_sold + 500 WHERE sales_order_id = $1`, so[0])
			// Corrections of versions the warehouse holds.
			r.exec(`UPDATE sales_order SET units_sold = units_sold + 1000 WHERE sales_order_id = ANY($1)`, so[3:6])
			for _, id := range so[3:6] {
				corrections[id]++
			}
			// A delete with its cascade, as ON DELETE SET NULL would do it.
			r.exec(fmt.Sprintf(`UPDATE transaction SET sales_order_id = NULL WHERE sales_order_id = %d;
				DELETE FROM sales_order WHERE sales_order_id = %d`, so[6], so[6]))
			deleted[so[6]] = true
		}
		switch i {
		case 2:
			revived = r.ids(`SELECT sales_order_id FROM sales_order WHERE created_at < $1 ORDER BY sales_order_id DESC LIMIT 1`, held)[0]
			r.exec(`DELETE FROM sales_order WHERE sales_order_id = $1`, revived)
			deleted[revived] = true
		case 4:
			r.exec(`INSERT INTO sales_order SELECT sales_order_id, created_at, last_updated + interval '1 minute', design_id, staff_id,
				counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id
				FROM history.sales_order WHERE sales_order_id = $1`, revived)
			deleted[revived] = false
		}
		r.show()
		step(cfg)
		held = to
	}

	// Every recorded version is one fact row, with the version's last values.
	facts := []struct{ table, value, warehouse string }{
		{"sales_order", "units_sold", "SELECT sales_order_id, (last_updated_date + last_updated_time)::text, units_sold::text FROM fact_sales_order"},
		{"payment", "paid", "SELECT payment_id, (last_updated_date + last_updated)::text, paid::text FROM fact_payment"},
		{"purchase_order", "item_quantity", "SELECT purchase_order_id, (last_updated_date + last_updated_time)::text, item_quantity::text FROM fact_purchase_order"},
	}
	for _, f := range facts {
		want := keyed(t, src, `SELECT DISTINCT ON (id, lu) id, lu::text, v ->> $2 FROM history.versions WHERE tbl = $1 ORDER BY id, lu, seq DESC`,
			f.table, f.value)
		values := keyed(t, cfg.WarehouseURL, f.warehouse)
		polled := pgtest.QueryInt(t, src, "SELECT count(*) FROM history.shown WHERE tbl = $1", f.table)
		if len(values) != len(want) {
			t.Errorf("fact %s: %d versions in the warehouse, %d recorded by the source", f.table, len(values), len(want))
		}
		if f.table != "purchase_order" && polled >= int64(len(want)) {
			t.Errorf("fact %s: the poll would have seen %d versions, capture %d: want fewer", f.table, polled, len(want))
		}
		t.Logf("fact %s: %d versions recorded, %d seen by the poll", f.table, len(want), polled)
		wrong := 0
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if g, ok := values[k]; !ok || g != want[k] {
				if wrong++; wrong <= 3 {
					t.Errorf("fact %s: version %s holds %s = %q, the source's last value is %q (present: %t)", f.table, k, f.value, g, want[k], ok)
				}
			}
		}
	}

	// Each correction of a held row is in the ledger once.
	got := map[int32]int{}
	for _, id := range idsAt(t, cfg.WarehouseURL, `SELECT source_id FROM sandstone_corrections WHERE fact_table = 'fact_sales_order'`) {
		got[id]++
	}
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM sandstone_corrections`); n != 3*int64(len(replayBounds(3, 5))-1) || !maps.Equal(got, corrections) {
		t.Errorf("the ledger holds %d corrections %v, want %v", n, got, corrections)
	}

	// The cascade's update of transaction.sales_order_id to NULL reaches
	// dim_transaction too.
	sameDimensions(t, src, cfg.WarehouseURL)

	var want []int32
	for id, del := range deleted {
		if del {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	gone := idsAt(t, cfg.WarehouseURL, `SELECT id FROM sandstone_deletions WHERE source_table = 'sales_order' ORDER BY id`)
	others := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM sandstone_deletions WHERE source_table <> 'sales_order'`)
	if !slices.Equal(gone, want) || others != 0 || deleted[revived] {
		t.Errorf("sandstone_deletions holds sales orders %v and %d others, want %v (%d inserted again)", gone, others, want, revived)
	}
}

// TestCaptureCrashAfterConfirmingBeforeTransform: ingest (wal) lands and
// confirms its batches, and the process ends before transform; transform
// and load, run later by another Runner of another Pipeline, make the
// warehouse exact: every version a fact row, the correction in place and
// in the ledger, the delete recorded.
func TestCaptureCrashAfterConfirmingBeforeTransform(t *testing.T) {
	cfg := installWAL(t)
	src := cfg.SourceURL
	pgtest.Exec(t, src, totesys.Schema)
	pgtest.Exec(t, src, pgtest.ReferenceRows)
	pgtest.Exec(t, src, `INSERT INTO sales_order SELECT g, now() - interval '1 hour', now() - interval '1 hour',1,1,1,g,1.00,1,'2024-01-02','2024-01-03',1
		FROM generate_series(1, 4) g`)
	ingestOnly := func() {
		t.Helper()
		r := &Runner{Stages: open(t, cfg).Stages()[:1]}
		if _, err := r.Cycle(context.Background()); err != nil {
			t.Fatalf("ingest: %v", err)
		}
	}
	ingestOnly()
	for range 3 {
		pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = units_sold + 10, last_updated = last_updated + interval '1 second' WHERE sales_order_id = 1`)
	}
	pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = 99 WHERE sales_order_id = 2`) // a correction
	pgtest.Exec(t, src, `DELETE FROM sales_order WHERE sales_order_id = 3`)
	ingestOnly()
	var confirmed, end string
	pgtest.Scan(t, src, []any{&confirmed, &end}, `SELECT confirmed_flush_lsn::text, pg_current_wal_insert_lsn()::text FROM pg_replication_slots WHERE slot_name = $1`,
		config.DefaultSlot(src))
	t.Logf("slot confirmed to %s (WAL at %s)", confirmed, end)

	r := &Runner{Stages: open(t, cfg).Stages()[1:]}
	if _, err := r.Cycle(context.Background()); err != nil {
		t.Fatalf("transform and load: %v", err)
	}
	got := keyed(t, cfg.WarehouseURL, `SELECT sales_order_id, (last_updated_date + last_updated_time)::text, units_sold::text FROM fact_sales_order`)
	if len(got) != 4+3 {
		t.Errorf("fact_sales_order holds %d versions, want 7: %v", len(got), got)
	}
	want := keyed(t, src, `SELECT sales_order_id, last_updated::text, units_sold::text FROM sales_order`)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("version %s holds units_sold %q, the source %q", k, got[k], v)
		}
	}
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM sandstone_corrections WHERE source_id = 2`); n != 1 {
		t.Errorf("%d corrections of order 2 in the ledger, want 1", n)
	}
	if ids := idsAt(t, cfg.WarehouseURL, `SELECT id FROM sandstone_deletions`); !slices.Equal(ids, []int32{3}) {
		t.Errorf("sandstone_deletions holds %v, want order 3", ids)
	}
}
