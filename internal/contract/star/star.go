// Package star is the star schema that transform writes and load reads: one
// row type per warehouse table, as the processed bucket's Parquet holds it.
//
// Each table is declared once, by its row type: the parquet tag of each
// field names a column and gives its Parquet type, a pointer field is a
// nullable column, and the star tag marks the key ("key") and the
// dimension a column refers to ("ref=dim_staff"). Tables lists the tables
// and derives everything else from those types when the program starts;
// internal/stage/warehouse derives its tables, their DDL checks and COPY feeds
// from Tables in turn.
//
// The field's Go type and the tag's logical type name the column's Type,
// registered once in Types with all the type decides: its warehouse
// column, COPY form, text form and Glue type. Dates are days since
// 1970-01-01 (Parquet DATE), times of day are milliseconds since midnight
// (Parquet TIME(MILLIS)), money is DECIMAL(10,2) held as an integer count
// of cents.
package star

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Table describes one warehouse table.
type Table struct {
	Name string
	// Dimension tables hold the latest value of each key; fact tables
	// append one row per source row version.
	Dimension bool
	// Calendar marks dim_date, the dimension whose rows follow from their
	// key alone: rows are only ever added, never updated.
	Calendar bool
	// Key is the dimension's primary key, or the fact's natural key: the
	// source id and the last-updated date and time of the version. It is
	// the columns tagged star:"key", in field order.
	Key []string
	// Serial is a fact's id column, which the warehouse assigns and the
	// rows do not carry ("" for a dimension).
	Serial string
	// Row is the table's row type.
	Row reflect.Type
	// Columns are the columns of Row's fields, in field order.
	Columns []Column
}

// Column is one column of a star table, as its row type's field declares it.
type Column struct {
	Name string
	// Type is the column's type, looked up in Types by its field's Go
	// type and its parquet tag's logical type.
	Type *Type
	// Nullable columns have a pointer field (and the parquet tag "optional").
	Nullable bool
	// Ref is the dimension whose key the column refers to ("" for none).
	Ref string
	// Field is the index of the column's field in the row type.
	Field int
}

// Column returns the column called name.
func (t Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Lookup returns the table called name.
func Lookup(name string) (Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// TableOf is the table whose row type is T. A T of no table is a
// programming error: it panics.
func TableOf[T any]() Table {
	for _, t := range Tables {
		if t.Row == reflect.TypeFor[T]() {
			return t
		}
	}
	panic(fmt.Sprintf("star: no table of %s", reflect.TypeFor[T]()))
}

// Tables lists the warehouse tables, dimensions first (load order).
var Tables = mustTables(
	calendar[DimDate]("dim_date"),
	dimension[DimStaff]("dim_staff"),
	dimension[DimLocation]("dim_location"),
	dimension[DimCurrency]("dim_currency"),
	dimension[DimDesign]("dim_design"),
	dimension[DimCounterparty]("dim_counterparty"),
	dimension[DimPaymentType]("dim_payment_type"),
	dimension[DimTransaction]("dim_transaction"),
	fact[FactSalesOrder]("fact_sales_order", "sales_record_id"),
	fact[FactPurchaseOrder]("fact_purchase_order", "purchase_record_id"),
	fact[FactPayment]("fact_payment", "payment_record_id"),
)

func dimension[T any](name string) Table {
	return Table{Name: name, Dimension: true, Row: reflect.TypeFor[T]()}
}

func calendar[T any](name string) Table {
	t := dimension[T](name)
	t.Calendar = true
	return t
}

func fact[T any](name, serial string) Table {
	return Table{Name: name, Serial: serial, Row: reflect.TypeFor[T]()}
}

// mustTables derives the columns and key of each table from its row type.
// A row type it cannot read is a programming error: it panics at start-up,
// and so in every test.
func mustTables(ts ...Table) []Table {
	names := map[string]bool{}
	for _, t := range ts {
		names[t.Name] = true
	}
	for i := range ts {
		if err := derive(&ts[i], names, Types); err != nil {
			panic(fmt.Sprintf("star: %s: %v", ts[i].Name, err))
		}
	}
	return ts
}

// Derive fills the Columns and Key of t from t.Row as Tables does, with
// the column types of r; a column may refer to t itself or to one of
// tables. (Tables is derived with Types; a test derives a table of its own
// types with this.)
func (r Registry) Derive(t Table, tables ...string) (Table, error) {
	names := map[string]bool{t.Name: true}
	for _, n := range tables {
		names[n] = true
	}
	err := derive(&t, names, r)
	return t, err
}

// derive fills t's Columns and Key from t.Row, with the types of r; every
// ref must be one of the tables named.
func derive(t *Table, tables map[string]bool, r Registry) error {
	t.Columns, t.Key = nil, nil
	for i := range t.Row.NumField() {
		c, key, err := columnOf(t.Row.Field(i), r)
		if err != nil {
			return err
		}
		if c.Ref != "" && !tables[c.Ref] {
			return fmt.Errorf("column %s refers to %s, which is no star table", c.Name, c.Ref)
		}
		c.Field = i
		t.Columns = append(t.Columns, c)
		if key {
			t.Key = append(t.Key, c.Name)
		}
	}
	if len(t.Key) == 0 {
		return fmt.Errorf("no field of %s is tagged star:\"key\"", t.Row)
	}
	if t.Dimension != (t.Serial == "") {
		return fmt.Errorf("a fact, and only a fact, has a serial id column")
	}
	return nil
}

// columnOf reads the column of field f, of one of the types of r, and
// whether it is part of the key.
func columnOf(f reflect.StructField, r Registry) (Column, bool, error) {
	name, opts, _ := strings.Cut(f.Tag.Get("parquet"), ",")
	if name == "" {
		return Column{}, false, fmt.Errorf("field %s has no parquet name", f.Name)
	}
	c := Column{Name: name}
	var logical string
	optional := false
	for o := range strings.SplitSeq(opts, ",") {
		switch o {
		case "":
		case "optional":
			optional = true
		default:
			logical = o
		}
	}
	typ := f.Type
	if typ.Kind() == reflect.Pointer {
		c.Nullable, typ = true, typ.Elem()
	}
	if c.Nullable != optional {
		return c, false, fmt.Errorf("column %s: a pointer field is a nullable column, tagged optional, and only that", name)
	}
	var ok bool
	if c.Type, ok = r.lookup(typ, logical); !ok {
		return c, false, fmt.Errorf("column %s: no star column is a %s tagged %q", name, f.Type, opts)
	}
	key := false
	for o := range strings.SplitSeq(f.Tag.Get("star"), ",") {
		switch {
		case o == "":
		case o == "key":
			key = true
		case strings.HasPrefix(o, "ref="):
			c.Ref = strings.TrimPrefix(o, "ref=")
		default:
			return c, false, fmt.Errorf("column %s: unknown star tag option %q", name, o)
		}
	}
	return c, key, nil
}

// Date is a calendar date as days since 1970-01-01.
type Date = int32

// TimeOfDay is milliseconds since midnight.
type TimeOfDay = int32

// DateOf returns the UTC date of t.
func DateOf(t time.Time) Date {
	return Date(t.UTC().Truncate(24*time.Hour).Unix() / 86400) // #nosec G115 -- dates fit
}

// TimeOf returns the UTC time of day of t, to the millisecond.
func TimeOf(t time.Time) TimeOfDay {
	t = t.UTC()
	return TimeOfDay(t.Sub(t.Truncate(24*time.Hour)) / time.Millisecond) // #nosec G115 -- under a day
}

// DateTime returns the UTC time a Date and TimeOfDay stand for.
func DateTime(d Date, ms TimeOfDay) time.Time {
	return time.Unix(int64(d)*86400, int64(ms)*int64(time.Millisecond)).UTC()
}

// DimDate is a row of dim_date.
type DimDate struct {
	DateID    Date   `parquet:"date_id,date" star:"key"`
	Year      int32  `parquet:"year"`
	Month     int32  `parquet:"month"`
	Day       int32  `parquet:"day"`
	DayOfWeek int32  `parquet:"day_of_week"`
	DayName   string `parquet:"day_name"`
	MonthName string `parquet:"month_name"`
	Quarter   int32  `parquet:"quarter"`
}

// DimStaff is a row of dim_staff.
type DimStaff struct {
	StaffID        int32  `parquet:"staff_id" star:"key"`
	FirstName      string `parquet:"first_name"`
	LastName       string `parquet:"last_name"`
	DepartmentName string `parquet:"department_name"`
	Location       string `parquet:"location"`
	EmailAddress   string `parquet:"email_address"`
}

// DimLocation is a row of dim_location.
type DimLocation struct {
	LocationID   int32   `parquet:"location_id" star:"key"`
	AddressLine1 string  `parquet:"address_line_1"`
	AddressLine2 *string `parquet:"address_line_2,optional"`
	District     *string `parquet:"district,optional"`
	City         string  `parquet:"city"`
	PostalCode   string  `parquet:"postal_code"`
	Country      string  `parquet:"country"`
	Phone        string  `parquet:"phone"`
}

// DimCurrency is a row of dim_currency.
type DimCurrency struct {
	CurrencyID   int32  `parquet:"currency_id" star:"key"`
	CurrencyCode string `parquet:"currency_code"`
	CurrencyName string `parquet:"currency_name"`
}

// DimDesign is a row of dim_design.
type DimDesign struct {
	DesignID     int32  `parquet:"design_id" star:"key"`
	DesignName   string `parquet:"design_name"`
	FileLocation string `parquet:"file_location"`
	FileName     string `parquet:"file_name"`
}

// DimCounterparty is a row of dim_counterparty.
type DimCounterparty struct {
	CounterpartyID                int32   `parquet:"counterparty_id" star:"key"`
	CounterpartyLegalName         string  `parquet:"counterparty_legal_name"`
	CounterpartyLegalAddressLine1 string  `parquet:"counterparty_legal_address_line_1"`
	CounterpartyLegalAddressLine2 *string `parquet:"counterparty_legal_address_line_2,optional"`
	CounterpartyLegalDistrict     *string `parquet:"counterparty_legal_district,optional"`
	CounterpartyLegalCity         string  `parquet:"counterparty_legal_city"`
	CounterpartyLegalPostalCode   string  `parquet:"counterparty_legal_postal_code"`
	CounterpartyLegalCountry      string  `parquet:"counterparty_legal_country"`
	CounterpartyLegalPhoneNumber  string  `parquet:"counterparty_legal_phone_number"`
}

// DimPaymentType is a row of dim_payment_type.
type DimPaymentType struct {
	PaymentTypeID   int32  `parquet:"payment_type_id" star:"key"`
	PaymentTypeName string `parquet:"payment_type_name"`
}

// DimTransaction is a row of dim_transaction.
type DimTransaction struct {
	TransactionID   int32  `parquet:"transaction_id" star:"key"`
	TransactionType string `parquet:"transaction_type"`
	SalesOrderID    *int32 `parquet:"sales_order_id,optional"`
	PurchaseOrderID *int32 `parquet:"purchase_order_id,optional"`
}

// FactSalesOrder is a row of fact_sales_order (without its serial id).
type FactSalesOrder struct {
	SalesOrderID             int32     `parquet:"sales_order_id" star:"key"`
	CreatedDate              Date      `parquet:"created_date,date" star:"ref=dim_date"`
	CreatedTime              TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate          Date      `parquet:"last_updated_date,date" star:"key,ref=dim_date"`
	LastUpdatedTime          TimeOfDay `parquet:"last_updated_time,time(millisecond)" star:"key"`
	SalesStaffID             int32     `parquet:"sales_staff_id" star:"ref=dim_staff"`
	CounterpartyID           int32     `parquet:"counterparty_id" star:"ref=dim_counterparty"`
	UnitsSold                int32     `parquet:"units_sold"`
	UnitPrice                int64     `parquet:"unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id" star:"ref=dim_currency"`
	DesignID                 int32     `parquet:"design_id" star:"ref=dim_design"`
	AgreedPaymentDate        Date      `parquet:"agreed_payment_date,date" star:"ref=dim_date"`
	AgreedDeliveryDate       Date      `parquet:"agreed_delivery_date,date" star:"ref=dim_date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id" star:"ref=dim_location"`
}

// FactPurchaseOrder is a row of fact_purchase_order (without its serial id).
type FactPurchaseOrder struct {
	PurchaseOrderID          int32     `parquet:"purchase_order_id" star:"key"`
	CreatedDate              Date      `parquet:"created_date,date" star:"ref=dim_date"`
	CreatedTime              TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate          Date      `parquet:"last_updated_date,date" star:"key,ref=dim_date"`
	LastUpdatedTime          TimeOfDay `parquet:"last_updated_time,time(millisecond)" star:"key"`
	StaffID                  int32     `parquet:"staff_id" star:"ref=dim_staff"`
	CounterpartyID           int32     `parquet:"counterparty_id" star:"ref=dim_counterparty"`
	ItemCode                 string    `parquet:"item_code"`
	ItemQuantity             int32     `parquet:"item_quantity"`
	ItemUnitPrice            int64     `parquet:"item_unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id" star:"ref=dim_currency"`
	AgreedDeliveryDate       Date      `parquet:"agreed_delivery_date,date" star:"ref=dim_date"`
	AgreedPaymentDate        Date      `parquet:"agreed_payment_date,date" star:"ref=dim_date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id" star:"ref=dim_location"`
}

// FactPayment is a row of fact_payment (without its serial id). Its
// last-updated time column is called last_updated, as the ERD names it.
type FactPayment struct {
	PaymentID       int32     `parquet:"payment_id" star:"key"`
	CreatedDate     Date      `parquet:"created_date,date" star:"ref=dim_date"`
	CreatedTime     TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate Date      `parquet:"last_updated_date,date" star:"key,ref=dim_date"`
	LastUpdated     TimeOfDay `parquet:"last_updated,time(millisecond)" star:"key"`
	TransactionID   int32     `parquet:"transaction_id" star:"ref=dim_transaction"`
	CounterpartyID  int32     `parquet:"counterparty_id" star:"ref=dim_counterparty"`
	PaymentAmount   int64     `parquet:"payment_amount,decimal(2:10)"`
	CurrencyID      int32     `parquet:"currency_id" star:"ref=dim_currency"`
	PaymentTypeID   int32     `parquet:"payment_type_id" star:"ref=dim_payment_type"`
	Paid            bool      `parquet:"paid"`
	PaymentDate     Date      `parquet:"payment_date,date" star:"ref=dim_date"`
}
