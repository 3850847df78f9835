package transform

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// t0 is a leap day, so dim_date must hold 2024-02-29.
var t0 = ts("2024-02-29 10:00:00.123456")

// world is a small, consistent source: every reference resolves.
func world() sourceRows {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	return sourceRows{
		Address: []totesys.Address{
			{AddressID: 1, AddressLine1: "1 High St", District: ptr("Avon"), City: "Bath", PostalCode: "BA1 1AA", Country: "United Kingdom", Phone: "0117 000000", CreatedAt: t0, LastUpdated: t0},
			{AddressID: 2, AddressLine1: "2 Low Rd", AddressLine2: ptr("Flat 3"), City: "Leeds", PostalCode: "LS1 1AA", Country: "United Kingdom", Phone: "0113 000000", CreatedAt: t0, LastUpdated: t0},
		},
		Department: []totesys.Department{
			{DepartmentID: 1, DepartmentName: "Sales", Location: ptr("Manchester"), CreatedAt: t0, LastUpdated: t0},
			{DepartmentID: 2, DepartmentName: "Dispatch", CreatedAt: t0, LastUpdated: t0},
		},
		Counterparty: []totesys.Counterparty{
			{CounterpartyID: 1, CounterpartyLegalName: "Acme", LegalAddressID: 1, CreatedAt: t0, LastUpdated: t0},
			{CounterpartyID: 2, CounterpartyLegalName: "Bolt", LegalAddressID: 2, CreatedAt: t0, LastUpdated: t0},
			{CounterpartyID: 3, CounterpartyLegalName: "Cog", LegalAddressID: 1, CreatedAt: t0, LastUpdated: t0},
		},
		Staff: []totesys.Staff{
			{StaffID: 1, FirstName: "Ann", LastName: "Lee", DepartmentID: 1, EmailAddress: "ann@example.com", CreatedAt: t0, LastUpdated: t0},
			{StaffID: 2, FirstName: "Bob", LastName: "Ray", DepartmentID: 2, EmailAddress: "bob@example.com", CreatedAt: t0, LastUpdated: t0},
		},
		Currency: []totesys.Currency{
			{CurrencyID: 1, CurrencyCode: "GBP", CreatedAt: t0, LastUpdated: t0},
			{CurrencyID: 2, CurrencyCode: "USD", CreatedAt: t0, LastUpdated: t0},
			{CurrencyID: 3, CurrencyCode: "EUR", CreatedAt: t0, LastUpdated: t0},
		},
		Design:      []totesys.Design{{DesignID: 1, DesignName: "Wooden", FileLocation: "/usr", FileName: "wooden.json", CreatedAt: t0, LastUpdated: t0}},
		PaymentType: []totesys.PaymentType{{PaymentTypeID: 1, PaymentTypeName: "SALES_RECEIPT", CreatedAt: t0, LastUpdated: t0}, {PaymentTypeID: 3, PaymentTypeName: "PURCHASE_PAYMENT", CreatedAt: t0, LastUpdated: t0}},
		SalesOrder: []totesys.SalesOrder{{SalesOrderID: 1, CreatedAt: at(time.Hour), LastUpdated: at(time.Hour), DesignID: 1, StaffID: 1, CounterpartyID: 1,
			UnitsSold: 42972, UnitPrice: 394, CurrencyID: 2, AgreedDeliveryDate: "2024-03-04", AgreedPaymentDate: "2024-03-05", AgreedDeliveryLocationID: 2}},
		PurchaseOrder: []totesys.PurchaseOrder{{PurchaseOrderID: 1, CreatedAt: at(2 * time.Hour), LastUpdated: at(2 * time.Hour), StaffID: 2, CounterpartyID: 2,
			ItemCode: "ZDOI5EA", ItemQuantity: 371, ItemUnitPrice: 36139, CurrencyID: 1, AgreedDeliveryDate: "2024-03-09", AgreedPaymentDate: "2024-03-07", AgreedDeliveryLocationID: 1}},
		Transaction: []totesys.Transaction{
			{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](1), CreatedAt: at(time.Hour), LastUpdated: at(time.Hour)},
			{TransactionID: 2, TransactionType: "PURCHASE", PurchaseOrderID: ptr[int32](1), CreatedAt: at(2 * time.Hour), LastUpdated: at(2 * time.Hour)},
		},
		Payment: []totesys.Payment{{PaymentID: 1, CreatedAt: at(time.Hour), LastUpdated: at(time.Hour), TransactionID: 1, CounterpartyID: 1,
			PaymentAmount: 55254862, CurrencyID: 2, PaymentTypeID: 1, PaymentDate: "2024-03-01", CompanyAcNumber: 1, CounterpartyAcNumber: 2}},
	}
}

func TestTransformBatch(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	res := run(t, ingest, proc)
	if len(res.Batches) != 1 || res.Batches[0].Sequence != 1 || res.Batches[0].Rejected != 0 {
		t.Fatalf("result %+v", res)
	}

	m := processed(t, proc, 1)
	var im lake.Manifest
	if err := ingest.ReadManifest(context.Background(), 1, &im); err != nil {
		t.Fatal(err)
	}
	if m.Stage != "transform" || m.Sequence != 1 || m.Batch != lake.BatchID(1) || m.RunID != res.RunID ||
		!m.SourceNewest.Equal(im.SourceNewest) || m.StateKey == "" || m.Rejects != nil || m.Released != 0 {
		t.Fatalf("manifest %+v", m)
	}
	var tables []string
	for _, o := range m.Tables {
		tables = append(tables, o.Table)
	}
	var want []string
	for _, st := range star.Tables {
		want = append(want, st.Name)
	}
	if !slices.Equal(tables, want) {
		t.Fatalf("manifest tables %v, want every star table in load order %v", tables, want)
	}

	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
	check("dim_location", rowsOf[star.DimLocation](t, proc, 1, "dim_location"), []star.DimLocation{
		{LocationID: 1, AddressLine1: "1 High St", District: ptr("Avon"), City: "Bath", PostalCode: "BA1 1AA", Country: "United Kingdom", Phone: "0117 000000"},
		{LocationID: 2, AddressLine1: "2 Low Rd", AddressLine2: ptr("Flat 3"), City: "Leeds", PostalCode: "LS1 1AA", Country: "United Kingdom", Phone: "0113 000000"},
	})
	check("dim_counterparty", rowsOf[star.DimCounterparty](t, proc, 1, "dim_counterparty"), []star.DimCounterparty{
		{CounterpartyID: 1, CounterpartyLegalName: "Acme", CounterpartyLegalAddressLine1: "1 High St", CounterpartyLegalDistrict: ptr("Avon"), CounterpartyLegalCity: "Bath", CounterpartyLegalPostalCode: "BA1 1AA", CounterpartyLegalCountry: "United Kingdom", CounterpartyLegalPhoneNumber: "0117 000000"},
		{CounterpartyID: 2, CounterpartyLegalName: "Bolt", CounterpartyLegalAddressLine1: "2 Low Rd", CounterpartyLegalAddressLine2: ptr("Flat 3"), CounterpartyLegalCity: "Leeds", CounterpartyLegalPostalCode: "LS1 1AA", CounterpartyLegalCountry: "United Kingdom", CounterpartyLegalPhoneNumber: "0113 000000"},
		{CounterpartyID: 3, CounterpartyLegalName: "Cog", CounterpartyLegalAddressLine1: "1 High St", CounterpartyLegalDistrict: ptr("Avon"), CounterpartyLegalCity: "Bath", CounterpartyLegalPostalCode: "BA1 1AA", CounterpartyLegalCountry: "United Kingdom", CounterpartyLegalPhoneNumber: "0117 000000"},
	})
	check("dim_staff", rowsOf[star.DimStaff](t, proc, 1, "dim_staff"), []star.DimStaff{
		{StaffID: 1, FirstName: "Ann", LastName: "Lee", DepartmentName: "Sales", Location: "Manchester", EmailAddress: "ann@example.com"},
		{StaffID: 2, FirstName: "Bob", LastName: "Ray", DepartmentName: "Dispatch", Location: "Unknown", EmailAddress: "bob@example.com"},
	})
	check("dim_currency", rowsOf[star.DimCurrency](t, proc, 1, "dim_currency"), []star.DimCurrency{
		{CurrencyID: 1, CurrencyCode: "GBP", CurrencyName: "Pound Sterling"},
		{CurrencyID: 2, CurrencyCode: "USD", CurrencyName: "US Dollar"},
		{CurrencyID: 3, CurrencyCode: "EUR", CurrencyName: "Euro"},
	})
	check("dim_design", rowsOf[star.DimDesign](t, proc, 1, "dim_design"), []star.DimDesign{{DesignID: 1, DesignName: "Wooden", FileLocation: "/usr", FileName: "wooden.json"}})
	check("dim_payment_type", rowsOf[star.DimPaymentType](t, proc, 1, "dim_payment_type"), []star.DimPaymentType{{PaymentTypeID: 1, PaymentTypeName: "SALES_RECEIPT"}, {PaymentTypeID: 3, PaymentTypeName: "PURCHASE_PAYMENT"}})
	check("dim_transaction", rowsOf[star.DimTransaction](t, proc, 1, "dim_transaction"), []star.DimTransaction{
		{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](1)},
		{TransactionID: 2, TransactionType: "PURCHASE", PurchaseOrderID: ptr[int32](1)},
	})
	check("fact_sales_order", rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order"), []star.FactSalesOrder{{
		SalesOrderID: 1, CreatedDate: day("2024-02-29"), CreatedTime: clock("11:00:00.123"), LastUpdatedDate: day("2024-02-29"), LastUpdatedTime: clock("11:00:00.123"),
		SalesStaffID: 1, CounterpartyID: 1, UnitsSold: 42972, UnitPrice: 394, CurrencyID: 2, DesignID: 1,
		AgreedPaymentDate: day("2024-03-05"), AgreedDeliveryDate: day("2024-03-04"), AgreedDeliveryLocationID: 2}})
	check("fact_purchase_order", rowsOf[star.FactPurchaseOrder](t, proc, 1, "fact_purchase_order"), []star.FactPurchaseOrder{{
		PurchaseOrderID: 1, CreatedDate: day("2024-02-29"), CreatedTime: clock("12:00:00.123"), LastUpdatedDate: day("2024-02-29"), LastUpdatedTime: clock("12:00:00.123"),
		StaffID: 2, CounterpartyID: 2, ItemCode: "ZDOI5EA", ItemQuantity: 371, ItemUnitPrice: 36139, CurrencyID: 1,
		AgreedDeliveryDate: day("2024-03-09"), AgreedPaymentDate: day("2024-03-07"), AgreedDeliveryLocationID: 1}})
	check("fact_payment", rowsOf[star.FactPayment](t, proc, 1, "fact_payment"), []star.FactPayment{{
		PaymentID: 1, CreatedDate: day("2024-02-29"), CreatedTime: clock("11:00:00.123"), LastUpdatedDate: day("2024-02-29"), LastUpdated: clock("11:00:00.123"),
		TransactionID: 1, CounterpartyID: 1, PaymentAmount: 55254862, CurrencyID: 2, PaymentTypeID: 1, Paid: false, PaymentDate: day("2024-03-01")}})

	var dates []star.Date
	for _, d := range rowsOf[star.DimDate](t, proc, 1, "dim_date") {
		dates = append(dates, d.DateID)
	}
	wantDates := []star.Date{day("2024-02-29"), day("2024-03-01"), day("2024-03-04"), day("2024-03-05"), day("2024-03-07"), day("2024-03-09")}
	if !slices.Equal(dates, wantDates) {
		t.Errorf("dim_date holds %v, want every date the facts refer to, once: %v", dates, wantDates)
	}
	if got := res.Batches[0].Rows; got["fact_sales_order"] != 1 || got["dim_date"] != 6 || got["dim_counterparty"] != 3 {
		t.Errorf("result rows %v", got)
	}
}

func TestDimDate(t *testing.T) {
	tests := []struct {
		date               string
		year, month, dom   int32
		dow                int32
		dayName, monthName string
		quarter            int32
	}{
		{"2024-02-29", 2024, 2, 29, 4, "Thursday", "February", 1},
		{"2022-11-03", 2022, 11, 3, 4, "Thursday", "November", 4},
		{"2023-01-01", 2023, 1, 1, 7, "Sunday", "January", 1},
		{"2024-11-18", 2024, 11, 18, 1, "Monday", "November", 4},
		{"2024-06-30", 2024, 6, 30, 7, "Sunday", "June", 2},
		{"2024-07-01", 2024, 7, 1, 1, "Monday", "July", 3},
		{"2000-02-29", 2000, 2, 29, 2, "Tuesday", "February", 1},
		{"1970-01-01", 1970, 1, 1, 4, "Thursday", "January", 1},
		{"1969-12-31", 1969, 12, 31, 3, "Wednesday", "December", 4},
	}
	for _, tt := range tests {
		t.Run(tt.date, func(t *testing.T) {
			got := dimDate(day(tt.date))
			want := star.DimDate{DateID: day(tt.date), Year: tt.year, Month: tt.month, Day: tt.dom, DayOfWeek: tt.dow,
				DayName: tt.dayName, MonthName: tt.monthName, Quarter: tt.quarter}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			if s := star.DateTime(got.DateID, 0).Format("2006-01-02"); s != tt.date {
				t.Fatalf("date_id %d is %s", got.DateID, s)
			}
		})
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"2022-11-03", true},
		{"2024-02-29", true},
		{"0001-01-01", true},
		{"9999-12-31", true},
		{"2023-02-29", false}, // not a leap year
		{"2024-04-31", false},
		{"2024-13-01", false},
		{"2024-00-10", false},
		{"2024-01-00", false},
		{"0000-01-01", false},
		{"2024-1-05", false},
		{"2024/01/05", false},
		{" 2024-01-05", false},
		{"2024-01-05 ", false},
		{"2024-01-05T00:00:00", false},
		{"24-01-05", false},
		{"2024-0a-05", false},
		{"", false},
	}
	for _, tt := range tests {
		d, ok := parseDate(tt.in)
		if ok != tt.ok {
			t.Errorf("parseDate(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		if ok {
			if s := star.DateTime(d, 0).Format("2006-01-02"); s != tt.in {
				t.Errorf("parseDate(%q) = %s", tt.in, s)
			}
		}
	}
}

func TestCurrencyNames(t *testing.T) {
	tests := []struct {
		code, name string
		ok         bool
	}{
		{"GBP", "Pound Sterling", true},
		{"USD", "US Dollar", true},
		{"EUR", "Euro", true},
		{"JPY", "Yen", true},
		{"CHF", "Swiss Franc", true},
		{"CNY", "Yuan Renminbi", true},
		{"INR", "Indian Rupee", true},
		{"ZAR", "Rand", true},
		{"KMF", "Comorian Franc", true},
		{"ZWG", "Zimbabwe Gold", true},
		{"XXX", "The codes assigned for transactions where no currency is involved", true},
		{"gbp", "Pound Sterling", true},
		{"DEM", "", false}, // withdrawn
		{"ZZZ", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		name, ok := currencyName(tt.code)
		if ok != tt.ok || name != tt.name {
			t.Errorf("currencyName(%q) = %q, %v; want %q, %v", tt.code, name, ok, tt.name, tt.ok)
		}
	}
	if n := len(currencyNames); n < 175 {
		t.Errorf("the ISO 4217 list has %d codes, want all of them (about 180)", n)
	}
	for code, name := range currencyNames {
		if len(code) != 3 || strings.ToUpper(code) != code || name == "" || strings.TrimSpace(name) != name {
			t.Errorf("bad entry %q: %q", code, name)
		}
	}
}

func TestPropagation(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	later := t0.Add(24 * time.Hour)
	// Batch 2: address 1 moves; department 2 gets a location.
	putBatch(t, ingest, 2, sourceRows{
		Address:    []totesys.Address{{AddressID: 1, AddressLine1: "9 New St", City: "Bristol", PostalCode: "BS1", Country: "United Kingdom", Phone: "0117 999999", CreatedAt: t0, LastUpdated: later}},
		Department: []totesys.Department{{DepartmentID: 2, DepartmentName: "Dispatch", Location: ptr("Leeds"), CreatedAt: t0, LastUpdated: later}},
	})
	// Batch 3: counterparty 2 and staff 1 change; they join the address and
	// department held from batch 1, which did not change.
	putBatch(t, ingest, 3, sourceRows{
		Counterparty: []totesys.Counterparty{{CounterpartyID: 2, CounterpartyLegalName: "Bolt Ltd", LegalAddressID: 2, CreatedAt: t0, LastUpdated: later.Add(time.Hour)}},
		Staff:        []totesys.Staff{{StaffID: 1, FirstName: "Ann", LastName: "Lee-Smith", DepartmentID: 1, EmailAddress: "ann@example.com", CreatedAt: t0, LastUpdated: later.Add(time.Hour)}},
	})
	res := run(t, ingest, proc)
	if len(res.Batches) != 3 {
		t.Fatalf("batches %+v", res.Batches)
	}

	if got := rowsOf[star.DimLocation](t, proc, 2, "dim_location"); len(got) != 1 || got[0].LocationID != 1 || got[0].AddressLine1 != "9 New St" || got[0].District != nil {
		t.Errorf("batch 2 dim_location %+v, want address 1's new row", got)
	}
	cps := rowsOf[star.DimCounterparty](t, proc, 2, "dim_counterparty")
	if len(cps) != 2 || cps[0].CounterpartyID != 1 || cps[1].CounterpartyID != 3 {
		t.Fatalf("batch 2 dim_counterparty %+v, want counterparties 1 and 3 (address 1 is their legal address)", cps)
	}
	for _, c := range cps {
		if c.CounterpartyLegalAddressLine1 != "9 New St" || c.CounterpartyLegalCity != "Bristol" || c.CounterpartyLegalDistrict != nil {
			t.Errorf("counterparty %d still has the old address: %+v", c.CounterpartyID, c)
		}
	}
	staff := rowsOf[star.DimStaff](t, proc, 2, "dim_staff")
	if want := []star.DimStaff{{StaffID: 2, FirstName: "Bob", LastName: "Ray", DepartmentName: "Dispatch", Location: "Leeds", EmailAddress: "bob@example.com"}}; !reflect.DeepEqual(staff, want) {
		t.Errorf("batch 2 dim_staff %+v, want %+v", staff, want)
	}
	m2 := processed(t, proc, 2)
	for _, table := range []string{"fact_sales_order", "dim_design", "dim_currency", "dim_date"} {
		if _, ok := m2.Table(table); ok {
			t.Errorf("batch 2 has a %s object, but nothing it holds changed", table)
		}
	}

	cps = rowsOf[star.DimCounterparty](t, proc, 3, "dim_counterparty")
	if len(cps) != 1 || cps[0].CounterpartyLegalName != "Bolt Ltd" || cps[0].CounterpartyLegalAddressLine1 != "2 Low Rd" || *cps[0].CounterpartyLegalAddressLine2 != "Flat 3" {
		t.Errorf("batch 3 dim_counterparty %+v, want Bolt Ltd at its current address 2", cps)
	}
	staff = rowsOf[star.DimStaff](t, proc, 3, "dim_staff")
	if want := []star.DimStaff{{StaffID: 1, FirstName: "Ann", LastName: "Lee-Smith", DepartmentName: "Sales", Location: "Manchester", EmailAddress: "ann@example.com"}}; !reflect.DeepEqual(staff, want) {
		t.Errorf("batch 3 dim_staff %+v, want %+v", staff, want)
	}
	if m3 := processed(t, proc, 3); func() bool { _, ok := m3.Table("dim_location"); return ok }() {
		t.Error("batch 3 re-emitted dim_location though no address changed")
	}
}

func TestStaleVersionIgnored(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Address[0].LastUpdated = t0.Add(time.Hour)
	putBatch(t, ingest, 1, w)
	// An older version of address 1 (as a re-read within the lookback could
	// bring) must not replace the newer one.
	putBatch(t, ingest, 2, sourceRows{
		Address:      []totesys.Address{{AddressID: 1, AddressLine1: "old", City: "Old", PostalCode: "O", Country: "O", Phone: "0", CreatedAt: t0, LastUpdated: t0}},
		Counterparty: []totesys.Counterparty{{CounterpartyID: 1, CounterpartyLegalName: "Acme v2", LegalAddressID: 1, CreatedAt: t0, LastUpdated: t0.Add(time.Hour)}},
	})
	run(t, ingest, proc)
	if got := rowsOf[star.DimLocation](t, proc, 2, "dim_location"); len(got) != 0 {
		t.Errorf("stale address emitted: %+v", got)
	}
	cps := rowsOf[star.DimCounterparty](t, proc, 2, "dim_counterparty")
	if len(cps) != 1 || cps[0].CounterpartyLegalAddressLine1 != "1 High St" {
		t.Errorf("dim_counterparty %+v, want Acme v2 at the newest address 1", cps)
	}
}

func TestPaymentHistory(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	paid := world().Payment[0]
	paid.Paid = true
	paid.LastUpdated = ts("2024-03-01 09:30:05.5")
	putBatch(t, ingest, 2, sourceRows{Payment: []totesys.Payment{paid}})
	run(t, ingest, proc)

	all := allRowsOf[star.FactPayment](t, proc, 2, "fact_payment")
	if len(all) != 2 {
		t.Fatalf("fact_payment holds %d rows over two batches, want 2 (one per version)", len(all))
	}
	first, second := all[0], all[1]
	if first.Paid || !second.Paid || first.PaymentID != 1 || second.PaymentID != 1 {
		t.Fatalf("versions %+v / %+v, want unpaid then paid", first, second)
	}
	if second.CreatedDate != first.CreatedDate || second.CreatedTime != first.CreatedTime ||
		second.LastUpdatedDate != day("2024-03-01") || second.LastUpdated != clock("09:30:05.500") {
		t.Errorf("paid version %+v", second)
	}
	// The paid version's dates are in batch 2's dim_date.
	var dates []star.Date
	for _, d := range rowsOf[star.DimDate](t, proc, 2, "dim_date") {
		dates = append(dates, d.DateID)
	}
	if !slices.Equal(dates, []star.Date{day("2024-02-29"), day("2024-03-01")}) {
		t.Errorf("batch 2 dim_date %v", dates)
	}
}

func TestRejects(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	// A bad text date: final.
	w.SalesOrder = append(w.SalesOrder, totesys.SalesOrder{SalesOrderID: 2, CreatedAt: t0, LastUpdated: t0, DesignID: 1, StaffID: 1, CounterpartyID: 1,
		UnitsSold: 5, UnitPrice: 100, CurrencyID: 1, AgreedDeliveryDate: "2024-02-30", AgreedPaymentDate: "2024-03-01", AgreedDeliveryLocationID: 1})
	// A design not seen yet: parked, released when design 7 arrives.
	w.SalesOrder = append(w.SalesOrder, totesys.SalesOrder{SalesOrderID: 3, CreatedAt: t0, LastUpdated: t0, DesignID: 7, StaffID: 1, CounterpartyID: 1,
		UnitsSold: 5, UnitPrice: 100, CurrencyID: 1, AgreedDeliveryDate: "2024-03-02", AgreedPaymentDate: "2024-03-03", AgreedDeliveryLocationID: 1})
	// A payment of a transaction not seen yet: parked until batch 3.
	w.Payment = append(w.Payment, totesys.Payment{PaymentID: 2, CreatedAt: t0, LastUpdated: t0, TransactionID: 9, CounterpartyID: 1,
		PaymentAmount: 100, CurrencyID: 1, PaymentTypeID: 1, PaymentDate: "2024-03-01"})
	// Bad values of every kind.
	w.Transaction = append(w.Transaction, totesys.Transaction{TransactionID: 3, TransactionType: "REFUND", SalesOrderID: ptr[int32](1), CreatedAt: t0, LastUpdated: t0})
	w.PurchaseOrder = append(w.PurchaseOrder, totesys.PurchaseOrder{PurchaseOrderID: 2, CreatedAt: t0, LastUpdated: t0, StaffID: 1, CounterpartyID: 1,
		ItemCode: "X", ItemQuantity: 0, ItemUnitPrice: 100, CurrencyID: 1, AgreedDeliveryDate: "2024-03-02", AgreedPaymentDate: "2024-03-03", AgreedDeliveryLocationID: 1})
	w.Payment = append(w.Payment, totesys.Payment{PaymentID: 3, CreatedAt: t0, LastUpdated: t0, TransactionID: 1, CounterpartyID: 1,
		PaymentAmount: -500, CurrencyID: 1, PaymentTypeID: 1, PaymentDate: "2024-03-01"})
	// A counterparty whose address has not arrived: parked as a dimension
	// row; a sales order of it is parked too.
	w.Counterparty = append(w.Counterparty, totesys.Counterparty{CounterpartyID: 4, CounterpartyLegalName: "Dyn", LegalAddressID: 5, CreatedAt: t0, LastUpdated: t0})
	w.SalesOrder = append(w.SalesOrder, totesys.SalesOrder{SalesOrderID: 4, CreatedAt: t0, LastUpdated: t0, DesignID: 1, StaffID: 1, CounterpartyID: 4,
		UnitsSold: 5, UnitPrice: 100, CurrencyID: 1, AgreedDeliveryDate: "2024-03-02", AgreedPaymentDate: "2024-03-03", AgreedDeliveryLocationID: 1})
	// An unknown currency code: kept, named by its code.
	w.Currency = append(w.Currency, totesys.Currency{CurrencyID: 4, CurrencyCode: "ZZZ", CreatedAt: t0, LastUpdated: t0})
	putBatch(t, ingest, 1, w)

	logs := &logBuffer{}
	res, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	b1 := res.Batches[0]
	if b1.Rejected != 8 || b1.Released != 0 || b1.Parked != 4 {
		t.Errorf("batch 1: rejected %d released %d parked %d; want 8, 0, 4", b1.Rejected, b1.Released, b1.Parked)
	}
	m := processed(t, proc, 1)
	if m.Rejects == nil || m.Rejects.Rows != 8 {
		t.Fatalf("manifest rejects %+v", m.Rejects)
	}
	type key struct {
		table string
		kind  rejectKind
	}
	got := map[key][]string{}
	for _, l := range rejectsOf(t, proc, 1) {
		got[key{l.Table, l.Kind}] = append(got[key{l.Table, l.Kind}], l.Reason)
		if len(l.Row) == 0 || l.Row[0] != '{' {
			t.Errorf("reject without its source row: %+v", l)
		}
	}
	want := map[key]int{
		{"sales_order", badValue}: 1, {"sales_order", missingRef}: 2, {"payment", missingRef}: 1,
		{"transaction", badValue}: 1, {"purchase_order", badValue}: 1, {"payment", badValue}: 1,
		{"counterparty", missingRef}: 1,
	}
	for k, n := range want {
		if len(got[k]) != n {
			t.Errorf("%v: %d rejects %q, want %d", k, len(got[k]), got[k], n)
		}
	}
	if r := got[key{"sales_order", badValue}]; len(r) == 1 && !strings.Contains(r[0], `agreed_delivery_date "2024-02-30"`) {
		t.Errorf("bad date reason %q", r[0])
	}
	lines := rejectsOf(t, proc, 1)
	for _, l := range lines {
		if l.Table == "payment" && l.Kind == badValue {
			if !strings.Contains(string(l.Row), `"payment_amount":"-5.00"`) || !strings.Contains(string(l.Row), `"payment_id":3`) {
				t.Errorf("rejected payment row %s, want source columns with money as a decimal", l.Row)
			}
		}
	}
	if errs := logs.records("ERROR", "rows rejected"); len(errs) != 1 || errs[0]["error_kind"] != string(errkind.BadRowsRejected) || errs[0]["rejected"] != float64(8) {
		t.Errorf("ERROR log lines %v, want one with error_kind bad_rows_rejected", errs)
	}
	warns := logs.records("WARN", "currency code is not a current ISO 4217 code; its name is the code")
	if len(warns) != 1 || warns[0]["currency_code"] != "ZZZ" {
		t.Errorf("WARN log lines %v", warns)
	}
	cur := rowsOf[star.DimCurrency](t, proc, 1, "dim_currency")
	if last := cur[len(cur)-1]; last != (star.DimCurrency{CurrencyID: 4, CurrencyCode: "ZZZ", CurrencyName: "ZZZ"}) {
		t.Errorf("unknown currency row %+v", last)
	}
	if so := rowsOf[star.FactSalesOrder](t, proc, 1, "fact_sales_order"); len(so) != 1 || so[0].SalesOrderID != 1 {
		t.Errorf("batch 1 fact_sales_order %+v, want only order 1", so)
	}
	for _, c := range rowsOf[star.DimCounterparty](t, proc, 1, "dim_counterparty") {
		if c.CounterpartyID == 4 {
			t.Error("counterparty 4 emitted without its address")
		}
	}

	// Batch 2 brings design 7 and address 5; batch 3 transaction 9.
	putBatch(t, ingest, 2, sourceRows{
		Design:  []totesys.Design{{DesignID: 7, DesignName: "Late", FileLocation: "/x", FileName: "late.json", CreatedAt: t0.Add(time.Hour), LastUpdated: t0.Add(time.Hour)}},
		Address: []totesys.Address{{AddressID: 5, AddressLine1: "5 Far Rd", City: "York", PostalCode: "Y1", Country: "United Kingdom", Phone: "01904", CreatedAt: t0, LastUpdated: t0.Add(time.Hour)}},
	})
	putBatch(t, ingest, 3, sourceRows{
		Transaction: []totesys.Transaction{{TransactionID: 9, TransactionType: "SALE", SalesOrderID: ptr[int32](1), CreatedAt: t0, LastUpdated: t0.Add(2 * time.Hour)}},
	})
	res = run(t, ingest, proc)
	if len(res.Batches) != 2 {
		t.Fatalf("batches %+v", res.Batches)
	}
	b2, b3 := res.Batches[0], res.Batches[1]
	if b2.Rejected != 0 || b2.Released != 3 || b2.Parked != 1 {
		t.Errorf("batch 2: rejected %d released %d parked %d; want 0, 3 (order 3, counterparty 4, order 4), 1", b2.Rejected, b2.Released, b2.Parked)
	}
	if m := processed(t, proc, 2); m.Released != 3 || m.Rejects != nil {
		t.Errorf("batch 2 manifest released %d rejects %+v", m.Released, m.Rejects)
	}
	so := rowsOf[star.FactSalesOrder](t, proc, 2, "fact_sales_order")
	if len(so) != 2 || so[0].SalesOrderID != 3 || so[0].DesignID != 7 || so[1].SalesOrderID != 4 || so[1].CounterpartyID != 4 {
		t.Errorf("batch 2 fact_sales_order %+v, want the released orders 3 and 4", so)
	}
	if cps := rowsOf[star.DimCounterparty](t, proc, 2, "dim_counterparty"); len(cps) != 1 || cps[0].CounterpartyID != 4 || cps[0].CounterpartyLegalCity != "York" {
		t.Errorf("batch 2 dim_counterparty %+v, want counterparty 4 at address 5", cps)
	}
	var dates []star.Date
	for _, d := range rowsOf[star.DimDate](t, proc, 2, "dim_date") {
		dates = append(dates, d.DateID)
	}
	if !slices.Equal(dates, []star.Date{day("2024-02-29"), day("2024-03-02"), day("2024-03-03")}) {
		t.Errorf("batch 2 dim_date %v, want the released orders' dates", dates)
	}
	if b3.Released != 1 || b3.Parked != 0 {
		t.Errorf("batch 3: released %d parked %d; want 1, 0", b3.Released, b3.Parked)
	}
	if p := rowsOf[star.FactPayment](t, proc, 3, "fact_payment"); len(p) != 1 || p[0].PaymentID != 2 || p[0].TransactionID != 9 {
		t.Errorf("batch 3 fact_payment %+v", p)
	}
}

func TestParkedStaff(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Staff = append(w.Staff, totesys.Staff{StaffID: 3, FirstName: "Cy", LastName: "Dee", DepartmentID: 9, EmailAddress: "cy@example.com", CreatedAt: t0, LastUpdated: t0})
	w.PurchaseOrder[0].StaffID = 3
	putBatch(t, ingest, 1, w)
	putBatch(t, ingest, 2, sourceRows{Department: []totesys.Department{{DepartmentID: 9, DepartmentName: "HR", Location: ptr("Leeds"), CreatedAt: t0, LastUpdated: t0}}})
	res := run(t, ingest, proc)
	if res.Batches[0].Rejected != 2 || res.Batches[1].Released != 2 {
		t.Fatalf("batches %+v", res.Batches)
	}
	if s := rowsOf[star.DimStaff](t, proc, 2, "dim_staff"); len(s) != 1 || s[0].StaffID != 3 || s[0].DepartmentName != "HR" {
		t.Errorf("batch 2 dim_staff %+v", s)
	}
	if p := rowsOf[star.FactPurchaseOrder](t, proc, 2, "fact_purchase_order"); len(p) != 1 || p[0].StaffID != 3 {
		t.Errorf("batch 2 fact_purchase_order %+v", p)
	}
}

func TestDuplicateVersionsInBatch(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Design = append(w.Design,
		totesys.Design{DesignID: 1, DesignName: "Wooden v3", FileLocation: "/usr", FileName: "w3.json", CreatedAt: t0, LastUpdated: t0.Add(2 * time.Hour)},
		totesys.Design{DesignID: 1, DesignName: "Wooden v2", FileLocation: "/usr", FileName: "w2.json", CreatedAt: t0, LastUpdated: t0.Add(time.Hour)},
		totesys.Design{DesignID: 1, DesignName: "Wooden v3 again", FileLocation: "/usr", FileName: "w3.json", CreatedAt: t0, LastUpdated: t0.Add(2 * time.Hour)},
		totesys.Design{DesignID: 2, DesignName: "Steel", FileLocation: "/usr", FileName: "s.json", CreatedAt: t0, LastUpdated: t0},
	)
	w.Address = append(w.Address, totesys.Address{AddressID: 2, AddressLine1: "2 Low Rd v2", City: "Leeds", PostalCode: "LS1", Country: "UK", Phone: "1", CreatedAt: t0, LastUpdated: t0.Add(time.Hour)})
	putBatch(t, ingest, 1, w)
	run(t, ingest, proc)
	got := rowsOf[star.DimDesign](t, proc, 1, "dim_design")
	if len(got) != 2 || got[0].DesignName != "Wooden v3" || got[1].DesignID != 2 {
		t.Errorf("dim_design %+v, want one row per id, the newest", got)
	}
	loc := rowsOf[star.DimLocation](t, proc, 1, "dim_location")
	if len(loc) != 2 || loc[1].AddressLine1 != "2 Low Rd v2" {
		t.Errorf("dim_location %+v", loc)
	}
}

func TestIdempotentRerun(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	if res := run(t, ingest, proc); len(res.Batches) != 1 {
		t.Fatalf("first run %+v", res)
	}
	before, _ := proc.List(context.Background(), "", "")
	if res := run(t, ingest, proc); len(res.Batches) != 0 || res.Conflict {
		t.Fatalf("second run %+v, want nothing done", res)
	}
	after, _ := proc.List(context.Background(), "", "")
	if !slices.Equal(before, after) {
		t.Fatalf("second run wrote objects: %v", after)
	}
	// A new ingest batch is picked up from where the first run stopped.
	putBatch(t, ingest, 2, sourceRows{Design: []totesys.Design{{DesignID: 5, DesignName: "New", FileLocation: "/", FileName: "n", CreatedAt: t0, LastUpdated: t0}}})
	if res := run(t, ingest, proc); len(res.Batches) != 1 || res.Batches[0].Sequence != 2 {
		t.Fatalf("third run %+v", res)
	}
}

func TestConcurrentRuns(t *testing.T) {
	ingest, proc := buckets(t)
	const n = 6
	for seq := int64(1); seq <= n; seq++ {
		w := world()
		if seq > 1 { // each later batch: a new version of every sales order and payment
			w = sourceRows{SalesOrder: world().SalesOrder, Payment: world().Payment}
			w.SalesOrder[0].LastUpdated = t0.Add(time.Duration(seq) * time.Hour)
			w.Payment[0].LastUpdated = t0.Add(time.Duration(seq) * time.Hour)
		}
		putBatch(t, ingest, seq, w)
	}
	var wg sync.WaitGroup
	results := make([]Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(context.Background(), Options{Ingest: ingest, Processed: proc})
		}()
	}
	wg.Wait()
	// Runs that lost a race stopped; a final run finishes what is left.
	final := run(t, ingest, proc)
	seen := map[int64]int{}
	for i, r := range append(results, final) {
		if i < len(errs) && errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		for _, b := range r.Batches {
			seen[b.Sequence]++
		}
	}
	for seq := int64(1); seq <= n; seq++ {
		if seen[seq] != 1 {
			t.Errorf("batch %d committed by %d runs, want exactly 1", seq, seen[seq])
		}
	}
	if got := allRowsOf[star.FactSalesOrder](t, proc, n, "fact_sales_order"); len(got) != n {
		t.Errorf("fact_sales_order holds %d rows, want %d (one per version)", len(got), n)
	}
	keys, _ := proc.List(context.Background(), lake.ManifestPrefix, "")
	if len(keys) != n {
		t.Errorf("%d manifests: %v", len(keys), keys)
	}
}

func TestDeadline(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	putBatch(t, ingest, 2, sourceRows{Design: []totesys.Design{{DesignID: 5, DesignName: "New", FileLocation: "/", FileName: "n", CreatedAt: t0, LastUpdated: t0}}})
	res, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Deadline: time.Now().Add(-time.Second)})
	if err != nil || len(res.Batches) != 0 || !res.DeadlineReached {
		t.Fatalf("past deadline: %+v %v, want no batch", res, err)
	}
	res, err = Run(context.Background(), Options{Ingest: ingest, Processed: proc, Deadline: time.Now().Add(time.Hour)})
	if err != nil || len(res.Batches) != 2 || res.DeadlineReached {
		t.Fatalf("future deadline: %+v %v", res, err)
	}
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no buckets", func(t *testing.T) {
		_, err := Run(ctx, Options{})
		if errkind.Of(err) != errkind.ConfigInvalid {
			t.Fatalf("err %v, kind %s", err, errkind.Of(err))
		}
	})
	t.Run("gap in the ingest batches", func(t *testing.T) {
		ingest, proc := buckets(t)
		putBatch(t, ingest, 1, world())
		putBatch(t, ingest, 3, world())
		res, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
		if err == nil || !strings.Contains(err.Error(), "ingest batch 000000000002 is missing") || len(res.Batches) != 1 {
			t.Fatalf("res %+v err %v", res, err)
		}
	})
	t.Run("not an ingest manifest", func(t *testing.T) {
		ingest, proc := buckets(t)
		if err := ingest.PutManifest(ctx, 1, &lake.Manifest{Stage: "transform", Sequence: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
		if errkind.Of(err) != errkind.ConfigInvalid {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("object is not Parquet", func(t *testing.T) {
		ingest, proc := buckets(t)
		if err := ingest.Put(ctx, "design/x.parquet", []byte("not parquet")); err != nil {
			t.Fatal(err)
		}
		if err := ingest.PutManifest(ctx, 1, &lake.Manifest{Stage: "ingest", Sequence: 1, Tables: []lake.Object{{Table: "design", Key: "design/x.parquet"}}}); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
		if errkind.Of(err) != errkind.BucketReadFailed {
			t.Fatalf("err %v kind %s", err, errkind.Of(err))
		}
		if keys, _ := proc.List(ctx, lake.ManifestPrefix, ""); len(keys) != 0 {
			t.Fatalf("a failed batch left a manifest: %v", keys)
		}
	})
	t.Run("object missing", func(t *testing.T) {
		ingest, proc := buckets(t)
		if err := ingest.PutManifest(ctx, 1, &lake.Manifest{Stage: "ingest", Sequence: 1, Tables: []lake.Object{{Table: "sales_order", Key: "sales_order/gone.parquet"}}}); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
		if errkind.Of(err) != errkind.BucketReadFailed || !errors.Is(err, lake.ErrNotFound) {
			t.Fatalf("err %v kind %s", err, errkind.Of(err))
		}
	})
	t.Run("processed state missing", func(t *testing.T) {
		ingest, proc := buckets(t)
		putBatch(t, ingest, 1, world())
		putBatch(t, ingest, 2, world())
		if err := proc.PutManifest(ctx, 1, &lake.Manifest{Stage: "transform", Sequence: 1, StateKey: "state/none.json.gz"}); err != nil {
			t.Fatal(err)
		}
		_, err := Run(ctx, Options{Ingest: ingest, Processed: proc})
		if errkind.Of(err) != errkind.BucketReadFailed {
			t.Fatalf("err %v kind %s", err, errkind.Of(err))
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ingest, proc := buckets(t)
		putBatch(t, ingest, 1, world())
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Run(cctx, Options{Ingest: ingest, Processed: proc}); err == nil {
			t.Fatal("a canceled run succeeded")
		}
		if res := run(t, ingest, proc); len(res.Batches) != 1 {
			t.Fatalf("rerun %+v", res)
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	st := newState()
	st.Sequence = 7
	st.Addresses[1] = &totesys.Address{AddressID: 1, City: "Bath", LastUpdated: t0}
	st.Counterparties[2] = &heldCounterparty{Row: totesys.Counterparty{CounterpartyID: 2, LegalAddressID: 1}, Loaded: true}
	for _, id := range []int32{1, 2, 3, 1_000_000, 2_000_000_000} {
		st.Transactions.add(id)
	}
	st.Parked = []parkedRow{{Table: "sales_order", Since: 3, Reason: "r", Row: []byte(`{"SalesOrderID":5}`)}}
	data, err := st.encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, _ := lake.Open(ctx, "mem://")
	if err := b.Put(ctx, "state/x", data); err != nil {
		t.Fatal(err)
	}
	if err := b.PutManifest(ctx, 7, &lake.Manifest{Sequence: 7, StateKey: "state/x"}); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(ctx, b, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sequence != 7 || got.Addresses[1].City != "Bath" || !got.counterpartyLoaded(2) || got.counterpartyLoaded(3) ||
		!got.Transactions.has(2_000_000_000) || got.Transactions.has(4) || got.Transactions.len() != 5 ||
		got.Designs == nil || len(got.Parked) != 1 || string(got.Parked[0].Row) != `{"SalesOrderID":5}` {
		t.Fatalf("state after round trip %+v", got)
	}
	// A million ids in sequence take a few bytes, not a megabyte.
	for id := int32(1); id <= 1_000_000; id++ {
		st.Transactions.add(id)
	}
	if data, _ := st.encode(); len(data) > 4096 {
		t.Errorf("state with 1M transaction ids is %d bytes", len(data))
	}
}

func TestLoadStateErrors(t *testing.T) {
	ctx := context.Background()
	for name, data := range map[string][]byte{
		"not gzip":     []byte("{}"),
		"not json":     gzipped(t, "nonsense"),
		"version":      mustEncode(t, &state{Version: 99}),
		"bad bitmap":   gzipped(t, `{"version":1,"designs":"AAAA"}`),
		"no state key": nil,
	} {
		t.Run(name, func(t *testing.T) {
			b, err := lake.Open(ctx, "file://"+t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			m := lake.Manifest{Sequence: 1}
			if data != nil {
				m.StateKey = "state/x"
				if err := b.Put(ctx, m.StateKey, data); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.PutManifest(ctx, 1, &m); err != nil {
				t.Fatal(err)
			}
			if _, err := loadState(ctx, b, 1); err == nil {
				t.Fatal("loaded a bad state")
			}
		})
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustEncode(t *testing.T, s *state) []byte {
	t.Helper()
	data, err := s.encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestFormatCents(t *testing.T) {
	for in, want := range map[int64]string{0: "0.00", 394: "3.94", 5: "0.05", -500: "-5.00", 55254862: "552548.62", -1: "-0.01"} {
		if got := formatCents(in); got != want {
			t.Errorf("formatCents(%d) = %s, want %s", in, got, want)
		}
	}
}
