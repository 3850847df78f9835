package warehouse

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// TestSalesAndLoads: the sales value counts each order's current version
// once, leaves deleted orders out and groups by month and currency; the
// loads of a window come with the one before it, oldest first.
func TestSalesAndLoads(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	none, err := opened(ctx, e.url, "", (*Warehouse).SalesByMonth)
	if err != nil || none != nil {
		t.Fatalf("sales of an empty warehouse: %v, %v", none, err)
	}
	w := world(1)
	feb := sale(2, "2024-01-02", "11:00:00.000", 3, 1000)
	feb.CreatedDate, feb.CurrencyID = day("2024-02-01"), 2
	w.dates = dimDates("2023-12-25", "2024-02-29")
	w.sales = append(w.sales, feb, sale(3, "2024-01-02", "11:00:00.000", 1, 500))
	put(t, e.bucket, w)
	e.load(t)

	// Order 1's new version (50 -> 10 units) and order 3's deletion.
	m := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(2), Sequence: 2, RunID: "test",
		CreatedAt: time.Now().UTC(), SourceNewest: w.newest.Add(time.Hour), Deleted: map[string][]int32{"sales_order": {3}}}
	addRows(t, e.bucket, &m, "fact_sales_order", []star.FactSalesOrder{sale(1, "2024-01-03", "08:00:00.000", 10, 1234)})
	putManifest(t, e.bucket, m)
	e.load(t)

	got, err := opened(ctx, e.url, "", (*Warehouse).SalesByMonth)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sales{{Month: "2024-01", Currency: "GBP", Value: 123.4}, {Month: "2024-02", Currency: "USD", Value: 30}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sales %+v, want %+v", got, want)
	}

	all, err := opened(ctx, e.url, "", func(w *Warehouse, ctx context.Context) ([]LedgerEntry, error) {
		return w.LoadsSince(ctx, time.Now().Add(-time.Hour))
	})
	if err != nil || len(all) != 2 || all[0].Sequence != 1 || all[1].Sequence != 2 || all[1].Rows["fact_sales_order"] != 1 {
		t.Fatalf("loads of the last hour: %+v, %v", all, err)
	}
	later, err := opened(ctx, e.url, "", func(w *Warehouse, ctx context.Context) ([]LedgerEntry, error) {
		return w.LoadsSince(ctx, time.Now().Add(time.Hour))
	})
	if err != nil || len(later) != 1 || later[0].Batch != lake.BatchID(2) {
		t.Fatalf("loads from an hour on: %+v, %v (want the last before it)", later, err)
	}
}
