package transform

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// TestDriftThroughIngest proves the whole path: a real totesys source whose
// columns were altered (numeric(12,4), bigint, a NOT NULL dropped, plain
// numeric), landed by the real ingest and transformed. What converts
// exactly flows; what does not is rejected with its reason, and the rest
// of the batch flows on.
func TestDriftThroughIngest(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, totesys.Schema)
	pgtest.Exec(t, url, pgtest.ReferenceRows)
	pgtest.Exec(t, url, `
	ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(12,4);
	ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint;
	ALTER TABLE address ALTER COLUMN address_line_1 DROP NOT NULL;
	ALTER TABLE payment ALTER COLUMN payment_amount TYPE numeric;
	INSERT INTO address VALUES (2,NULL,NULL,NULL,'York','YO1','UK','0190', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO sales_order VALUES
	  (1, now() - interval '1 hour', now() - interval '1 hour',1,1,1,7,3.5000,1,'2024-01-02','2024-01-03',1),
	  (2, now() - interval '1 hour', now() - interval '1 hour',1,1,1,8,3.5012,1,'2024-01-02','2024-01-03',1),
	  (3, now() - interval '1 hour', now() - interval '1 hour',1,1,1,4294967306,3.94,1,'2024-01-02','2024-01-03',1);
	INSERT INTO transaction VALUES (1,'SALE',1,NULL, now() - interval '1 hour', now() - interval '1 hour'),
	  (2,'SALE',2,NULL, now() - interval '1 hour', now() - interval '1 hour');
	INSERT INTO payment VALUES
	  (1, now() - interval '1 hour', now() - interval '1 hour',1,1,12.50,1,1,false,'2024-01-03',1,2),
	  (2, now() - interval '1 hour', now() - interval '1 hour',2,1,12.505,1,1,false,'2024-01-03',1,2);`)

	ing, proc := buckets(t)
	ctx := context.Background()
	if _, err := ingest.Run(ctx, ingest.Options{SourceURL: url, Bucket: ing, Lookback: 5 * time.Minute,
		Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	res := run(t, ing, proc)

	facts := sortBy(rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order"), func(f star.FactSalesOrder) int32 { return f.SalesOrderID })
	if len(facts) != 1 || facts[0].SalesOrderID != 1 || facts[0].UnitPrice != 350 || facts[0].UnitsSold != 7 {
		t.Errorf("fact_sales_order %+v, want order 1 only, 350 cents, 7 units", facts)
	}
	pays := rowsOf[star.FactPayment](t, proc, 1, "fact_payment")
	if len(pays) != 1 || pays[0].PaymentID != 1 || pays[0].PaymentAmount != 1250 {
		t.Errorf("fact_payment %+v, want payment 1 of 1250 cents", pays)
	}
	locs := rowsOf[star.DimLocation](t, proc, 1, "dim_location")
	if len(locs) != 1 || locs[0].LocationID != 1 {
		t.Errorf("dim_location %+v, want address 1 only", locs)
	}

	want := map[string]string{
		"sales_order 2": "unit_price 3.5012 cannot be held in DECIMAL(10,2) without losing digits",
		"sales_order 3": "units_sold 4294967306 is out of range for INT32",
		"payment 2":     "payment_amount 12.505 cannot be held in DECIMAL(10,2) without losing digits",
		"address 2":     "address_line_1 is NULL where a value is required",
	}
	rejects := rejectsOf(t, proc, 1)
	for _, l := range rejects {
		row := rejectRow(t, l)
		key := fmt.Sprintf("%s %v", l.Table, row[totesysKey(l.Table)])
		if want[key] != l.Reason {
			t.Errorf("reject %s: %q (row %s)", key, l.Reason, l.Row)
		}
		delete(want, key)
	}
	if len(want) > 0 || res.Batches[0].Rejected != 4 {
		t.Errorf("not rejected: %v; rejects %+v", want, rejects)
	}
}

func totesysKey(table string) string {
	tb, _ := totesys.Lookup(table)
	return tb.Key
}
