package transform

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// benchOrders is the number of sales orders of the synthetic batch;
// SANDSTONE_BENCH_ORDERS overrides it (1000000 for the full-size figure).
func benchOrders() int {
	if n, err := strconv.Atoi(os.Getenv("SANDSTONE_BENCH_ORDERS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// genTable streams n generated rows of T into a new ingest object.
func genTable[T any](tb testing.TB, b *lake.Bucket, table string, n int, gen func(i int, r *T)) lake.Object {
	tb.Helper()
	w, err := lake.NewParquetWriter[T](context.Background(), b, lake.DataKey(table, time.Now(), 1, "bench", "parquet"), ingestSchema[T](table))
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]T, 0, chunk)
	for i := 0; i < n; i++ {
		var r T
		gen(i, &r)
		buf = append(buf, r)
		if len(buf) == cap(buf) || i == n-1 {
			if err := w.Write(buf); err != nil {
				tb.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	size, sum, err := w.Close()
	if err != nil {
		tb.Fatal(err)
	}
	return lake.Object{Table: table, Key: w.Key(), Rows: int64(n), Bytes: size, SHA256: sum}
}

// writeSynthetic writes ingest batch 1 of a totesys-shaped source with
// orders sales orders, 0.4 as many purchase orders, and one transaction and
// one payment per order. It streams, so it holds no table in memory.
func writeSynthetic(tb testing.TB, b *lake.Bucket, orders int) int64 {
	tb.Helper()
	base := ts("2022-11-03 14:20:52.186")
	w := world()
	for i := int32(3); i <= 30; i++ {
		w.Address = append(w.Address, totesys.Address{AddressID: i, AddressLine1: "x", City: "c", PostalCode: "p", Country: "k", Phone: "1", CreatedAt: base, LastUpdated: base})
	}
	for i := int32(4); i <= 20; i++ {
		w.Counterparty = append(w.Counterparty, totesys.Counterparty{CounterpartyID: i, CounterpartyLegalName: "cp", LegalAddressID: i, CreatedAt: base, LastUpdated: base})
	}
	for i := int32(3); i <= 20; i++ {
		w.Staff = append(w.Staff, totesys.Staff{StaffID: i, FirstName: "f", LastName: "l", DepartmentID: 1 + i%2, EmailAddress: "e", CreatedAt: base, LastUpdated: base})
	}
	w.SalesOrder, w.PurchaseOrder, w.Transaction, w.Payment, w.Design = nil, nil, nil, nil, nil
	w.PaymentType = append(w.PaymentType, totesys.PaymentType{PaymentTypeID: 2, PaymentTypeName: "SALES_REFUND", CreatedAt: base, LastUpdated: base})
	var m lake.Manifest
	add := func(obj lake.Object, ok bool, _ time.Time) {
		if ok {
			m.Tables = append(m.Tables, obj)
		}
	}
	add(putTable(tb, b, "address", 1, w.Address, func(r totesys.Address) time.Time { return r.LastUpdated }))
	add(putTable(tb, b, "counterparty", 1, w.Counterparty, func(r totesys.Counterparty) time.Time { return r.LastUpdated }))
	add(putTable(tb, b, "currency", 1, w.Currency, func(r totesys.Currency) time.Time { return r.LastUpdated }))
	add(putTable(tb, b, "department", 1, w.Department, func(r totesys.Department) time.Time { return r.LastUpdated }))
	add(putTable(tb, b, "staff", 1, w.Staff, func(r totesys.Staff) time.Time { return r.LastUpdated }))
	add(putTable(tb, b, "payment_type", 1, w.PaymentType, func(r totesys.PaymentType) time.Time { return r.LastUpdated }))

	const designs = 1000
	purchases := orders * 2 / 5
	at := func(i int) time.Time {
		return base.Add(time.Duration(i) * 37 * time.Second).Add(time.Duration(i%1000) * time.Millisecond)
	}
	date := func(i, plus int) string { return at(i).AddDate(0, 0, plus).Format("2006-01-02") }
	m.Tables = append(m.Tables,
		genTable(tb, b, "design", designs, func(i int, r *totesys.Design) {
			*r = totesys.Design{DesignID: int32(i + 1), DesignName: "Wooden", FileLocation: "/usr", FileName: "wooden-" + strconv.Itoa(i) + ".json", CreatedAt: base, LastUpdated: base}
		}),
		genTable(tb, b, "sales_order", orders, func(i int, r *totesys.SalesOrder) {
			*r = totesys.SalesOrder{SalesOrderID: int32(i + 1), CreatedAt: at(i), LastUpdated: at(i), DesignID: int32(i%designs + 1),
				StaffID: int32(i%20 + 1), CounterpartyID: int32(i%20 + 1), UnitsSold: int32(1000 + i%99000), UnitPrice: int64(200 + i%200),
				CurrencyID: int32(i%3 + 1), AgreedDeliveryDate: date(i, 4), AgreedPaymentDate: date(i, 5), AgreedDeliveryLocationID: int32(i%30 + 1)}
		}),
		genTable(tb, b, "purchase_order", purchases, func(i int, r *totesys.PurchaseOrder) {
			*r = totesys.PurchaseOrder{PurchaseOrderID: int32(i + 1), CreatedAt: at(i), LastUpdated: at(i), StaffID: int32(i%20 + 1),
				CounterpartyID: int32(i%20 + 1), ItemCode: "ZDOI5EA", ItemQuantity: int32(1 + i%1000), ItemUnitPrice: int64(300 + i%50000),
				CurrencyID: int32(i%3 + 1), AgreedDeliveryDate: date(i, 6), AgreedPaymentDate: date(i, 4), AgreedDeliveryLocationID: int32(i%30 + 1)}
		}),
		genTable(tb, b, "transaction", orders+purchases, func(i int, r *totesys.Transaction) {
			*r = totesys.Transaction{TransactionID: int32(i + 1), TransactionType: "SALE", SalesOrderID: ptr(int32(i + 1)), CreatedAt: at(i), LastUpdated: at(i)}
			if i >= orders {
				r.TransactionType, r.SalesOrderID, r.PurchaseOrderID = "PURCHASE", nil, ptr(int32(i-orders+1))
			}
		}),
		genTable(tb, b, "payment", orders+purchases, func(i int, r *totesys.Payment) {
			*r = totesys.Payment{PaymentID: int32(i + 1), CreatedAt: at(i), LastUpdated: at(i).Add(13 * time.Hour), TransactionID: int32(i + 1),
				CounterpartyID: int32(i%20 + 1), PaymentAmount: int64(6578 + i%98000000), CurrencyID: int32(i%3 + 1), PaymentTypeID: 1 + 2*int32(i%2),
				Paid: i%3 == 0, PaymentDate: date(i, 1), CompanyAcNumber: 1, CounterpartyAcNumber: 2}
		}),
	)
	m.Version, m.Stage, m.Batch, m.Sequence, m.RunID, m.CreatedAt = 1, "ingest", lake.BatchID(1), 1, "bench", time.Now().UTC()
	if err := b.PutManifest(context.Background(), 1, &m); err != nil {
		tb.Fatal(err)
	}
	return m.Rows()
}

// BenchmarkTransform transforms one synthetic ingest batch (100k sales
// orders by default, 40k purchase orders, 140k transactions and payments;
// SANDSTONE_BENCH_ORDERS scales it) into a fresh processed bucket.
func BenchmarkTransform(b *testing.B) {
	orders := benchOrders()
	ctx := context.Background()
	ingest, err := lake.Open(ctx, "file://"+filepath.Join(b.TempDir(), "ingest"))
	if err != nil {
		b.Fatal(err)
	}
	rows := writeSynthetic(b, ingest, orders)
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		proc, err := lake.Open(ctx, "file://"+filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		res, err := Run(ctx, Options{Ingest: ingest, Processed: proc, Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Batches) != 1 || res.Batches[0].Rejected != 0 || res.Batches[0].Rows["fact_payment"] != int64(orders+orders*2/5) {
			b.Fatalf("result %+v", res)
		}
		b.StopTimer()
		_ = proc.Close()
		_ = os.RemoveAll(filepath.Join(dir, strconv.Itoa(i)))
		b.StartTimer()
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	if hwm := peakRSS(); hwm > 0 {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MB")
	}
}

// peakRSS is the process's peak resident set size (Linux), 0 if unknown.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
