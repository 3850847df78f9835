package warehouse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// infoTypes are the types of the warehouse columns as information_schema
// reports them (in schemaOfDB's form) for a column created of each type's
// DDL, as PostgreSQL makes it.
func infoTypes(t *testing.T, url string) map[*star.Type]string {
	t.Helper()
	var types []*star.Type
	var defs []string
	for _, tb := range tables {
		for _, c := range tb.cols {
			if !slices.Contains(types, c.typ) {
				defs = append(defs, fmt.Sprintf("c%d %s", len(types), c.typ.DDL))
				types = append(types, c.typ)
			}
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE ddl_types ("+strings.Join(defs, ", ")+")"); err != nil {
		t.Fatal(err)
	}
	out := map[*star.Type]string{}
	var forms []string
	err = conn.QueryRow(ctx, `SELECT array_agg(CASE WHEN data_type = 'numeric' THEN format('numeric(%s,%s)', numeric_precision, numeric_scale)
			ELSE data_type END ORDER BY ordinal_position)
		FROM information_schema.columns WHERE table_schema = pg_my_temp_schema()::regnamespace::text AND table_name = 'ddl_types'`).Scan(&forms)
	if err != nil || len(forms) != len(types) {
		t.Fatalf("types %v of %v: %v", forms, defs, err)
	}
	for i, typ := range types {
		out[typ] = forms[i]
	}
	return out
}

// declaredSchema is the warehouse the code expects, as star declares it
// and tables derives it: the columns of each table and its keys, in the
// forms schemaOfDB reads from information_schema, one line each, sorted.
func declaredSchema(infoType map[*star.Type]string) (cols, keys []string) {
	for _, t := range tables {
		var cs []string
		for _, c := range t.cols {
			d := c.name + " " + infoType[c.typ]
			if c.nullable {
				d += " null"
			} else {
				d += " not null"
			}
			if c.typ == star.Serial {
				d += " serial"
			}
			cs = append(cs, d)
			if c.ref != "" {
				dim, _ := tableByName(c.ref)
				keys = append(keys, fmt.Sprintf("%s f (%s) %s(%s)", t.name, c.name, dim.name, strings.Join(dim.key, ", ")))
			}
		}
		cols = append(cols, t.name+": "+strings.Join(cs, ", "))
		if t.role == fact {
			// The version key leads with the time (migration 4): the
			// source id, then the last-updated date and time, become
			// date, time, id.
			timeFirst := append(slices.Clone(t.key[1:]), t.key[0])
			keys = append(keys, fmt.Sprintf("%s p (%s)", t.name, t.serial), fmt.Sprintf("%s u (%s)", t.name, strings.Join(timeFirst, ", ")))
		} else {
			keys = append(keys, fmt.Sprintf("%s p (%s)", t.name, strings.Join(t.key, ", ")))
		}
	}
	slices.Sort(cols)
	slices.Sort(keys)
	return cols, keys
}

// starLines are the lines of a schemaOfDB listing about the warehouse
// tables (not Sandstone's own), without the schema's qualification, sorted.
func starLines(listing, s string) []string {
	var out []string
	for l := range strings.SplitSeq(listing, "\n") {
		l = strings.TrimPrefix(l, pgx.Identifier{s}.Sanitize()+".")
		l = strings.ReplaceAll(l, " "+pgx.Identifier{s}.Sanitize()+".", " ")
		if name, _, _ := strings.Cut(l, " "); !strings.HasPrefix(name, "sandstone_") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestMigrationsMakeTheDeclaredSchema: the migrations, applied to an empty
// database, make exactly the tables, columns, types, nullability and keys
// that star declares, in a schema whose name needs quoting in SQL and in a
// string literal.
func TestMigrationsMakeTheDeclaredSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.schema = `it's a "warehouse"`
	e.load(t)
	cols, keys := schemaOfDB(t, e.url, e.schema)
	wantCols, wantKeys := declaredSchema(infoTypes(t, e.url))
	if got := starLines(cols, e.schema); !slices.Equal(got, wantCols) {
		t.Errorf("columns:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCols, "\n"))
	}
	if got := starLines(keys, e.schema); !slices.Equal(got, wantKeys) {
		t.Errorf("keys:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantKeys, "\n"))
	}
	if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Errorf("%d tables in public: a migration wrote outside its schema", n)
	}
}

// migrateOnly brings the warehouse at url to migration `to` and no further.
func migrateOnly(t *testing.T, url string, s schema, to int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	tx, err := begin(ctx, conn, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateTo(ctx, tx, s, to); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromMigration1: a warehouse made by migration 1 alone, with
// rows in its tables and ledger, is upgraded by the later migrations with
// every row kept, and ends with the same schema as a fresh one.
func TestUpgradeFromMigration1(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	migrateOnly(t, e.url, "public", 1)
	if got := joined(query(t, e.url, "SELECT version::text, name FROM sandstone_migrations")); got != "1|create the star schema and the load ledger" {
		t.Fatalf("migrations after migration 1: %s", got)
	}
	if n := pgtest.QueryInt(t, e.url, `SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'sandstone_loads' AND column_name = 'run_id'`); n != 0 {
		t.Fatal("migration 1 made the ledger of migration 2")
	}
	pgtest.Exec(t, e.url, `
		INSERT INTO dim_date VALUES ('2024-01-02', 2024, 1, 2, 2, 'Tuesday', 'January', 1);
		INSERT INTO dim_currency VALUES (1, 'GBP', 'Pound Sterling');
		INSERT INTO dim_counterparty VALUES (1, 'Fahey and Sons', '6826 Herzog Via', NULL, 'Avon', 'New Patienceburgh', '28441', 'Turkey', '1803 637401');
		INSERT INTO dim_payment_type VALUES (1, 'SALES_RECEIPT');
		INSERT INTO dim_transaction VALUES (1, 'SALE', 1, NULL);
		INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated, transaction_id,
			counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date)
			VALUES (1, '2024-01-02', '10:11:12.345', '2024-01-02', '10:11:12.345', 1, 1, 1234.56, 1, 1, true, '2024-01-02');
		INSERT INTO sandstone_loads (sequence, batch, rows, source_newest, seconds)
			VALUES (1, '000000000001', '{"fact_payment": 1}', '2024-01-02 10:11:12.345+00', 0.5);`)
	before := tableRows(t, e.url)

	migrateOnly(t, e.url, "public", len(migrations))
	after := tableRows(t, e.url)
	for table, rows := range before {
		if after[table] != rows {
			t.Errorf("%s after the upgrade:\n%s\nwant\n%s", table, after[table], rows)
		}
	}
	if after["fact_payment"] == "" || after["sandstone_loads"] == "" {
		t.Fatalf("no rows to compare: %v", after)
	}
	if got := joined(query(t, e.url, "SELECT run_id, manifest_sha256 FROM sandstone_loads")); got != "NULL|NULL" {
		t.Errorf("the ledger row loaded before migration 2 has identity %s", got)
	}
	if got := joined(query(t, e.url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM sandstone_migrations")); got != "1,2,3,4,5" {
		t.Errorf("migrations recorded: %s", got)
	}
	cols, keys := schemaOfDB(t, e.url, "public")
	if cols != designSchema {
		t.Errorf("upgraded columns:\n%s\nwant\n%s", cols, designSchema)
	}
	if keys != designKeys {
		t.Errorf("upgraded keys:\n%s\nwant\n%s", keys, designKeys)
	}
	// The next payment version lands beside the old one, with the next id.
	pgtest.Exec(t, e.url, `INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated,
		transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date)
		VALUES (1, '2024-01-02', '10:11:12.345', '2024-01-02', '11:00:00', 1, 1, 1234.56, 1, 1, true, '2024-01-02')`)
	if got := joined(query(t, e.url, "SELECT payment_record_id::text, last_updated::text FROM fact_payment ORDER BY 1")); got != "1|10:11:12.345\n2|11:00:00" {
		t.Errorf("fact ids after the upgrade: %s", got)
	}
}

// tableRows lists, per table in public, every row as text; the ledger's
// rows with the columns of migration 1.
func tableRows(t *testing.T, url string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range query(t, url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> $1", migrationsTable) {
		sql := "SELECT x::text FROM " + pgx.Identifier{r[0]}.Sanitize() + " x ORDER BY 1"
		if r[0] == ledgerTable {
			sql = "SELECT concat_ws('|', sequence, batch, rows, source_newest, loaded_at, seconds) FROM " + ledgerTable + " ORDER BY sequence"
		}
		out[r[0]] = joined(query(t, url, sql))
	}
	return out
}

// shipped are the SHA-256 of the migrations that have shipped: a migration
// is never edited once warehouses were made with it.
var shipped = map[int]string{
	1: "a9c27563a6f9711c9474e27150b720def2f71755a1e51a4a49b67131aa370073",
	2: "8875503904b48b2c8e0d7305bf78b518dd426e8dd6e163d6db78d592892c00d6",
	3: "498f7780259742caf111488acfa203d3ccee378b6bc2966d2895d292b7946c40",
	4: "e906f430dffcbe76f958d97605067897cf17c5be87cdf21f19e6430fc7a53cf3",
	5: "1792e90c239a68067ea08e35b1a76c86bac83cb86c7236cec6a40365f1636e19",
}

func TestShippedMigrationsAreFrozen(t *testing.T) {
	t.Parallel()
	for _, m := range migrations {
		sum := sha256.Sum256([]byte(m.sql))
		want, ok := shipped[m.version]
		if !ok {
			t.Logf("migration %d (%s) is new: once it ships, add its SHA-256 %x to shipped", m.version, m.name, sum)
			continue
		}
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("migration %d (%s) changed (SHA-256 %s, shipped %s): add a migration instead", m.version, m.name, got, want)
		}
	}
	if len(migrations) < len(shipped) {
		t.Errorf("%d migrations, %d shipped", len(migrations), len(shipped))
	}
}

func TestReadMigrations(t *testing.T) {
	t.Parallel()
	file := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("-- migration: " + name + "\nSELECT 1;\n")}
	}
	ms, err := readMigrations(fstest.MapFS{
		"migrations/000002_b.up.sql": file("second"), "migrations/000001_a.up.sql": file("first"),
		"migrations/000001_a.down.sql": file("ignored")})
	if err != nil || len(ms) != 2 || ms[0].version != 1 || ms[0].name != "first" || ms[1].name != "second" {
		t.Fatalf("readMigrations: %+v, %v", ms, err)
	}
	for _, tc := range []struct {
		fs   fstest.MapFS
		want string
	}{
		{fstest.MapFS{}, "no migrations"},
		{fstest.MapFS{"migrations/000002_b.up.sql": file("b")}, "want version 1"},
		{fstest.MapFS{"migrations/1_a.up.sql": file("a")}, "want NNNNNN_title.up.sql"},
		{fstest.MapFS{"migrations/00000x_a.up.sql": file("a")}, "want NNNNNN_title.up.sql"},
		{fstest.MapFS{"migrations/000001_a.up.sql": {Data: []byte("CREATE TABLE x ();")}}, "the first line must be"},
	} {
		if _, err := readMigrations(tc.fs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.fs, err, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("mustMigrations took no migrations")
		}
	}()
	mustMigrations(fstest.MapFS{})
}

// A migration is told only once it took effect: when the check that shares
// its transaction refuses the load (here, a processed bucket without the
// batches the ledger records), the warehouse stays at its version and the
// log says nothing of migrating it.
func TestMigrationToldOnlyOnceCommitted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	migrateOnly(t, e.url, "public", 3)
	pgtest.Exec(t, e.url, `INSERT INTO sandstone_loads (sequence, batch, rows, seconds) VALUES (1, '000000000001', '{}', 0.1)`)
	var logs bytes.Buffer
	opts := e.opts()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := e.loadWith(t.Context(), opts); errkind.Of(err) != errkind.LedgerMismatch {
		t.Fatalf("load into a warehouse whose batches the bucket lacks: %v", err)
	}
	if v := pgtest.QueryInt(t, e.url, "SELECT max(version) FROM sandstone_migrations"); v != 3 || strings.Contains(logs.String(), "migrated") {
		t.Fatalf("after the refused load: version %d, log:\n%s", v, logs.String())
	}

	pgtest.Exec(t, e.url, `DELETE FROM sandstone_loads`)
	if _, err := e.loadWith(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "migrated warehouse"); n != len(migrations)-3 {
		t.Errorf("%d migrations told, want %d:\n%s", n, len(migrations)-3, logs.String())
	}
}

// Migration 4 rebuilds only the version keys it can rebuild unchanged: one
// that another table's foreign key references, or that its table is
// clustered on, is left as it was, and the migration still succeeds.
func TestMigration4LeavesKeysItWouldChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	migrateOnly(t, e.url, "public", 3)
	pgtest.Exec(t, e.url, `CREATE TABLE payment_notes (payment_id int, d date, t time,
			FOREIGN KEY (payment_id, d, t) REFERENCES fact_payment (payment_id, last_updated_date, last_updated));
		CLUSTER fact_sales_order USING fact_sales_order_version_key`)
	migrateOnly(t, e.url, "public", 4)
	got := joined(query(t, e.url, `SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conname LIKE '%version_key' ORDER BY 1`))
	want := "fact_payment UNIQUE (payment_id, last_updated_date, last_updated)\n" +
		"fact_purchase_order UNIQUE (last_updated_date, last_updated_time, purchase_order_id)\n" +
		"fact_sales_order UNIQUE (sales_order_id, last_updated_date, last_updated_time)"
	if got != want {
		t.Errorf("version keys after migration 4:\n%s\nwant\n%s", got, want)
	}
}
