package warehouse

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// synthetic is the shape of a generated batch: realistic dimensions and as
// many fact rows as asked.
type synthetic struct {
	sales, payments, transactions int
}

// putSynthetic writes a generated batch seq, streaming each table.
func putSynthetic(t testing.TB, b *lake.Bucket, seq int64, n synthetic) {
	t.Helper()
	first, last := day("2022-11-03"), day("2024-11-21")
	m := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(seq), Sequence: seq,
		SourceNewest: time.Date(2024, 11, 15, 12, 0, 0, 0, time.UTC)}
	dates := dimDates("2022-11-03", "2024-11-21")
	addRows(t, b, &m, "dim_date", dates)
	addGen(t, b, &m, "dim_staff", 20, func(i int) star.DimStaff {
		return star.DimStaff{StaffID: int32(i + 1), FirstName: "First", LastName: fmt.Sprint("Last", i), DepartmentName: "Sales",
			Location: "Leeds", EmailAddress: fmt.Sprintf("staff%d@terrifictotes.com", i)}
	})
	addGen(t, b, &m, "dim_location", 30, func(i int) star.DimLocation {
		return star.DimLocation{LocationID: int32(i + 1), AddressLine1: fmt.Sprint(i, " Herzog Via"), City: "Leeds",
			PostalCode: "LS1", Country: "UK", Phone: "0113 000000"}
	})
	addRows(t, b, &m, "dim_currency", []star.DimCurrency{{CurrencyID: 1, CurrencyCode: "GBP", CurrencyName: "Pound Sterling"},
		{CurrencyID: 2, CurrencyCode: "USD", CurrencyName: "US Dollar"}, {CurrencyID: 3, CurrencyCode: "EUR", CurrencyName: "Euro"}})
	addGen(t, b, &m, "dim_design", 500, func(i int) star.DimDesign {
		return star.DimDesign{DesignID: int32(i + 1), DesignName: "Wooden", FileLocation: "/usr", FileName: fmt.Sprint("d", i, ".json")}
	})
	addGen(t, b, &m, "dim_counterparty", 20, func(i int) star.DimCounterparty {
		return star.DimCounterparty{CounterpartyID: int32(i + 1), CounterpartyLegalName: fmt.Sprint("Counterparty ", i),
			CounterpartyLegalAddressLine1: "1 Road", CounterpartyLegalCity: "Leeds", CounterpartyLegalPostalCode: "LS1",
			CounterpartyLegalCountry: "UK", CounterpartyLegalPhoneNumber: "0113"}
	})
	addRows(t, b, &m, "dim_payment_type", []star.DimPaymentType{{PaymentTypeID: 1, PaymentTypeName: "SALES_RECEIPT"},
		{PaymentTypeID: 2, PaymentTypeName: "SALES_REFUND"}, {PaymentTypeID: 3, PaymentTypeName: "PURCHASE_PAYMENT"},
		{PaymentTypeID: 4, PaymentTypeName: "PURCHASE_REFUND"}})
	if n.transactions > 0 {
		addGen(t, b, &m, "dim_transaction", n.transactions, func(i int) star.DimTransaction {
			return star.DimTransaction{TransactionID: int32(i + 1), TransactionType: "SALE", SalesOrderID: ptr(int32(i + 1))}
		})
	}
	span := int(last - first)
	addGen(t, b, &m, "fact_sales_order", n.sales, func(i int) star.FactSalesOrder {
		d := first + star.Date(i%span)
		return star.FactSalesOrder{SalesOrderID: int32(i/2 + 1), CreatedDate: d, CreatedTime: int32(i % 86_400_000),
			LastUpdatedDate: d, LastUpdatedTime: int32(i % 86_400_000), SalesStaffID: int32(i%20 + 1),
			CounterpartyID: int32(i%20 + 1), UnitsSold: int32(i%1000 + 1), UnitPrice: int64(i % 100000),
			CurrencyID: int32(i%3 + 1), DesignID: int32(i%500 + 1), AgreedPaymentDate: d, AgreedDeliveryDate: d,
			AgreedDeliveryLocationID: int32(i%30 + 1)}
	})
	if n.payments > 0 {
		addGen(t, b, &m, "fact_payment", n.payments, func(i int) star.FactPayment {
			d := first + star.Date(i%span)
			return star.FactPayment{PaymentID: int32(i/2 + 1), CreatedDate: d, CreatedTime: int32(i % 86_400_000),
				LastUpdatedDate: d, LastUpdated: int32(i % 86_400_000), TransactionID: int32(i%n.transactions + 1),
				CounterpartyID: int32(i%20 + 1), PaymentAmount: int64(i), CurrencyID: int32(i%3 + 1),
				PaymentTypeID: int32(i%4 + 1), Paid: i%2 == 1, PaymentDate: d}
		})
	}
	putManifest(t, b, m)
}

// BenchmarkLoad loads one batch of 200k fact_sales_order rows (and its
// dimensions) into an empty warehouse per iteration.
func BenchmarkLoad(b *testing.B) {
	const rows = 200_000
	bucket, err := lake.Open(context.Background(), "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	putSynthetic(b, bucket, 1, synthetic{sales: rows})
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		url := pgtest.NewDatabase(b)
		b.StartTimer()
		res, err := loadInto(context.Background(), url, "", defaultSettings(), Options{Processed: bucket, Logger: quiet})
		if err != nil || len(res.Batches) != 1 || res.Batches[0].Rows["fact_sales_order"] != rows {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "fact_rows/s")
}

// TestBigLoad measures a big batch: 1M fact_sales_order and 1.4M
// fact_payment rows, with 100k transactions. It runs only when
// SANDSTONE_BIG_LOAD names a directory; the batch is generated there once
// (run again to measure the load alone, with its peak RSS).
func TestBigLoad(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("SANDSTONE_BIG_LOAD")
	if dir == "" {
		t.Skip("SANDSTONE_BIG_LOAD is not set")
	}
	ctx := context.Background()
	bucket, err := lake.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := bucket.LatestSeq(ctx); seq == 0 {
		start := time.Now()
		putSynthetic(t, bucket, 1, synthetic{sales: 1_000_000, payments: 1_400_000, transactions: 100_000})
		t.Logf("generated the batch in %s; run again to measure the load alone", time.Since(start))
		return
	}
	url := pgtest.NewDatabase(t)
	start := time.Now()
	res, err := loadInto(ctx, url, "", defaultSettings(), Options{Processed: bucket, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var total int64
	for _, n := range res.Batches[0].Rows {
		total += n
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t.Logf("loaded %d rows (%v) in %s: %.0f rows/s; peak RSS %d MiB", total, res.Batches[0].Rows, took,
		float64(total)/took.Seconds(), ru.Maxrss/1024)
}
