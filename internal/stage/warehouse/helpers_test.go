package warehouse

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// batch is a processed batch for a test: nil slices are tables the batch
// does not have.
type batch struct {
	seq       int64
	newest    time.Time
	dates     []star.DimDate
	staff     []star.DimStaff
	locations []star.DimLocation
	curs      []star.DimCurrency
	designs   []star.DimDesign
	cps       []star.DimCounterparty
	pts       []star.DimPaymentType
	txs       []star.DimTransaction
	sales     []star.FactSalesOrder
	purchases []star.FactPurchaseOrder
	payments  []star.FactPayment
	// capture, deleted and revived go into the manifest as they are.
	capture          *lake.Capture
	deleted, revived map[string][]int32
}

// put writes bt into the processed bucket as transform would: one Parquet
// object per table, then the manifest.
func put(t testing.TB, b *lake.Bucket, bt batch) lake.Manifest {
	t.Helper()
	m := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(bt.seq), Sequence: bt.seq,
		RunID: "test", CreatedAt: time.Now().UTC(), SourceNewest: bt.newest,
		Capture: bt.capture, Deleted: bt.deleted, Revived: bt.revived}
	addRows(t, b, &m, "dim_date", bt.dates)
	addRows(t, b, &m, "dim_staff", bt.staff)
	addRows(t, b, &m, "dim_location", bt.locations)
	addRows(t, b, &m, "dim_currency", bt.curs)
	addRows(t, b, &m, "dim_design", bt.designs)
	addRows(t, b, &m, "dim_counterparty", bt.cps)
	addRows(t, b, &m, "dim_payment_type", bt.pts)
	addRows(t, b, &m, "dim_transaction", bt.txs)
	addRows(t, b, &m, "fact_sales_order", bt.sales)
	addRows(t, b, &m, "fact_purchase_order", bt.purchases)
	addRows(t, b, &m, "fact_payment", bt.payments)
	putManifest(t, b, m)
	return m
}

func putManifest(t testing.TB, b *lake.Bucket, m lake.Manifest) {
	t.Helper()
	if err := b.PutManifest(context.Background(), m.Sequence, &m); err != nil {
		t.Fatal(err)
	}
}

func addRows[T any](t testing.TB, b *lake.Bucket, m *lake.Manifest, table string, rows []T) {
	t.Helper()
	if rows == nil {
		return
	}
	addGen(t, b, m, table, len(rows), func(i int) T { return rows[i] })
}

// addGen writes n generated rows of table into the batch, a chunk at a time.
func addGen[T any](t testing.TB, b *lake.Bucket, m *lake.Manifest, table string, n int, gen func(int) T) {
	t.Helper()
	ctx := context.Background()
	key := lake.DataKey(table, time.Now(), m.Sequence, "test", "parquet")
	w, err := lake.NewParquetWriter[T](ctx, b, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]T, 0, 8192)
	for i := range n {
		chunk = append(chunk, gen(i))
		if len(chunk) == cap(chunk) || i == n-1 {
			if err := w.Write(chunk); err != nil {
				t.Fatal(err)
			}
			chunk = chunk[:0]
		}
	}
	size, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.Tables = append(m.Tables, lake.Object{Table: table, Key: key, Rows: int64(n), Bytes: size, SHA256: sum, MaxLen: w.MaxLen()})
}

func day(s string) star.Date {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return star.DateOf(t)
}

func ms(s string) star.TimeOfDay {
	t, err := time.Parse("15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return star.TimeOf(t)
}

// dimDates are the dim_date rows from..to, as transform makes them.
func dimDates(from, to string) []star.DimDate {
	var out []star.DimDate
	for d := day(from); d <= day(to); d++ {
		t := star.DateTime(d, 0)
		dow := int32(t.Weekday())
		if dow == 0 {
			dow = 7
		}
		out = append(out, star.DimDate{DateID: d, Year: int32(t.Year()), Month: int32(t.Month()), Day: int32(t.Day()),
			DayOfWeek: dow, DayName: t.Weekday().String(), MonthName: t.Month().String(), Quarter: int32(t.Month()-1)/3 + 1})
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// world is a consistent first batch: every dimension, one row of each fact.
func world(seq int64) batch {
	return batch{
		seq:    seq,
		newest: time.Date(2024, 1, 2, 10, 11, 12, 345e6, time.UTC),
		dates:  dimDates("2023-12-25", "2024-01-31"),
		staff: []star.DimStaff{
			{StaffID: 1, FirstName: "Jeremie", LastName: "Franey", DepartmentName: "Purchasing", Location: "Manchester", EmailAddress: "jeremie.franey@terrifictotes.com"},
			{StaffID: 2, FirstName: "Deron", LastName: "Beier", DepartmentName: "Facilities", Location: "Leds", EmailAddress: "deron.beier@terrifictotes.com"},
		},
		locations: []star.DimLocation{
			{LocationID: 1, AddressLine1: "6826 Herzog Via", AddressLine2: nil, District: nil, City: "New Patienceburgh", PostalCode: "28441", Country: "Turkey", Phone: "1803 637401"},
			{LocationID: 2, AddressLine1: "179 Alexie Cliffs", AddressLine2: ptr("Flat 1"), District: ptr("Avon"), City: "Aliso Viejo", PostalCode: "99305-7380", Country: "San Marino", Phone: "9621 880720"},
		},
		curs: []star.DimCurrency{
			{CurrencyID: 1, CurrencyCode: "GBP", CurrencyName: "Pound Sterling"},
			{CurrencyID: 2, CurrencyCode: "USD", CurrencyName: "US Dollar"},
		},
		designs: []star.DimDesign{
			{DesignID: 1, DesignName: "Wooden", FileLocation: "/usr", FileName: "wooden-20220717-npgz.json"},
			{DesignID: 2, DesignName: "Steel", FileLocation: "/private", FileName: "steel-20221103-abcd.json"},
		},
		cps: []star.DimCounterparty{
			{CounterpartyID: 1, CounterpartyLegalName: "Fahey and Sons", CounterpartyLegalAddressLine1: "6826 Herzog Via",
				CounterpartyLegalCity: "New Patienceburgh", CounterpartyLegalPostalCode: "28441", CounterpartyLegalCountry: "Turkey", CounterpartyLegalPhoneNumber: "1803 637401"},
			{CounterpartyID: 2, CounterpartyLegalName: "Leannon, Predovic and Morar", CounterpartyLegalAddressLine1: "179 Alexie Cliffs",
				CounterpartyLegalAddressLine2: ptr("Flat 1"), CounterpartyLegalDistrict: ptr("Avon"),
				CounterpartyLegalCity: "Aliso Viejo", CounterpartyLegalPostalCode: "99305-7380", CounterpartyLegalCountry: "San Marino", CounterpartyLegalPhoneNumber: "9621 880720"},
		},
		pts: []star.DimPaymentType{{PaymentTypeID: 1, PaymentTypeName: "SALES_RECEIPT"}, {PaymentTypeID: 3, PaymentTypeName: "PURCHASE_PAYMENT"}},
		txs: []star.DimTransaction{
			{TransactionID: 1, TransactionType: "SALE", SalesOrderID: ptr[int32](1)},
			{TransactionID: 2, TransactionType: "PURCHASE", PurchaseOrderID: ptr[int32](1)},
		},
		sales:     []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 50, 1234)},
		purchases: []star.FactPurchaseOrder{purchase(1, "2024-01-02", "09:00:00.001", 7, 99999999)},
		payments:  []star.FactPayment{payment(1, "2024-01-02", "23:59:59.999", 2, false)},
	}
}

func sale(id int32, d, t string, units int32, cents int64) star.FactSalesOrder {
	return star.FactSalesOrder{SalesOrderID: id, CreatedDate: day("2024-01-02"), CreatedTime: ms("10:11:12.345"),
		LastUpdatedDate: day(d), LastUpdatedTime: ms(t), SalesStaffID: 2, CounterpartyID: 1, UnitsSold: units,
		UnitPrice: cents, CurrencyID: 1, DesignID: 2, AgreedPaymentDate: day("2024-01-05"),
		AgreedDeliveryDate: day("2024-01-07"), AgreedDeliveryLocationID: 2}
}

func purchase(id int32, d, t string, qty int32, cents int64) star.FactPurchaseOrder {
	return star.FactPurchaseOrder{PurchaseOrderID: id, CreatedDate: day("2024-01-02"), CreatedTime: ms("09:00:00.001"),
		LastUpdatedDate: day(d), LastUpdatedTime: ms(t), StaffID: 1, CounterpartyID: 2, ItemCode: "ZDOI5EA",
		ItemQuantity: qty, ItemUnitPrice: cents, CurrencyID: 2, AgreedDeliveryDate: day("2024-01-10"),
		AgreedPaymentDate: day("2024-01-31"), AgreedDeliveryLocationID: 1}
}

func payment(id int32, d, t string, cents int64, paid bool) star.FactPayment {
	return star.FactPayment{PaymentID: id, CreatedDate: day("2024-01-02"), CreatedTime: ms("23:59:59.999"),
		LastUpdatedDate: day(d), LastUpdated: ms(t), TransactionID: 1, CounterpartyID: 1, PaymentAmount: cents,
		CurrencyID: 1, PaymentTypeID: 1, Paid: paid, PaymentDate: day("2024-01-03")}
}

// env is a test's warehouse and processed bucket.
type env struct {
	url    string
	bucket *lake.Bucket
	schema string
	// set is the settings its loads run with: the defaults, unless the
	// test changes them.
	set settings
}

func newEnv(t testing.TB) *env {
	t.Helper()
	b, err := lake.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &env{url: pgtest.NewDatabase(t), bucket: b, set: defaultSettings()}
}

// with is the Option that gives a Warehouse the settings set.
func with(set settings) Option { return func(w *Warehouse) { w.set = set } }

// loadInto opens the warehouse at url in schema with settings set, loads
// with opts, and closes it.
func loadInto(ctx context.Context, url, schema string, set settings, opts Options) (Result, error) {
	w, err := Open(ctx, url, schema, with(set))
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = w.Close(context.WithoutCancel(ctx)) }()
	return w.Load(ctx, opts)
}

// loadWith loads with opts into e's warehouse, with e's settings.
func (e *env) loadWith(ctx context.Context, opts Options) (Result, error) {
	return loadInto(ctx, e.url, e.schema, e.set, opts)
}

// opened calls fn with the warehouse at url in schema, opened for it and
// closed after: a report such as (*Warehouse).Counts.
func opened[T any](ctx context.Context, url, schema string, fn func(*Warehouse, context.Context) (T, error)) (T, error) {
	w, err := Open(ctx, url, schema)
	if err != nil {
		var zero T
		return zero, err
	}
	defer func() { _ = w.Close(context.WithoutCancel(ctx)) }()
	return fn(w, ctx)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func (e *env) opts() Options {
	return Options{Processed: e.bucket, Logger: quiet}
}

func (e *env) load(t testing.TB) Result {
	t.Helper()
	res, err := e.loadWith(context.Background(), e.opts())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return res
}

// query returns every row of sql with each column as text ("NULL" for null).
func query(t testing.TB, url, sql string, args ...any) [][]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				row[i] = "NULL"
			case string:
				row[i] = v
			default:
				t.Fatalf("query %q: column %d is %T, cast it to text", sql, i, v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return out
}

// joined renders rows one per line, columns separated by "|".
func joined(rows [][]string) string {
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = strings.Join(r, "|")
	}
	return strings.Join(lines, "\n")
}

// counts returns the warehouse's row counts, failing the test on error.
func (e *env) counts(t testing.TB) map[string]int64 {
	t.Helper()
	c, err := opened(context.Background(), e.url, e.schema, (*Warehouse).Counts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loadRefused loads and wants the load refused as warehouse_schema_mismatch
// before anything is loaded, the error saying each of want.
func loadRefused(t *testing.T, e *env, want []string) {
	t.Helper()
	res, err := e.loadWith(context.Background(), e.opts())
	if err == nil || errkind.Of(err) != errkind.WarehouseSchemaMismatch {
		t.Fatalf("load: %v (kind %s), want %s", err, errkind.Of(err), errkind.WarehouseSchemaMismatch)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if len(res.Batches) != 0 {
		t.Errorf("batches loaded: %+v", res)
	}
}
