package ingest

import (
	"context"
	"math"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"

	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// binaryOf returns the binary form the source sends for the SQL value.
func binaryOf(t *testing.T, conn *pgx.Conn, sql string) []byte {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT "+sql, pgx.QueryResultFormats{pgx.BinaryFormatCode})
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("%s: no row: %v", sql, rows.Err())
	}
	return append([]byte(nil), rows.RawValues()[0]...)
}

func TestScaledNumeric(t *testing.T) {
	t.Parallel()
	conn, err := pgx.Connect(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	good := []struct {
		sql   string
		scale int
		want  int64
	}{
		{"0::numeric(10,2)", 2, 0},
		{"0.01::numeric(10,2)", 2, 1},
		{"-0.01::numeric(10,2)", 2, -1},
		{"1234.5::numeric(10,2)", 2, 123450},
		{"99999999.99::numeric(10,2)", 2, 9999999999},
		{"-10000.00::numeric(10,2)", 2, -1000000},
		{"12345678.9::numeric(12,4)", 4, 123456789000},
		{"0.0001::numeric(10,4)", 4, 1},
		{"4.2::numeric(5,1)", 1, 42},
		{"7::numeric(5,0)", 0, 7},
		{"120000::numeric(9,0)", 0, 120000},
		{"999999999999999999::numeric(18,0)", 0, 999999999999999999},
		{"-999999999999999999::numeric(18,0)", 0, -999999999999999999},
		{"9223372036854775807::numeric", 0, math.MaxInt64},
	}
	for _, g := range good {
		got, err := scaledNumeric(binaryOf(t, conn, g.sql), g.scale)
		if err != nil || got != g.want {
			t.Errorf("%s at scale %d: %d, %v; want %d", g.sql, g.scale, got, err, g.want)
		}
	}
	bad := []struct {
		sql   string
		scale int
	}{
		{"'NaN'::numeric", 2},
		{"'Infinity'::numeric", 2},
		{"0.001::numeric", 2},
		{"1.00005::numeric", 4},
		{"9223372036854775808::numeric", 0},
		{"100000000000000000000::numeric", 0},
		{"1e30::numeric", 2},
	}
	for _, b := range bad {
		if got, err := scaledNumeric(binaryOf(t, conn, b.sql), b.scale); err == nil {
			t.Errorf("%s at scale %d decoded as %d", b.sql, b.scale, got)
		}
	}
	for _, raw := range [][]byte{nil, {0, 1, 0, 0, 0, 0, 0, 2}} {
		if _, err := scaledNumeric(raw, 2); err == nil {
			t.Errorf("%v decoded", raw)
		}
	}
}

// The known tables land with exactly the schema of their totesys row type,
// so that transform reads them as they are, without a conversion.
func TestLandedSchemasAreTheRowTypes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	if _, err := synth.Seed(ctx, f.url, synth.SeedOptions{SalesOrders: 300, RandomSeed: 2}); err != nil {
		t.Fatal(err)
	}
	res := f.run()
	models := map[string]any{
		"address": totesys.Address{}, "counterparty": totesys.Counterparty{}, "currency": totesys.Currency{},
		"department": totesys.Department{}, "design": totesys.Design{}, "staff": totesys.Staff{},
		"payment_type": totesys.PaymentType{}, "sales_order": totesys.SalesOrder{},
		"purchase_order": totesys.PurchaseOrder{}, "transaction": totesys.Transaction{}, "payment": totesys.Payment{},
	}
	var m lake.Manifest
	if err := f.bucket.ReadManifest(ctx, res.Sequence, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Tables) != len(models) {
		t.Fatalf("%d tables landed, want %d", len(m.Tables), len(models))
	}
	for _, obj := range m.Tables {
		file, err := f.bucket.Download(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := file.Stat()
		pf, err := parquet.OpenFile(file, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		if want := parquet.SchemaOf(models[obj.Table]); !parquet.EqualNodes(pf.Schema(), want) {
			t.Errorf("%s landed as\n%s\nwant\n%s", obj.Table, pf.Schema(), want)
		}
		if pf.NumRows() != obj.Rows {
			t.Errorf("%s: %d rows in the file, %d in the manifest", obj.Table, pf.NumRows(), obj.Rows)
		}
		lake.RemoveTemp(file)
	}
	// And the values read back: money in cents, exactly.
	var sum int64
	for _, p := range rows[totesys.Payment](t, f.bucket, res.Sequence, "payment") {
		sum += p.PaymentAmount
	}
	if want := pgtest.QueryInt(t, f.url, "SELECT sum(payment_amount * 100)::bigint FROM payment"); sum != want {
		t.Errorf("payments landed summing to %d cents, the source has %d", sum, want)
	}
}

// A writer that fails stops the table's reading and says why.
func TestChunkWriterFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := lake.Open(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	w, err := lake.NewParquetWriter[any](ctx, b, "x.parquet", parquet.NewSchema("x", parquet.Group{"a": parquet.Int(32)}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	cw := startChunkWriter(w, 2) // one column too many for the schema
	ok := true
	for i := 0; i < 10 && ok; i++ {
		ch := cw.next()
		for c := range ch.cols {
			ch.cols[c] = append(ch.cols[c], parquet.Int32Value(1))
		}
		ch.rows++
		ok = cw.send(ch)
	}
	if err := cw.close(); err == nil {
		t.Fatal("a failing writer reported no error")
	}
}

func TestDecodeEveryKind(t *testing.T) {
	t.Parallel()
	conn, err := pgx.Connect(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tests := []struct {
		sql, dataType string
		prec, scale   int
		want          parquet.Value
		typeName      string
	}{
		{"7::int4", "integer", 0, 0, parquet.Int32Value(7), "INT32"},
		{"-3::int2::int4", "smallint", 0, 0, parquet.Int32Value(-3), "INT32"},
		{"9000000000::int8", "bigint", 0, 0, parquet.Int64Value(9000000000), "INT64"},
		{"12.34::numeric(6,2)", "numeric", 6, 2, parquet.Int64Value(1234), "DECIMAL(6,2)"},
		{"1.5::float8", "double precision", 0, 0, parquet.DoubleValue(1.5), "DOUBLE"},
		{"true", "boolean", 0, 0, parquet.BooleanValue(true), "BOOLEAN"},
		{"DATE '2024-02-29'", "date", 0, 0, parquet.Int32Value(19782), "DATE"},
		{"TIMESTAMP '2024-02-29 12:00:00.123'", "timestamp without time zone", 0, 0,
			parquet.Int64Value(1709208000123000), "TIMESTAMP(MICROS,UTC)"},
		{"'héllo'::text", "text", 0, 0, parquet.ByteArrayValue([]byte("héllo")), "STRING"},
		{"'1e40'::numeric::text", "numeric", 0, 0, parquet.ByteArrayValue([]byte("10000000000000000000000000000000000000000")), "STRING"},
		{"'{1}'::int[]::text", "ARRAY", 0, 0, parquet.ByteArrayValue([]byte("{1}")), "STRING"},
	}
	for _, tt := range tests {
		for _, nullable := range []bool{false, true} {
			c := column{Name: "c", Nullable: nullable, kind: kindOf(tt.dataType, tt.prec), scale: tt.scale, prec: tt.prec}
			var arena []byte
			got, err := c.decode(binaryOf(t, conn, tt.sql), &arena)
			if err != nil || !parquet.Equal(got, tt.want) {
				t.Errorf("%s: %v, %v; want %v", tt.sql, got, err, tt.want)
			}
			if nullable && got.DefinitionLevel() != 1 {
				t.Errorf("%s: a nullable value at definition level %d", tt.sql, got.DefinitionLevel())
			}
			if c.typeName() != tt.typeName || c.node().Optional() != nullable {
				t.Errorf("%s: type %s (optional %v), want %s", tt.sql, c.typeName(), c.node().Optional(), tt.typeName)
			}
			null, err := c.decode(nil, &arena)
			if nullable != (err == nil) || (nullable && !null.IsNull()) {
				t.Errorf("%s: NULL decoded as %v, %v (nullable %v)", tt.sql, null, err, nullable)
			}
			if c.kind != kString {
				if _, err := c.decode([]byte{1, 2, 3}, &arena); err == nil {
					t.Errorf("%s: three bytes decoded", tt.sql)
				}
			}
		}
	}
	if _, ok := int32Of([]byte{1}); ok {
		t.Error("one byte read as an int4")
	}
	if _, ok := microsOf([]byte{1}); ok {
		t.Error("one byte read as a timestamp")
	}
}
