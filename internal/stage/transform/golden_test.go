package transform

import (
	"cmp"
	"context"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

// TestSnapshotGolden runs the real ingest over the real totesys snapshot,
// then transform, and checks rows verified by hand against the CSVs.
func TestSnapshotGolden(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.LoadSnapshot(t, url)
	ingestB, proc := buckets(t)
	ctx := context.Background()
	ir, err := ingest.Run(ctx, ingest.Options{SourceURL: url, Bucket: ingestB, Lookback: 10 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if ir.Sequence != 1 {
		t.Fatalf("ingest %+v", ir)
	}
	res := run(t, ingestB, proc)
	if len(res.Batches) != 1 {
		t.Fatalf("transform %+v", res)
	}
	b := res.Batches[0]
	if b.Rejected != 0 || b.Parked != 0 {
		t.Errorf("the snapshot is consistent, yet %d rows were rejected", b.Rejected)
	}
	wantRows := map[string]int64{
		"fact_sales_order": 11187, "fact_purchase_order": 4649, "fact_payment": 15836,
		"dim_transaction": 15836, "dim_design": 473, "dim_location": 30, "dim_counterparty": 20,
		"dim_staff": 20, "dim_currency": 3, "dim_payment_type": 4,
	}
	for table, n := range wantRows {
		if b.Rows[table] != n {
			t.Errorf("%s: %d rows, want %d (the source's)", table, b.Rows[table], n)
		}
	}
	checkSnapshotRows(t, proc)
}

// checkSnapshotRows checks processed batch 1 of the whole snapshot against
// rows verified by hand in the CSVs.
func checkSnapshotRows(t *testing.T, proc *lake.Bucket) {
	t.Helper()
	so := find(t, rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order"), func(r star.FactSalesOrder) bool { return r.SalesOrderID == 2 })
	// sales_order.csv: 2,2022-11-03 14:20:52.186,2022-11-03 14:20:52.186,3,19,8,42972,3.94,2,2022-11-07,2022-11-08,8
	if want := (star.FactSalesOrder{SalesOrderID: 2, CreatedDate: day("2022-11-03"), CreatedTime: clock("14:20:52.186"),
		LastUpdatedDate: day("2022-11-03"), LastUpdatedTime: clock("14:20:52.186"), SalesStaffID: 19, CounterpartyID: 8,
		UnitsSold: 42972, UnitPrice: 394, CurrencyID: 2, DesignID: 3, AgreedPaymentDate: day("2022-11-08"),
		AgreedDeliveryDate: day("2022-11-07"), AgreedDeliveryLocationID: 8}); so != want {
		t.Errorf("sales order 2:\n got %+v\nwant %+v", so, want)
	}
	po := find(t, rowsOf[star.FactPurchaseOrder](t, proc, 1, "fact_purchase_order"), func(r star.FactPurchaseOrder) bool { return r.PurchaseOrderID == 1 })
	// purchase_order.csv: 1,2022-11-03 14:20:52.187,2022-11-03 14:20:52.187,12,11,ZDOI5EA,371,361.39,2,2022-11-09,2022-11-07,6
	if want := (star.FactPurchaseOrder{PurchaseOrderID: 1, CreatedDate: day("2022-11-03"), CreatedTime: clock("14:20:52.187"),
		LastUpdatedDate: day("2022-11-03"), LastUpdatedTime: clock("14:20:52.187"), StaffID: 12, CounterpartyID: 11,
		ItemCode: "ZDOI5EA", ItemQuantity: 371, ItemUnitPrice: 36139, CurrencyID: 2, AgreedDeliveryDate: day("2022-11-09"),
		AgreedPaymentDate: day("2022-11-07"), AgreedDeliveryLocationID: 6}); po != want {
		t.Errorf("purchase order 1:\n got %+v\nwant %+v", po, want)
	}
	pay := find(t, rowsOf[star.FactPayment](t, proc, 1, "fact_payment"), func(r star.FactPayment) bool { return r.PaymentID == 2 })
	// payment.csv: 2,2022-11-03 14:20:52.187,2022-11-03 14:20:52.187,2,15,552548.62,2,3,false,2022-11-04,...
	if want := (star.FactPayment{PaymentID: 2, CreatedDate: day("2022-11-03"), CreatedTime: clock("14:20:52.187"),
		LastUpdatedDate: day("2022-11-03"), LastUpdated: clock("14:20:52.187"), TransactionID: 2, CounterpartyID: 15,
		PaymentAmount: 55254862, CurrencyID: 2, PaymentTypeID: 3, Paid: false, PaymentDate: day("2022-11-04")}); pay != want {
		t.Errorf("payment 2:\n got %+v\nwant %+v", pay, want)
	}
	cp := find(t, rowsOf[star.DimCounterparty](t, proc, 1, "dim_counterparty"), func(r star.DimCounterparty) bool { return r.CounterpartyID == 1 })
	if want := (star.DimCounterparty{CounterpartyID: 1, CounterpartyLegalName: "Fahey and Sons",
		CounterpartyLegalAddressLine1: "605 Haskell Trafficway", CounterpartyLegalAddressLine2: ptr("Axel Freeway"),
		CounterpartyLegalCity: "East Bobbie", CounterpartyLegalPostalCode: "88253-4257",
		CounterpartyLegalCountry: "Heard Island and McDonald Islands", CounterpartyLegalPhoneNumber: "9687 937447"}); !reflect.DeepEqual(cp, want) {
		t.Errorf("counterparty 1:\n got %+v\nwant %+v", cp, want)
	}
	staff := rowsOf[star.DimStaff](t, proc, 1, "dim_staff")
	if s := find(t, staff, func(r star.DimStaff) bool { return r.StaffID == 1 }); s != (star.DimStaff{StaffID: 1, FirstName: "Jeremie", LastName: "Franey",
		DepartmentName: "Purchasing", Location: "Manchester", EmailAddress: "jeremie.franey@terrifictotes.com"}) {
		t.Errorf("staff 1: %+v", s)
	}
	if s := find(t, staff, func(r star.DimStaff) bool { return r.StaffID == 13 }); s.DepartmentName != "Dispatch" || s.Location != "Leds" {
		t.Errorf("staff 13 (department 4, spelled 'Leds' in the source): %+v", s)
	}
	cur := rowsOf[star.DimCurrency](t, proc, 1, "dim_currency")
	if want := []star.DimCurrency{{CurrencyID: 1, CurrencyCode: "GBP", CurrencyName: "Pound Sterling"}, {CurrencyID: 2, CurrencyCode: "USD", CurrencyName: "US Dollar"},
		{CurrencyID: 3, CurrencyCode: "EUR", CurrencyName: "Euro"}}; !reflect.DeepEqual(sortBy(cur, func(r star.DimCurrency) int32 { return r.CurrencyID }), want) {
		t.Errorf("dim_currency %+v", cur)
	}
	loc := find(t, rowsOf[star.DimLocation](t, proc, 1, "dim_location"), func(r star.DimLocation) bool { return r.LocationID == 1 })
	if want := (star.DimLocation{LocationID: 1, AddressLine1: "6826 Herzog Via", District: ptr("Avon"), City: "New Patienceburgh",
		PostalCode: "28441", Country: "Turkey", Phone: "1803 637401"}); !reflect.DeepEqual(loc, want) {
		t.Errorf("location 1: %+v", loc)
	}
	tx := find(t, rowsOf[star.DimTransaction](t, proc, 1, "dim_transaction"), func(r star.DimTransaction) bool { return r.TransactionID == 1 })
	if tx.TransactionType != "PURCHASE" || tx.SalesOrderID != nil || tx.PurchaseOrderID == nil || *tx.PurchaseOrderID != 2 {
		t.Errorf("transaction 1: %+v", tx)
	}

	// dim_date: every date a fact refers to, once; from 2022-11-03 (the
	// first order) to 2024-11-22 (the last agreed delivery, of purchase order
	// 4648).
	dates := map[star.Date]star.DimDate{}
	for _, d := range rowsOf[star.DimDate](t, proc, 1, "dim_date") {
		if _, dup := dates[d.DateID]; dup {
			t.Fatalf("dim_date holds %d twice", d.DateID)
		}
		dates[d.DateID] = d
	}
	need := func(ds ...star.Date) {
		for _, d := range ds {
			if _, ok := dates[d]; !ok {
				t.Fatalf("dim_date lacks %s", star.DateTime(d, 0).Format("2006-01-02"))
			}
		}
	}
	for _, r := range rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order") {
		need(r.CreatedDate, r.LastUpdatedDate, r.AgreedDeliveryDate, r.AgreedPaymentDate)
	}
	for _, r := range rowsOf[star.FactPurchaseOrder](t, proc, 1, "fact_purchase_order") {
		need(r.CreatedDate, r.LastUpdatedDate, r.AgreedDeliveryDate, r.AgreedPaymentDate)
	}
	for _, r := range rowsOf[star.FactPayment](t, proc, 1, "fact_payment") {
		need(r.CreatedDate, r.LastUpdatedDate, r.PaymentDate)
	}
	first, last := day("2022-11-03"), day("2024-11-22")
	for d := range dates {
		if d < first || d > last {
			t.Errorf("dim_date holds %s, outside the data", star.DateTime(d, 0).Format("2006-01-02"))
		}
	}
	need(first, last, day("2024-02-29"))
	if d := dates[day("2024-02-29")]; d.DayName != "Thursday" || d.DayOfWeek != 4 || d.Quarter != 1 {
		t.Errorf("2024-02-29: %+v", d)
	}
}

func sortBy[T any, K cmp.Ordered](rows []T, key func(T) K) []T {
	slices.SortStableFunc(rows, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return rows
}

func find[T any](t *testing.T, rows []T, match func(T) bool) T {
	t.Helper()
	for _, r := range rows {
		if match(r) {
			return r
		}
	}
	t.Fatalf("no such %T row", *new(T))
	return *new(T)
}

// TestSnapshotReplay replays the real snapshot as monthly ingest batches
// (payments first unpaid, then paid in the month of their last_updated):
// the 21 sales orders whose design is stamped later than the order park
// and are released once their design arrives, and the facts equal those of
// a single batch of the whole snapshot.
func TestSnapshotReplay(t *testing.T) {
	rows := snapshotRows(t, pgtest.SnapshotDir(t))
	month := func(t time.Time) string { return t.Format("2006-01") }
	batches := map[string]*sourceRows{}
	at := func(t time.Time) *sourceRows {
		m := month(t)
		if batches[m] == nil {
			batches[m] = &sourceRows{}
		}
		return batches[m]
	}
	for _, r := range rows.Address {
		at(r.CreatedAt).Address = append(at(r.CreatedAt).Address, r)
	}
	for _, r := range rows.Counterparty {
		at(r.CreatedAt).Counterparty = append(at(r.CreatedAt).Counterparty, r)
	}
	for _, r := range rows.Currency {
		at(r.CreatedAt).Currency = append(at(r.CreatedAt).Currency, r)
	}
	for _, r := range rows.Department {
		at(r.CreatedAt).Department = append(at(r.CreatedAt).Department, r)
	}
	for _, r := range rows.Design {
		at(r.CreatedAt).Design = append(at(r.CreatedAt).Design, r)
	}
	for _, r := range rows.Staff {
		at(r.CreatedAt).Staff = append(at(r.CreatedAt).Staff, r)
	}
	for _, r := range rows.PaymentType {
		at(r.CreatedAt).PaymentType = append(at(r.CreatedAt).PaymentType, r)
	}
	for _, r := range rows.SalesOrder {
		at(r.CreatedAt).SalesOrder = append(at(r.CreatedAt).SalesOrder, r)
	}
	for _, r := range rows.PurchaseOrder {
		at(r.CreatedAt).PurchaseOrder = append(at(r.CreatedAt).PurchaseOrder, r)
	}
	for _, r := range rows.Transaction {
		at(r.CreatedAt).Transaction = append(at(r.CreatedAt).Transaction, r)
	}
	paidVersions := 0
	for _, r := range rows.Payment {
		if r.Paid {
			unpaid := r
			unpaid.Paid, unpaid.LastUpdated = false, r.CreatedAt
			at(r.CreatedAt).Payment = append(at(r.CreatedAt).Payment, unpaid)
			paidVersions++
		}
		at(r.LastUpdated).Payment = append(at(r.LastUpdated).Payment, r)
	}
	months := make([]string, 0, len(batches))
	for m := range batches {
		months = append(months, m)
	}
	slices.Sort(months)

	replayIn, replay := buckets(t)
	for i, m := range months {
		putBatch(t, replayIn, int64(i+1), *batches[m])
	}
	res := run(t, replayIn, replay)
	if len(res.Batches) != len(months) {
		t.Fatalf("%d batches transformed, want %d", len(res.Batches), len(months))
	}
	var rejected, released int64
	for _, b := range res.Batches {
		rejected += b.Rejected
		released += b.Released
		for _, l := range rejectsOf(t, replay, b.Sequence) {
			if l.Table != "sales_order" || l.Kind != missingRef {
				t.Errorf("batch %d rejected %s row for %s: %s", b.Sequence, l.Table, l.Kind, l.Reason)
			}
		}
	}
	if last := res.Batches[len(res.Batches)-1]; rejected != 21 || released != 21 || last.Parked != 0 {
		t.Errorf("rejected %d, released %d, parked at the end %d; want 21, 21, 0", rejected, released, last.Parked)
	}

	// The whole snapshot as one batch.
	wholeIn, whole := buckets(t)
	putBatch(t, wholeIn, 1, rows)
	run(t, wholeIn, whole)

	n := int64(len(months))
	bySO := func(r star.FactSalesOrder) int32 { return r.SalesOrderID }
	gotSO := sortBy(allRowsOf[star.FactSalesOrder](t, replay, n, "fact_sales_order"), bySO)
	wantSO := sortBy(rowsOf[star.FactSalesOrder](t, whole, 1, "fact_sales_order"), bySO)
	if !reflect.DeepEqual(gotSO, wantSO) {
		t.Errorf("replayed fact_sales_order (%d rows) differs from the single batch's (%d rows)", len(gotSO), len(wantSO))
	}
	byPO := func(r star.FactPurchaseOrder) int32 { return r.PurchaseOrderID }
	if got, want := sortBy(allRowsOf[star.FactPurchaseOrder](t, replay, n, "fact_purchase_order"), byPO),
		sortBy(rowsOf[star.FactPurchaseOrder](t, whole, 1, "fact_purchase_order"), byPO); !reflect.DeepEqual(got, want) {
		t.Errorf("replayed fact_purchase_order (%d rows) differs from the single batch's (%d rows)", len(got), len(want))
	}
	payments := allRowsOf[star.FactPayment](t, replay, n, "fact_payment")
	if len(payments) != len(rows.Payment)+paidVersions {
		t.Errorf("fact_payment holds %d rows, want %d (every payment unpaid, and %d paid later)", len(payments), len(rows.Payment)+paidVersions, paidVersions)
	}
	final := map[int32]star.FactPayment{}
	for _, p := range payments {
		if old, ok := final[p.PaymentID]; !ok || p.LastUpdatedDate > old.LastUpdatedDate ||
			(p.LastUpdatedDate == old.LastUpdatedDate && p.LastUpdated > old.LastUpdated) {
			final[p.PaymentID] = p
		}
	}
	for _, p := range rowsOf[star.FactPayment](t, whole, 1, "fact_payment") {
		if final[p.PaymentID] != p {
			t.Fatalf("payment %d: the replay's latest version %+v, the snapshot's %+v", p.PaymentID, final[p.PaymentID], p)
		}
	}
	// Order 18's design (51) is stamped 2023-01-19: the order, from
	// 2022-11, parks until that month's batch.
	for i, m := range months {
		for _, so := range rowsOf[star.FactSalesOrder](t, replay, int64(i+1), "fact_sales_order") {
			if so.SalesOrderID == 18 && m != "2023-01" {
				t.Errorf("sales order 18 emitted in %s's batch, want 2023-01's", m)
			}
		}
	}
}
