package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/status"
)

// TestReplayHistoryInSlices replays the real snapshot into an empty source
// in created_at slices, as it happened (monthly, then daily near the end so
// that payments show first unpaid, then paid), with a whole cycle after
// each slice. The fact tables then hold every version that any slice
// showed, once, and the dimensions equal the final source.
func TestReplayHistoryInSlices(t *testing.T) {
	cfg := install(t)
	src := cfg.SourceURL
	r := newReplay(t, src, "INCLUDING DEFAULTS")
	for _, to := range replayBounds(1, 1) {
		r.slice(to)
		r.show()
		cycle(t, cfg)
	}
	if n := pgtest.QueryInt(t, src, "SELECT count(*) FROM history.shown WHERE tbl = 'payment'"); n <= 15836 {
		t.Fatalf("the replay showed %d payment versions: no payment was seen unpaid, then paid", n)
	}

	facts := []struct{ table, source, warehouse string }{
		{"payment", "payment", "SELECT payment_id, (last_updated_date + last_updated)::text FROM fact_payment"},
		{"sales_order", "sales_order", "SELECT sales_order_id, (last_updated_date + last_updated_time)::text FROM fact_sales_order"},
		{"purchase_order", "purchase_order", "SELECT purchase_order_id, (last_updated_date + last_updated_time)::text FROM fact_purchase_order"},
	}
	for _, f := range facts {
		want := versions(t, src, "SELECT id, lu::text FROM history.shown WHERE tbl = $1", f.source)
		got := versions(t, cfg.WarehouseURL, f.warehouse)
		if len(got) != len(want) {
			t.Errorf("fact %s: %d versions in the warehouse, %d shown by the source", f.table, len(got), len(want))
		}
		for v, n := range got {
			if n != 1 {
				t.Errorf("fact %s: version %s in the warehouse %d times", f.table, v, n)
			}
		}
		missing := 0
		for v := range want {
			if got[v] == 0 {
				if missing++; missing <= 3 {
					t.Errorf("fact %s: version %s shown by the source never reached the warehouse", f.table, v)
				}
			}
		}
	}

	sameDimensions(t, src, cfg.WarehouseURL)

	// The stamps run years behind the source's clock: status says so.
	var text strings.Builder
	_ = status.Gather(t.Context(), cfg, filepath.Join(t.TempDir(), "none.json")).WriteText(&text)
	if !strings.Contains(text.String(), "clock: sales_order.last_updated runs") {
		t.Errorf("status does not report the skew:\n%s", text.String())
	}
}

// replay is the real snapshot, moved to schema history, replayed into the
// source (which starts empty) in created_at slices, as it happened.
type replay struct {
	t    *testing.T
	conn *pgx.Conn
	from time.Time // where the next slice starts
}

// newReplay loads the snapshot into src and moves it to schema history; the
// source's tables are made empty alike (CREATE TABLE ... LIKE, with like's
// options).
func newReplay(t *testing.T, src, like string) *replay {
	t.Helper()
	pgtest.LoadSnapshot(t, src)
	var move strings.Builder
	move.WriteString("CREATE SCHEMA history;")
	for _, tbl := range totesys.Tables {
		id := pgx.Identifier{tbl.Name}.Sanitize()
		fmt.Fprintf(&move, "ALTER TABLE public.%s SET SCHEMA history; CREATE TABLE public.%s (LIKE history.%s %s);", id, id, id, like)
	}
	move.WriteString("CREATE TABLE history.shown (tbl text, id int, lu timestamp, PRIMARY KEY (tbl, id, lu));")
	pgtest.Exec(t, src, move.String())
	conn, err := pgx.Connect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return &replay{t: t, conn: conn, from: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// replayBounds are the slices' ends: every months months up to November
// 2024, then every days days to the 16th, so that payments show first
// unpaid, then paid.
func replayBounds(months, days int) []time.Time {
	var bounds []time.Time
	for m := time.Date(2022, 12, 1, 0, 0, 0, 0, time.UTC); m.Before(time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC)); m = m.AddDate(0, months, 0) {
		bounds = append(bounds, m)
	}
	for d := time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC); !d.After(time.Date(2024, 11, 16, 0, 0, 0, 0, time.UTC)); d = d.AddDate(0, 0, days) {
		bounds = append(bounds, d)
	}
	return bounds
}

// exec runs sql on the source, in a transaction of its own.
func (r *replay) exec(sql string, args ...any) {
	r.t.Helper()
	if _, err := r.conn.Exec(r.t.Context(), sql, args...); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// slice inserts the rows created before to, and pays the payments paid
// before to (the payments the test changed itself, whose last_updated is
// no longer their created_at, excepted).
func (r *replay) slice(to time.Time) {
	r.t.Helper()
	for _, tbl := range totesys.Tables {
		if tbl.Name != "payment" {
			id := pgx.Identifier{tbl.Name}.Sanitize()
			r.exec("INSERT INTO public."+id+" SELECT * FROM history."+id+" WHERE created_at >= $1 AND created_at < $2", r.from, to)
		}
	}
	// Payments paid after the slice are still unpaid in it.
	r.exec(`INSERT INTO public.payment
		SELECT payment_id, created_at, CASE WHEN last_updated >= $2 THEN created_at ELSE last_updated END,
		       transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id,
		       paid AND last_updated < $2, payment_date, company_ac_number, counterparty_ac_number
		  FROM history.payment WHERE created_at >= $1 AND created_at < $2`, r.from, to)
	r.exec(`UPDATE public.payment p SET paid = h.paid, last_updated = h.last_updated
		  FROM history.payment h
		 WHERE p.payment_id = h.payment_id AND p.last_updated <> h.last_updated AND h.last_updated < $1
		   AND p.last_updated = p.created_at`, to)
	r.from = to
}

// show records the fact versions the source holds now: what a poll sees.
func (r *replay) show() {
	r.t.Helper()
	r.exec(`INSERT INTO history.shown
		SELECT 'payment', payment_id, last_updated FROM public.payment
		UNION ALL SELECT 'sales_order', sales_order_id, last_updated FROM public.sales_order
		UNION ALL SELECT 'purchase_order', purchase_order_id, last_updated FROM public.purchase_order
		ON CONFLICT DO NOTHING`)
}

// versions counts each (id, last_updated) that the query yields.
func versions(t *testing.T, url, sql string, args ...any) map[string]int {
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
	out := map[string]int{}
	for rows.Next() {
		var id int32
		var lu string
		if err := rows.Scan(&id, &lu); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%d@%s", id, lu)]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameDimensions fails the test unless each dimension of the warehouse
// equals its source table at src, but those of the tables named in skip.
func sameDimensions(t *testing.T, src, warehouse string, skip ...string) {
	t.Helper()
	dims := []struct{ name, source, warehouse string }{
		{"design", "SELECT string_agg(concat_ws('|', design_id, design_name, file_location, file_name), ',' ORDER BY design_id) FROM design",
			"SELECT string_agg(concat_ws('|', design_id, design_name, file_location, file_name), ',' ORDER BY design_id) FROM dim_design"},
		{"address", "SELECT string_agg(concat_ws('|', address_id, address_line_1, address_line_2, district, city, postal_code, country, phone), ',' ORDER BY address_id) FROM address",
			"SELECT string_agg(concat_ws('|', location_id, address_line_1, address_line_2, district, city, postal_code, country, phone), ',' ORDER BY location_id) FROM dim_location"},
		{"transaction", "SELECT string_agg(concat_ws('|', transaction_id, transaction_type, sales_order_id, purchase_order_id), ',' ORDER BY transaction_id) FROM transaction",
			"SELECT string_agg(concat_ws('|', transaction_id, transaction_type, sales_order_id, purchase_order_id), ',' ORDER BY transaction_id) FROM dim_transaction"},
		{"staff", "SELECT string_agg(concat_ws('|', staff_id, first_name, last_name, email_address), ',' ORDER BY staff_id) FROM staff",
			"SELECT string_agg(concat_ws('|', staff_id, first_name, last_name, email_address), ',' ORDER BY staff_id) FROM dim_staff"},
		{"counterparty", "SELECT string_agg(concat_ws('|', counterparty_id, counterparty_legal_name), ',' ORDER BY counterparty_id) FROM counterparty",
			"SELECT string_agg(concat_ws('|', counterparty_id, counterparty_legal_name), ',' ORDER BY counterparty_id) FROM dim_counterparty"},
		{"currency", "SELECT string_agg(concat_ws('|', currency_id, currency_code), ',' ORDER BY currency_id) FROM currency",
			"SELECT string_agg(concat_ws('|', currency_id, currency_code), ',' ORDER BY currency_id) FROM dim_currency"},
		{"payment_type", "SELECT string_agg(concat_ws('|', payment_type_id, payment_type_name), ',' ORDER BY payment_type_id) FROM payment_type",
			"SELECT string_agg(concat_ws('|', payment_type_id, payment_type_name), ',' ORDER BY payment_type_id) FROM dim_payment_type"},
	}
	for _, d := range dims {
		if slices.Contains(skip, d.name) {
			continue
		}
		var want, got string
		pgtest.Scan(t, src, []any{&want}, d.source)
		pgtest.Scan(t, warehouse, []any{&got}, d.warehouse)
		if got != want {
			t.Errorf("dimension of %s differs from the final source", d.name)
		}
	}
}
