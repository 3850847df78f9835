// Package totesys describes the totesys source database: its schema, its
// eleven tables and the row types the ingestion bucket holds for each.
package totesys

import (
	_ "embed"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Schema is the DDL of the totesys database.
//
//go:embed schema.sql
var Schema string

// Table is one source table.
type Table struct {
	Name string
	// Key is the single-column primary key.
	Key string
	// Columns are the columns the pipeline needs, in source order: the
	// parquet names of Row's fields.
	Columns []string
	// Row is the row type the ingestion bucket's Parquet holds the table in.
	Row reflect.Type
}

// LastUpdated is the column every table stamps each row version with.
const LastUpdated = "last_updated"

// Tables lists the eleven totesys tables in load order (referenced before
// referencing). Any other table in the source, such as _prisma_migrations,
// is ignored. Each table's columns are declared once, by its row type below.
var Tables = []Table{
	table[Address]("address", "address_id"),
	table[Counterparty]("counterparty", "counterparty_id"),
	table[Currency]("currency", "currency_id"),
	table[Department]("department", "department_id"),
	table[Design]("design", "design_id"),
	table[Staff]("staff", "staff_id"),
	table[PaymentType]("payment_type", "payment_type_id"),
	table[SalesOrder]("sales_order", "sales_order_id"),
	table[PurchaseOrder]("purchase_order", "purchase_order_id"),
	table[Transaction]("transaction", "transaction_id"),
	table[Payment]("payment", "payment_id"),
}

// table declares source table name, keyed by key, whose rows are of type T.
// A row type without the key or LastUpdated is a programming error: it
// panics at start-up, and so in every test.
func table[T any](name, key string) Table {
	t, err := tableOf(reflect.TypeFor[T](), name, key)
	if err != nil {
		panic("totesys: " + err.Error())
	}
	return t
}

func tableOf(row reflect.Type, name, key string) (Table, error) {
	t := Table{Name: name, Key: key, Row: row}
	for i := range row.NumField() {
		col, _, _ := strings.Cut(row.Field(i).Tag.Get("parquet"), ",")
		if col == "" {
			return t, fmt.Errorf("%s: field %s has no parquet name", name, row.Field(i).Name)
		}
		t.Columns = append(t.Columns, col)
	}
	for _, want := range []string{key, LastUpdated} {
		if !slices.Contains(t.Columns, want) {
			return t, fmt.Errorf("%s: %s has no column %s", name, row, want)
		}
	}
	return t, nil
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

// The row types below are how the ingestion bucket's Parquet holds each table
// (ingest writes them column by column from the source's types; these
// structs read them back). Timestamps are UTC with microsecond precision,
// money is DECIMAL(10,2) held as an integer count of cents, and the text
// dates stay text.

// Address is a row version of address.
type Address struct {
	AddressID    int32     `parquet:"address_id"`
	AddressLine1 string    `parquet:"address_line_1"`
	AddressLine2 *string   `parquet:"address_line_2,optional"`
	District     *string   `parquet:"district,optional"`
	City         string    `parquet:"city"`
	PostalCode   string    `parquet:"postal_code"`
	Country      string    `parquet:"country"`
	Phone        string    `parquet:"phone"`
	CreatedAt    time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated  time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Counterparty is a row version of counterparty.
type Counterparty struct {
	CounterpartyID        int32     `parquet:"counterparty_id"`
	CounterpartyLegalName string    `parquet:"counterparty_legal_name"`
	LegalAddressID        int32     `parquet:"legal_address_id"`
	CommercialContact     *string   `parquet:"commercial_contact,optional"`
	DeliveryContact       *string   `parquet:"delivery_contact,optional"`
	CreatedAt             time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated           time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Currency is a row version of currency.
type Currency struct {
	CurrencyID   int32     `parquet:"currency_id"`
	CurrencyCode string    `parquet:"currency_code"`
	CreatedAt    time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated  time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Department is a row version of department.
type Department struct {
	DepartmentID   int32     `parquet:"department_id"`
	DepartmentName string    `parquet:"department_name"`
	Location       *string   `parquet:"location,optional"`
	Manager        *string   `parquet:"manager,optional"`
	CreatedAt      time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated    time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Design is a row version of design.
type Design struct {
	DesignID     int32     `parquet:"design_id"`
	CreatedAt    time.Time `parquet:"created_at,timestamp(microsecond)"`
	DesignName   string    `parquet:"design_name"`
	FileLocation string    `parquet:"file_location"`
	FileName     string    `parquet:"file_name"`
	LastUpdated  time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Staff is a row version of staff.
type Staff struct {
	StaffID      int32     `parquet:"staff_id"`
	FirstName    string    `parquet:"first_name"`
	LastName     string    `parquet:"last_name"`
	DepartmentID int32     `parquet:"department_id"`
	EmailAddress string    `parquet:"email_address"`
	CreatedAt    time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated  time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// PaymentType is a row version of payment_type.
type PaymentType struct {
	PaymentTypeID   int32     `parquet:"payment_type_id"`
	PaymentTypeName string    `parquet:"payment_type_name"`
	CreatedAt       time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated     time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// SalesOrder is a row version of sales_order.
type SalesOrder struct {
	SalesOrderID             int32     `parquet:"sales_order_id"`
	CreatedAt                time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated              time.Time `parquet:"last_updated,timestamp(microsecond)"`
	DesignID                 int32     `parquet:"design_id"`
	StaffID                  int32     `parquet:"staff_id"`
	CounterpartyID           int32     `parquet:"counterparty_id"`
	UnitsSold                int32     `parquet:"units_sold"`
	UnitPrice                int64     `parquet:"unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id"`
	AgreedDeliveryDate       string    `parquet:"agreed_delivery_date"`
	AgreedPaymentDate        string    `parquet:"agreed_payment_date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id"`
}

// PurchaseOrder is a row version of purchase_order.
type PurchaseOrder struct {
	PurchaseOrderID          int32     `parquet:"purchase_order_id"`
	CreatedAt                time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated              time.Time `parquet:"last_updated,timestamp(microsecond)"`
	StaffID                  int32     `parquet:"staff_id"`
	CounterpartyID           int32     `parquet:"counterparty_id"`
	ItemCode                 string    `parquet:"item_code"`
	ItemQuantity             int32     `parquet:"item_quantity"`
	ItemUnitPrice            int64     `parquet:"item_unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id"`
	AgreedDeliveryDate       string    `parquet:"agreed_delivery_date"`
	AgreedPaymentDate        string    `parquet:"agreed_payment_date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id"`
}

// Transaction is a row version of transaction.
type Transaction struct {
	TransactionID   int32     `parquet:"transaction_id"`
	TransactionType string    `parquet:"transaction_type"`
	SalesOrderID    *int32    `parquet:"sales_order_id,optional"`
	PurchaseOrderID *int32    `parquet:"purchase_order_id,optional"`
	CreatedAt       time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated     time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

// Payment is a row version of payment.
type Payment struct {
	PaymentID            int32     `parquet:"payment_id"`
	CreatedAt            time.Time `parquet:"created_at,timestamp(microsecond)"`
	LastUpdated          time.Time `parquet:"last_updated,timestamp(microsecond)"`
	TransactionID        int32     `parquet:"transaction_id"`
	CounterpartyID       int32     `parquet:"counterparty_id"`
	PaymentAmount        int64     `parquet:"payment_amount,decimal(2:10)"`
	CurrencyID           int32     `parquet:"currency_id"`
	PaymentTypeID        int32     `parquet:"payment_type_id"`
	Paid                 bool      `parquet:"paid"`
	PaymentDate          string    `parquet:"payment_date"`
	CompanyAcNumber      int32     `parquet:"company_ac_number"`
	CounterpartyAcNumber int32     `parquet:"counterparty_ac_number"`
}
