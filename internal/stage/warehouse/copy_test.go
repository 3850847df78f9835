package warehouse

import (
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestDirectCopyWritesExactValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A warehouse prepared by someone else, with keys and bigint ids: the
	// binary COPY must encode each value as the column's own type.
	pgtest.Exec(t, e.url, northcodersDDL)
	pgtest.Exec(t, e.url, `ALTER TABLE dim_staff ADD PRIMARY KEY (staff_id);
		ALTER TABLE fact_sales_order ALTER sales_order_id TYPE bigint,
			ADD UNIQUE (sales_order_id, last_updated_date, last_updated_time)`)
	b := world(1)
	// Two rows of one key in a batch for an empty dimension: the direct
	// COPY fails on the key and the staged path keeps the last row.
	b.staff = append(b.staff, star.DimStaff{StaffID: 1, FirstName: "Jeremie", LastName: "Franey",
		DepartmentName: "Sales", Location: "Leeds", EmailAddress: "new"})
	prices := []int64{0, 1, 10, 99, 100, 101, 10000, 123456, 1000000, 9999999999, -1234}
	b.sales = nil
	for i, p := range prices {
		s := sale(int32(i+1), "2024-01-02", "10:11:12.345", int32(i), p)
		s.SalesOrderID = int32(2_000_000_000 + i)
		b.sales = append(b.sales, s)
	}
	put(t, e.bucket, b)
	e.load(t)
	if got, want := joined(query(t, e.url, "SELECT string_agg(unit_price::text, ',' ORDER BY units_sold) FROM fact_sales_order")),
		"0.00,0.01,0.10,0.99,1.00,1.01,100.00,1234.56,10000.00,99999999.99,-12.34"; got != want {
		t.Errorf("unit prices %s, want %s", got, want)
	}
	if got, want := joined(query(t, e.url, "SELECT min(sales_order_id)::text, max(sales_order_id)::text FROM fact_sales_order")),
		"2000000000|2000000010"; got != want {
		t.Errorf("bigint ids %s, want %s", got, want)
	}
	if got := joined(query(t, e.url, "SELECT staff_id::text, email_address FROM dim_staff ORDER BY 1")); got != "1|new\n2|deron.beier@terrifictotes.com" {
		t.Errorf("dim_staff:\n%s", got)
	}
}
