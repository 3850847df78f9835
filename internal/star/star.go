// Package star is the star schema that transform writes and load reads: one
// row type per warehouse table, as the processed bucket's Parquet holds it.
//
// Dates are days since 1970-01-01 (Parquet DATE), times of day are
// milliseconds since midnight (Parquet TIME(MILLIS)), money is DECIMAL(10,2)
// held as an integer count of cents.
package star

import "time"

// Table describes one warehouse table.
type Table struct {
	Name string
	// Dimension tables hold the latest value of each key; fact tables
	// append one row per source row version.
	Dimension bool
	// Key is the dimension's primary key, or the fact's natural key: the
	// source id and the last-updated date and time of the version.
	Key []string
}

// Tables lists the warehouse tables, dimensions first (load order).
var Tables = []Table{
	{"dim_date", true, []string{"date_id"}},
	{"dim_staff", true, []string{"staff_id"}},
	{"dim_location", true, []string{"location_id"}},
	{"dim_currency", true, []string{"currency_id"}},
	{"dim_design", true, []string{"design_id"}},
	{"dim_counterparty", true, []string{"counterparty_id"}},
	{"dim_payment_type", true, []string{"payment_type_id"}},
	{"dim_transaction", true, []string{"transaction_id"}},
	{"fact_sales_order", false, []string{"sales_order_id", "last_updated_date", "last_updated_time"}},
	{"fact_purchase_order", false, []string{"purchase_order_id", "last_updated_date", "last_updated_time"}},
	{"fact_payment", false, []string{"payment_id", "last_updated_date", "last_updated"}},
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
	DateID    Date   `parquet:"date_id,date"`
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
	StaffID        int32  `parquet:"staff_id"`
	FirstName      string `parquet:"first_name"`
	LastName       string `parquet:"last_name"`
	DepartmentName string `parquet:"department_name"`
	Location       string `parquet:"location"`
	EmailAddress   string `parquet:"email_address"`
}

// DimLocation is a row of dim_location.
type DimLocation struct {
	LocationID   int32   `parquet:"location_id"`
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
	CurrencyID   int32  `parquet:"currency_id"`
	CurrencyCode string `parquet:"currency_code"`
	CurrencyName string `parquet:"currency_name"`
}

// DimDesign is a row of dim_design.
type DimDesign struct {
	DesignID     int32  `parquet:"design_id"`
	DesignName   string `parquet:"design_name"`
	FileLocation string `parquet:"file_location"`
	FileName     string `parquet:"file_name"`
}

// DimCounterparty is a row of dim_counterparty.
type DimCounterparty struct {
	CounterpartyID                int32   `parquet:"counterparty_id"`
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
	PaymentTypeID   int32  `parquet:"payment_type_id"`
	PaymentTypeName string `parquet:"payment_type_name"`
}

// DimTransaction is a row of dim_transaction.
type DimTransaction struct {
	TransactionID   int32  `parquet:"transaction_id"`
	TransactionType string `parquet:"transaction_type"`
	SalesOrderID    *int32 `parquet:"sales_order_id,optional"`
	PurchaseOrderID *int32 `parquet:"purchase_order_id,optional"`
}

// FactSalesOrder is a row of fact_sales_order (without its serial id).
type FactSalesOrder struct {
	SalesOrderID             int32     `parquet:"sales_order_id"`
	CreatedDate              Date      `parquet:"created_date,date"`
	CreatedTime              TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate          Date      `parquet:"last_updated_date,date"`
	LastUpdatedTime          TimeOfDay `parquet:"last_updated_time,time(millisecond)"`
	SalesStaffID             int32     `parquet:"sales_staff_id"`
	CounterpartyID           int32     `parquet:"counterparty_id"`
	UnitsSold                int32     `parquet:"units_sold"`
	UnitPrice                int64     `parquet:"unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id"`
	DesignID                 int32     `parquet:"design_id"`
	AgreedPaymentDate        Date      `parquet:"agreed_payment_date,date"`
	AgreedDeliveryDate       Date      `parquet:"agreed_delivery_date,date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id"`
}

// FactPurchaseOrder is a row of fact_purchase_order (without its serial id).
type FactPurchaseOrder struct {
	PurchaseOrderID          int32     `parquet:"purchase_order_id"`
	CreatedDate              Date      `parquet:"created_date,date"`
	CreatedTime              TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate          Date      `parquet:"last_updated_date,date"`
	LastUpdatedTime          TimeOfDay `parquet:"last_updated_time,time(millisecond)"`
	StaffID                  int32     `parquet:"staff_id"`
	CounterpartyID           int32     `parquet:"counterparty_id"`
	ItemCode                 string    `parquet:"item_code"`
	ItemQuantity             int32     `parquet:"item_quantity"`
	ItemUnitPrice            int64     `parquet:"item_unit_price,decimal(2:10)"`
	CurrencyID               int32     `parquet:"currency_id"`
	AgreedDeliveryDate       Date      `parquet:"agreed_delivery_date,date"`
	AgreedPaymentDate        Date      `parquet:"agreed_payment_date,date"`
	AgreedDeliveryLocationID int32     `parquet:"agreed_delivery_location_id"`
}

// FactPayment is a row of fact_payment (without its serial id). Its
// last-updated time column is called last_updated, as the ERD names it.
type FactPayment struct {
	PaymentID       int32     `parquet:"payment_id"`
	CreatedDate     Date      `parquet:"created_date,date"`
	CreatedTime     TimeOfDay `parquet:"created_time,time(millisecond)"`
	LastUpdatedDate Date      `parquet:"last_updated_date,date"`
	LastUpdated     TimeOfDay `parquet:"last_updated,time(millisecond)"`
	TransactionID   int32     `parquet:"transaction_id"`
	CounterpartyID  int32     `parquet:"counterparty_id"`
	PaymentAmount   int64     `parquet:"payment_amount,decimal(2:10)"`
	CurrencyID      int32     `parquet:"currency_id"`
	PaymentTypeID   int32     `parquet:"payment_type_id"`
	Paid            bool      `parquet:"paid"`
	PaymentDate     Date      `parquet:"payment_date,date"`
}
