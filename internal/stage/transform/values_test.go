package transform

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// knownState holds every row world() has.
func knownState() *state {
	st := newState()
	w := world()
	for i := range w.Address {
		st.Addresses[w.Address[i].AddressID] = &w.Address[i]
	}
	for _, c := range w.Counterparty {
		st.Counterparties[c.CounterpartyID] = &heldCounterparty{Row: c, Loaded: true}
	}
	for _, s := range w.Staff {
		st.Staff[s.StaffID] = &heldStaff{Row: s, Loaded: true}
	}
	st.Currencies.add(1)
	st.Currencies.add(2)
	st.Designs.add(1)
	st.PaymentTypes.add(1)
	st.Transactions.add(1)
	return st
}

func TestFactValues(t *testing.T) {
	so := func(f func(*totesys.SalesOrder)) func(*facts) *problem {
		return func(fx *facts) *problem {
			r := world().SalesOrder[0]
			f(&r)
			_, p := fx.salesOrder(&r)
			return p
		}
	}
	po := func(f func(*totesys.PurchaseOrder)) func(*facts) *problem {
		return func(fx *facts) *problem {
			r := world().PurchaseOrder[0]
			f(&r)
			_, p := fx.purchaseOrder(&r)
			return p
		}
	}
	pay := func(f func(*totesys.Payment)) func(*facts) *problem {
		return func(fx *facts) *problem {
			r := world().Payment[0]
			f(&r)
			_, p := fx.payment(&r)
			return p
		}
	}
	tests := []struct {
		name   string
		row    func(*facts) *problem
		kind   rejectKind // "" for none
		reason string
	}{
		{"sales order ok", so(func(*totesys.SalesOrder) {}), "", ""},
		{"sales order id zero", so(func(r *totesys.SalesOrder) { r.SalesOrderID = 0 }), badValue, "sales_order_id 0 is not a positive id"},
		{"updated before created", so(func(r *totesys.SalesOrder) { r.LastUpdated = r.CreatedAt.Add(-time.Millisecond) }), badValue, "is before created_at"},
		{"delivery date", so(func(r *totesys.SalesOrder) { r.AgreedDeliveryDate = "07/11/2022" }), badValue, `agreed_delivery_date "07/11/2022" is not a YYYY-MM-DD date`},
		{"payment date", so(func(r *totesys.SalesOrder) { r.AgreedPaymentDate = "" }), badValue, `agreed_payment_date ""`},
		{"units zero", so(func(r *totesys.SalesOrder) { r.UnitsSold = 0 }), badValue, "units_sold 0 is not positive"},
		{"price negative", so(func(r *totesys.SalesOrder) { r.UnitPrice = -1 }), badValue, "unit_price -0.01 is not positive"},
		{"price too big", so(func(r *totesys.SalesOrder) { r.UnitPrice = maxCents + 1 }), badValue, "unit_price 100000000.00 is out of range for DECIMAL(10,2)"},
		{"staff id negative", so(func(r *totesys.SalesOrder) { r.StaffID = -3 }), badValue, "staff_id -3 is not a positive id"},
		{"bad value wins over missing reference", so(func(r *totesys.SalesOrder) { r.DesignID = 99; r.UnitsSold = -1 }), badValue, "units_sold"},
		{"unknown staff", so(func(r *totesys.SalesOrder) { r.StaffID = 99 }), missingRef, "staff_id 99: not in dim_staff yet"},
		{"unknown counterparty", so(func(r *totesys.SalesOrder) { r.CounterpartyID = 99 }), missingRef, "counterparty_id 99: not in dim_counterparty yet"},
		{"unknown currency", so(func(r *totesys.SalesOrder) { r.CurrencyID = 99 }), missingRef, "currency_id 99: not in dim_currency yet"},
		{"unknown design", so(func(r *totesys.SalesOrder) { r.DesignID = 99 }), missingRef, "design_id 99: not in dim_design yet"},
		{"unknown location", so(func(r *totesys.SalesOrder) { r.AgreedDeliveryLocationID = 99 }), missingRef, "agreed_delivery_location_id 99: no such address yet"},
		{"purchase order ok", po(func(*totesys.PurchaseOrder) {}), "", ""},
		{"quantity negative", po(func(r *totesys.PurchaseOrder) { r.ItemQuantity = -2 }), badValue, "item_quantity -2 is not positive"},
		{"item price zero", po(func(r *totesys.PurchaseOrder) { r.ItemUnitPrice = 0 }), badValue, "item_unit_price 0.00 is not positive"},
		{"purchase delivery date", po(func(r *totesys.PurchaseOrder) { r.AgreedDeliveryDate = "2022-02-30" }), badValue, "agreed_delivery_date"},
		{"purchase location zero", po(func(r *totesys.PurchaseOrder) { r.AgreedDeliveryLocationID = 0 }), badValue, "agreed_delivery_location_id 0"},
		{"purchase unknown staff", po(func(r *totesys.PurchaseOrder) { r.StaffID = 42 }), missingRef, "staff_id 42"},
		{"payment ok", pay(func(*totesys.Payment) {}), "", ""},
		{"payment date", pay(func(r *totesys.Payment) { r.PaymentDate = "2022-11-4" }), badValue, "payment_date"},
		{"payment amount zero", pay(func(r *totesys.Payment) { r.PaymentAmount = 0 }), badValue, "payment_amount 0.00 is not positive"},
		{"payment type zero", pay(func(r *totesys.Payment) { r.PaymentTypeID = 0 }), badValue, "payment_type_id 0"},
		{"unknown transaction", pay(func(r *totesys.Payment) { r.TransactionID = 77 }), missingRef, "transaction_id 77: not in dim_transaction yet"},
		{"unknown payment type", pay(func(r *totesys.Payment) { r.PaymentTypeID = 77 }), missingRef, "payment_type_id 77: not in dim_payment_type yet"},
		{"payment unknown counterparty", pay(func(r *totesys.Payment) { r.CounterpartyID = 77 }), missingRef, "counterparty_id 77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &facts{st: knownState(), dates: dateSet{}}
			p := tt.row(fx)
			if tt.kind == "" {
				if p != nil {
					t.Fatalf("rejected: %+v", p)
				}
				if len(fx.dates) == 0 {
					t.Fatal("no dates recorded")
				}
				return
			}
			if p == nil || p.kind != tt.kind || !strings.Contains(p.reason, tt.reason) {
				t.Fatalf("problem %+v, want %s containing %q", p, tt.kind, tt.reason)
			}
			if len(fx.dates) != 0 {
				t.Fatalf("a rejected row recorded dates %v", fx.dates)
			}
		})
	}
}

func TestTransactionValues(t *testing.T) {
	tests := []struct {
		name     string
		tx       totesys.Transaction
		ok       bool
		contains string
	}{
		{"sale", totesys.Transaction{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](4)}, true, ""},
		{"purchase", totesys.Transaction{TransactionID: 1, TransactionType: "PURCHASE", PurchaseOrderID: ptr[int32](4)}, true, ""},
		{"sale whose order was deleted", totesys.Transaction{TransactionID: 1, TransactionType: "SALE"}, true, ""},
		{"sale of order 0", totesys.Transaction{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](0)}, false, "SALE transaction needs"},
		{"sale with a purchase order", totesys.Transaction{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](4), PurchaseOrderID: ptr[int32](4)}, false, "SALE"},
		{"purchase with sales order", totesys.Transaction{TransactionID: 1, TransactionType: "PURCHASE", SalesOrderID: ptr[int32](4)}, false, "PURCHASE transaction needs"},
		{"lower case type", totesys.Transaction{TransactionID: 1, TransactionType: "sale", SalesOrderID: ptr[int32](4)}, false, `transaction_type "sale" is neither`},
		{"id zero", totesys.Transaction{TransactionID: 0, TransactionType: "SALE", SalesOrderID: ptr[int32](4)}, false, "transaction_id 0"},
	}
	for _, tt := range tests {
		row, p := dimTransaction(&tt.tx)
		if tt.ok != (p == nil) || (p != nil && (p.kind != badValue || !strings.Contains(p.reason, tt.contains))) {
			t.Errorf("%s: problem %+v", tt.name, p)
		}
		if tt.ok && (row.TransactionID != tt.tx.TransactionID || row.TransactionType != tt.tx.TransactionType) {
			t.Errorf("%s: row %+v", tt.name, row)
		}
	}
}

// TestBadDimensionRows: dimension rows with impossible ids are rejected for
// good and change nothing.
func TestBadDimensionRows(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	putBatch(t, ingest, 2, sourceRows{
		Address:      []totesys.Address{{AddressID: 0, AddressLine1: "x", LastUpdated: t0}},
		Department:   []totesys.Department{{DepartmentID: -1, DepartmentName: "x", LastUpdated: t0}, {DepartmentID: 1, DepartmentName: "Old Sales", LastUpdated: t0.Add(-time.Hour)}},
		Counterparty: []totesys.Counterparty{{CounterpartyID: 5, LegalAddressID: 0, LastUpdated: t0}, {CounterpartyID: 1, CounterpartyLegalName: "Old", LegalAddressID: 1, LastUpdated: t0.Add(-time.Hour)}},
		Staff:        []totesys.Staff{{StaffID: 0, DepartmentID: 1, LastUpdated: t0}, {StaffID: 1, FirstName: "Old", DepartmentID: 1, LastUpdated: t0.Add(-time.Hour)}},
		Currency:     []totesys.Currency{{CurrencyID: 0, CurrencyCode: "GBP", LastUpdated: t0}},
		Design:       []totesys.Design{{DesignID: -4, LastUpdated: t0}},
		PaymentType:  []totesys.PaymentType{{PaymentTypeID: 0, LastUpdated: t0}},
		Transaction:  []totesys.Transaction{{TransactionID: -1, TransactionType: "SALE", SalesOrderID: ptr[int32](1), LastUpdated: t0}},
	})
	res := run(t, ingest, proc)
	if b := res.Batches[1]; b.Rejected != 8 || b.Parked != 0 || b.Total() != 0 {
		t.Fatalf("batch 2 %+v, want 8 rejects and no rows", b)
	}
	for _, l := range rejectsOf(t, proc, 2) {
		if l.Kind != badValue {
			t.Errorf("%s reject %s: %s", l.Table, l.Kind, l.Reason)
		}
	}
}

// TestParkedRowsFromState: a parked row that can no longer be valid is
// rejected for good; a parked row of a table transform does not know is an
// internal error.
func TestParkedRowsFromState(t *testing.T) {
	ingest, proc := buckets(t)
	putBatch(t, ingest, 1, world())
	ctx := context.Background()
	bad := world().SalesOrder[0]
	bad.AgreedPaymentDate = "never"
	row, _ := json.Marshal(bad)

	st := knownState()
	st.Parked = []parkedRow{{Table: "sales_order", Since: 0, Reason: "old", Row: row}}
	b := newBatch(ctx, Options{Ingest: ingest, Processed: proc}, discard(), "r", 1, st)
	if err := b.retryParked(nil); err != nil {
		t.Fatal(err)
	}
	if b.res.Rejected != 1 || b.res.Released != 0 || len(st.Parked) != 0 {
		t.Fatalf("result %+v, parked %d", b.res, len(st.Parked))
	}
	b.out.abort()

	for _, p := range []parkedRow{{Table: "design", Row: row}, {Table: "payment", Row: []byte("[")}} {
		st.Parked = []parkedRow{p}
		b = newBatch(ctx, Options{Ingest: ingest, Processed: proc}, discard(), "r", 1, st)
		if err := b.retryParked(nil); errkind.Of(err) != errkind.Internal {
			t.Errorf("parked %s row: err %v", p.Table, err)
		}
		b.out.abort()
	}
}

func TestStateFill(t *testing.T) {
	s := &state{Version: stateVersion}
	s.fill()
	if s.Addresses == nil || s.Departments == nil || s.Counterparties == nil || s.Staff == nil ||
		s.Currencies == nil || s.Designs == nil || s.PaymentTypes == nil || s.Transactions == nil {
		t.Fatalf("fill left a nil: %+v", s)
	}
	if s.staffLoaded(1) || s.counterpartyLoaded(1) || s.Designs.has(0) || s.Designs.has(-1) {
		t.Fatal("an empty state knows something")
	}
	var empty idSet
	if err := json.Unmarshal([]byte(`""`), &empty); err != nil || empty.len() != 0 {
		t.Fatalf("empty set: %v", err)
	}
	if err := json.Unmarshal([]byte(`12`), &empty); err == nil {
		t.Fatal("decoded a number as a set")
	}
}

func TestSourceJSON(t *testing.T) {
	a := totesys.Address{AddressID: 3, AddressLine1: `1 "Quoted" St`, District: ptr("Avon"), CreatedAt: ts("2022-11-03 14:20:49.962"), LastUpdated: ts("2022-11-03 14:20:49.962")}
	got := string(sourceJSON(&a))
	want := `{"address_id":3,"address_line_1":"1 \"Quoted\" St","address_line_2":null,"district":"Avon","city":"","postal_code":"","country":"","phone":"","created_at":"2022-11-03 14:20:49.962","last_updated":"2022-11-03 14:20:49.962"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(sourceJSON(world().SalesOrder[0])), &m); err != nil || m["unit_price"] != "3.94" {
		t.Fatalf("sales order JSON %v %v", m, err)
	}
}

func TestParseCurrenciesRejectsBadCSV(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a malformed list was accepted")
		}
	}()
	parseCurrencies("code,name\n\"GBP,Pound\n")
}
