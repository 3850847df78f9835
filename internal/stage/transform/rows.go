package transform

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// rejectKind tells why a row was rejected, and so whether it is parked.
type rejectKind string

const (
	// badValue rejects are final: the row as it stands can never load.
	badValue rejectKind = "bad_value"
	// missingRef rejects are parked until the row they refer to arrives.
	missingRef rejectKind = "missing_reference"
)

// problem is why one source row cannot become a star row.
type problem struct {
	kind   rejectKind
	reason string
}

func bad(format string, args ...any) *problem {
	return &problem{badValue, fmt.Sprintf(format, args...)}
}

func missing(format string, args ...any) *problem {
	return &problem{missingRef, fmt.Sprintf(format, args...)}
}

// maxCents bounds DECIMAL(10,2): 99,999,999.99.
const maxCents = 9_999_999_999

// unknownLocation stands for a department without a location.
const unknownLocation = "Unknown"

func positive(column string, v int32) *problem {
	if v <= 0 {
		return bad("%s %d is not a positive id", column, v)
	}
	return nil
}

func money(column string, cents int64) *problem {
	if cents <= 0 {
		return bad("%s %s is not positive", column, formatCents(cents))
	}
	if cents > maxCents {
		return bad("%s %s is out of range for DECIMAL(10,2)", column, formatCents(cents))
	}
	return nil
}

func quantity(column string, v int32) *problem {
	if v <= 0 {
		return bad("%s %d is not positive", column, v)
	}
	return nil
}

// Timestamps outside years 0001 to 9999 are what Parquet readers, Go's
// JSON and the warehouse's dim_date cannot hold; ingest writes PostgreSQL's
// infinity and -infinity (and stamps too far out to count in µs) as the
// largest and smallest int64 µs.
var (
	infinity    = time.UnixMicro(math.MaxInt64).UTC()
	negInfinity = time.UnixMicro(math.MinInt64).UTC()
	firstStamp  = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	endStamp    = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// stamp checks that a created_at or last_updated lies within years 0001
// to 9999. Every table's rows pass it.
func stamp(column string, t time.Time) *problem {
	switch {
	case t.Equal(infinity):
		return bad("%s is infinity", column)
	case t.Equal(negInfinity):
		return bad("%s is -infinity", column)
	case t.Before(firstStamp) || !t.Before(endStamp):
		return bad("%s %s is outside 0001-9999", column, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// stampsHeld checks a row's created_at and last_updated with stamp.
func stampsHeld(created, updated time.Time) *problem {
	return firstProblem(stamp("created_at", created), stamp("last_updated", updated))
}

// stamps checks a fact row's timestamps: held, and not updated before
// being created.
func stamps(created, updated time.Time) *problem {
	if p := stampsHeld(created, updated); p != nil {
		return p
	}
	if updated.Before(created) {
		return bad("last_updated %s is before created_at %s", updated.UTC().Format(time.RFC3339Nano), created.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// formatCents prints a count of cents as a decimal, e.g. -1234 as -12.34.
func formatCents(c int64) string {
	sign := ""
	u := uint64(c) // #nosec G115 -- two's complement negation below
	if c < 0 {
		sign, u = "-", -u
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}

// parseDate parses a text date, strictly YYYY-MM-DD, into a star.Date.
func parseDate(s string) (star.Date, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || y < 1 || m < 1 || m > 12 || d < 1 {
		return 0, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d { // 2023-02-29 rolls over into March
		return 0, false
	}
	return star.Date(t.Unix() / 86400), true // #nosec G115 -- four-digit years fit
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func textDate(column, s string) (star.Date, *problem) {
	d, ok := parseDate(s)
	if !ok {
		return 0, bad("%s %q is not a YYYY-MM-DD date", column, s)
	}
	return d, nil
}

// dimDate is the dim_date row of d.
func dimDate(d star.Date) star.DimDate {
	t := star.DateTime(d, 0)
	wd := int32(t.Weekday()) // #nosec G115 -- 0..6
	if wd == 0 {
		wd = 7 // ISO: Sunday is 7
	}
	return star.DimDate{
		DateID:    d,
		Year:      int32(t.Year()),  // #nosec G115 -- years fit
		Month:     int32(t.Month()), // #nosec G115 -- 1..12
		Day:       int32(t.Day()),   // #nosec G115 -- 1..31
		DayOfWeek: wd,
		DayName:   t.Weekday().String(),
		MonthName: t.Month().String(),
		Quarter:   int32((t.Month()-1)/3 + 1), // #nosec G115 -- 1..4
	}
}

// dateSet collects the dates the facts of a batch refer to.
type dateSet map[star.Date]struct{}

func (s dateSet) add(ds ...star.Date) {
	for _, d := range ds {
		s[d] = struct{}{}
	}
}

// rows returns the dim_date rows of the set, in date order.
func (s dateSet) rows() []star.DimDate {
	ds := make([]star.Date, 0, len(s))
	for d := range s {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	out := make([]star.DimDate, len(ds))
	for i, d := range ds {
		out[i] = dimDate(d)
	}
	return out
}

// Dimensions.

func dimLocation(a *totesys.Address) star.DimLocation {
	return star.DimLocation{
		LocationID: a.AddressID, AddressLine1: a.AddressLine1, AddressLine2: a.AddressLine2,
		District: a.District, City: a.City, PostalCode: a.PostalCode, Country: a.Country, Phone: a.Phone,
	}
}

func dimCounterparty(c *totesys.Counterparty, a *totesys.Address) star.DimCounterparty {
	return star.DimCounterparty{
		CounterpartyID:                c.CounterpartyID,
		CounterpartyLegalName:         c.CounterpartyLegalName,
		CounterpartyLegalAddressLine1: a.AddressLine1,
		CounterpartyLegalAddressLine2: a.AddressLine2,
		CounterpartyLegalDistrict:     a.District,
		CounterpartyLegalCity:         a.City,
		CounterpartyLegalPostalCode:   a.PostalCode,
		CounterpartyLegalCountry:      a.Country,
		CounterpartyLegalPhoneNumber:  a.Phone,
	}
}

func dimStaff(s *totesys.Staff, d *totesys.Department) star.DimStaff {
	loc := unknownLocation
	if d.Location != nil {
		loc = *d.Location
	}
	return star.DimStaff{
		StaffID: s.StaffID, FirstName: s.FirstName, LastName: s.LastName,
		DepartmentName: d.DepartmentName, Location: loc, EmailAddress: s.EmailAddress,
	}
}

// dimCurrency names the currency by its ISO 4217 code; known is false when
// the code is not one, and the name is then the code.
// The checks of the source rows the dimensions are made of: an id that is
// positive (and so is the parent's, for rows that join one), and stamps
// that a warehouse can hold. A row that fails one is rejected with the
// reason.

func checkAddress(a *totesys.Address) *problem {
	return firstProblem(positive("address_id", a.AddressID), stampsHeld(a.CreatedAt, a.LastUpdated))
}

func checkDepartment(d *totesys.Department) *problem {
	return firstProblem(positive("department_id", d.DepartmentID), stampsHeld(d.CreatedAt, d.LastUpdated))
}

func checkCounterparty(c *totesys.Counterparty) *problem {
	return firstProblem(positive("counterparty_id", c.CounterpartyID), positive("legal_address_id", c.LegalAddressID),
		stampsHeld(c.CreatedAt, c.LastUpdated))
}

func checkStaff(s *totesys.Staff) *problem {
	return firstProblem(positive("staff_id", s.StaffID), positive("department_id", s.DepartmentID),
		stampsHeld(s.CreatedAt, s.LastUpdated))
}

// dimCurrency is c's dim_currency row; known is false when its code is not
// a current ISO 4217 code (its name is then the code).
func dimCurrency(c *totesys.Currency) (row star.DimCurrency, known bool, p *problem) {
	if p := firstProblem(positive("currency_id", c.CurrencyID), stampsHeld(c.CreatedAt, c.LastUpdated)); p != nil {
		return star.DimCurrency{}, false, p
	}
	name, known := currencyName(c.CurrencyCode)
	if !known {
		name = c.CurrencyCode
	}
	return star.DimCurrency{CurrencyID: c.CurrencyID, CurrencyCode: c.CurrencyCode, CurrencyName: name}, known, nil
}

func dimDesign(d *totesys.Design) (star.DimDesign, *problem) {
	if p := firstProblem(positive("design_id", d.DesignID), stampsHeld(d.CreatedAt, d.LastUpdated)); p != nil {
		return star.DimDesign{}, p
	}
	return star.DimDesign{DesignID: d.DesignID, DesignName: d.DesignName, FileLocation: d.FileLocation, FileName: d.FileName}, nil
}

func dimPaymentType(p *totesys.PaymentType) (star.DimPaymentType, *problem) {
	if pr := firstProblem(positive("payment_type_id", p.PaymentTypeID), stampsHeld(p.CreatedAt, p.LastUpdated)); pr != nil {
		return star.DimPaymentType{}, pr
	}
	return star.DimPaymentType{PaymentTypeID: p.PaymentTypeID, PaymentTypeName: p.PaymentTypeName}, nil
}

func dimTransaction(t *totesys.Transaction) (star.DimTransaction, *problem) {
	if p := firstProblem(positive("transaction_id", t.TransactionID), stampsHeld(t.CreatedAt, t.LastUpdated)); p != nil {
		return star.DimTransaction{}, p
	}
	// An order id may be NULL: totesys sets it so when the order is
	// deleted (ON DELETE SET NULL), and that update is a version too.
	switch t.TransactionType {
	case "SALE":
		if t.SalesOrderID != nil && *t.SalesOrderID <= 0 || t.PurchaseOrderID != nil {
			return star.DimTransaction{}, bad("a SALE transaction needs a positive sales_order_id (or NULL, its order deleted) and no purchase_order_id")
		}
	case "PURCHASE":
		if t.PurchaseOrderID != nil && *t.PurchaseOrderID <= 0 || t.SalesOrderID != nil {
			return star.DimTransaction{}, bad("a PURCHASE transaction needs a positive purchase_order_id (or NULL, its order deleted) and no sales_order_id")
		}
	default:
		return star.DimTransaction{}, bad("transaction_type %q is neither SALE nor PURCHASE", t.TransactionType)
	}
	return star.DimTransaction{TransactionID: t.TransactionID, TransactionType: t.TransactionType,
		SalesOrderID: t.SalesOrderID, PurchaseOrderID: t.PurchaseOrderID}, nil
}

// Facts. Each checks the row's values first (a bad value is final), then
// that every dimension row it refers to is loaded (else it is parked), and
// only then records the dates it refers to.

// facts turns source rows into fact rows against the current state.
type facts struct {
	st    *state
	dates dateSet
}

func firstProblem(ps ...*problem) *problem {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func (f *facts) location(id int32) *problem {
	if _, ok := f.st.Addresses[id]; !ok {
		return missing("agreed_delivery_location_id %d: no such address yet", id)
	}
	return nil
}

func (f *facts) counterparty(id int32) *problem {
	if !f.st.counterpartyLoaded(id) {
		return missing("counterparty_id %d: not in dim_counterparty yet", id)
	}
	return nil
}

func (f *facts) staff(column string, id int32) *problem {
	if !f.st.staffLoaded(id) {
		return missing("%s %d: not in dim_staff yet", column, id)
	}
	return nil
}

func in(set *idSet, column string, id int32, table string) *problem {
	if !set.has(id) {
		return missing("%s %d: not in %s yet", column, id, table)
	}
	return nil
}

func (f *facts) salesOrder(r *totesys.SalesOrder) (star.FactSalesOrder, *problem) {
	delivery, p1 := textDate("agreed_delivery_date", r.AgreedDeliveryDate)
	payment, p2 := textDate("agreed_payment_date", r.AgreedPaymentDate)
	if p := firstProblem(positive("sales_order_id", r.SalesOrderID), stamps(r.CreatedAt, r.LastUpdated), p1, p2,
		quantity("units_sold", r.UnitsSold), money("unit_price", r.UnitPrice),
		positive("staff_id", r.StaffID), positive("counterparty_id", r.CounterpartyID),
		positive("currency_id", r.CurrencyID), positive("design_id", r.DesignID),
		positive("agreed_delivery_location_id", r.AgreedDeliveryLocationID)); p != nil {
		return star.FactSalesOrder{}, p
	}
	if p := firstProblem(f.staff("staff_id", r.StaffID), f.counterparty(r.CounterpartyID),
		in(f.st.Currencies, "currency_id", r.CurrencyID, "dim_currency"),
		in(f.st.Designs, "design_id", r.DesignID, "dim_design"),
		f.location(r.AgreedDeliveryLocationID)); p != nil {
		return star.FactSalesOrder{}, p
	}
	row := star.FactSalesOrder{
		SalesOrderID: r.SalesOrderID,
		CreatedDate:  star.DateOf(r.CreatedAt), CreatedTime: star.TimeOf(r.CreatedAt),
		LastUpdatedDate: star.DateOf(r.LastUpdated), LastUpdatedTime: star.TimeOf(r.LastUpdated),
		SalesStaffID: r.StaffID, CounterpartyID: r.CounterpartyID,
		UnitsSold: r.UnitsSold, UnitPrice: r.UnitPrice, CurrencyID: r.CurrencyID, DesignID: r.DesignID,
		AgreedPaymentDate: payment, AgreedDeliveryDate: delivery,
		AgreedDeliveryLocationID: r.AgreedDeliveryLocationID,
	}
	f.dates.add(row.CreatedDate, row.LastUpdatedDate, delivery, payment)
	return row, nil
}

func (f *facts) purchaseOrder(r *totesys.PurchaseOrder) (star.FactPurchaseOrder, *problem) {
	delivery, p1 := textDate("agreed_delivery_date", r.AgreedDeliveryDate)
	payment, p2 := textDate("agreed_payment_date", r.AgreedPaymentDate)
	if p := firstProblem(positive("purchase_order_id", r.PurchaseOrderID), stamps(r.CreatedAt, r.LastUpdated), p1, p2,
		quantity("item_quantity", r.ItemQuantity), money("item_unit_price", r.ItemUnitPrice),
		positive("staff_id", r.StaffID), positive("counterparty_id", r.CounterpartyID),
		positive("currency_id", r.CurrencyID),
		positive("agreed_delivery_location_id", r.AgreedDeliveryLocationID)); p != nil {
		return star.FactPurchaseOrder{}, p
	}
	if p := firstProblem(f.staff("staff_id", r.StaffID), f.counterparty(r.CounterpartyID),
		in(f.st.Currencies, "currency_id", r.CurrencyID, "dim_currency"),
		f.location(r.AgreedDeliveryLocationID)); p != nil {
		return star.FactPurchaseOrder{}, p
	}
	row := star.FactPurchaseOrder{
		PurchaseOrderID: r.PurchaseOrderID,
		CreatedDate:     star.DateOf(r.CreatedAt), CreatedTime: star.TimeOf(r.CreatedAt),
		LastUpdatedDate: star.DateOf(r.LastUpdated), LastUpdatedTime: star.TimeOf(r.LastUpdated),
		StaffID: r.StaffID, CounterpartyID: r.CounterpartyID,
		ItemCode: r.ItemCode, ItemQuantity: r.ItemQuantity, ItemUnitPrice: r.ItemUnitPrice,
		CurrencyID: r.CurrencyID, AgreedDeliveryDate: delivery, AgreedPaymentDate: payment,
		AgreedDeliveryLocationID: r.AgreedDeliveryLocationID,
	}
	f.dates.add(row.CreatedDate, row.LastUpdatedDate, delivery, payment)
	return row, nil
}

func (f *facts) payment(r *totesys.Payment) (star.FactPayment, *problem) {
	paid, p1 := textDate("payment_date", r.PaymentDate)
	if p := firstProblem(positive("payment_id", r.PaymentID), stamps(r.CreatedAt, r.LastUpdated), p1,
		money("payment_amount", r.PaymentAmount),
		positive("transaction_id", r.TransactionID), positive("counterparty_id", r.CounterpartyID),
		positive("currency_id", r.CurrencyID), positive("payment_type_id", r.PaymentTypeID)); p != nil {
		return star.FactPayment{}, p
	}
	if p := firstProblem(in(f.st.Transactions, "transaction_id", r.TransactionID, "dim_transaction"),
		f.counterparty(r.CounterpartyID),
		in(f.st.Currencies, "currency_id", r.CurrencyID, "dim_currency"),
		in(f.st.PaymentTypes, "payment_type_id", r.PaymentTypeID, "dim_payment_type")); p != nil {
		return star.FactPayment{}, p
	}
	row := star.FactPayment{
		PaymentID:   r.PaymentID,
		CreatedDate: star.DateOf(r.CreatedAt), CreatedTime: star.TimeOf(r.CreatedAt),
		LastUpdatedDate: star.DateOf(r.LastUpdated), LastUpdated: star.TimeOf(r.LastUpdated),
		TransactionID: r.TransactionID, CounterpartyID: r.CounterpartyID,
		PaymentAmount: r.PaymentAmount, CurrencyID: r.CurrencyID, PaymentTypeID: r.PaymentTypeID,
		Paid: r.Paid, PaymentDate: paid,
	}
	f.dates.add(row.CreatedDate, row.LastUpdatedDate, paid)
	return row, nil
}
