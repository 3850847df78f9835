package warehouse

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// replaceObject overwrites object key of file bucket b with the bytes of
// object from: a valid Parquet object, but not the one the manifest names.
func replaceObject(t *testing.T, b *lake.Bucket, key, from string) {
	t.Helper()
	dir := strings.TrimPrefix(b.URL(), "file://")
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(from))) // #nosec G304 -- a test's bucket
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(key)), data, 0o600); err != nil { // #nosec G703 -- a test's bucket
		t.Fatal(err)
	}
}

func staffNamed(name string, ids ...int32) []star.DimStaff {
	var out []star.DimStaff
	for _, id := range ids {
		out = append(out, star.DimStaff{StaffID: id, FirstName: name, LastName: "L", DepartmentName: "D", Location: "L", EmailAddress: "e"})
	}
	return out
}

// TestLoadRefusesASwappedObject: an object of a processed batch replaced by
// another valid Parquet object (another batch's) refuses that batch whole,
// by the staged path (a dimension with rows) and by the direct COPY (a
// fact), with object_mismatch naming the object and the bucket.
func TestLoadRefusesASwappedObject(t *testing.T) {
	t.Parallel()
	for _, table := range []string{"dim_staff", "fact_sales_order"} {
		t.Run(table, func(t *testing.T) {
			e := newEnv(t)
			put(t, e.bucket, world(1))
			e.load(t)
			m2 := put(t, e.bucket, batch{seq: 2, staff: staffNamed("Second", 1),
				sales: []star.FactSalesOrder{sale(2, "2024-01-03", "08:00:00.000", 1, 1)}})
			m3 := put(t, e.bucket, batch{seq: 3, staff: staffNamed("Third", 1, 2),
				sales: []star.FactSalesOrder{sale(3, "2024-01-03", "08:00:00.000", 1, 1), sale(4, "2024-01-03", "08:00:00.000", 1, 1)}})
			o2, _ := m2.Table(table)
			o3, _ := m3.Table(table)
			replaceObject(t, e.bucket, o3.Key, o2.Key)

			res, err := e.loadWith(context.Background(), e.opts())
			if errkind.Of(err) != errkind.ObjectMismatch {
				t.Fatalf("load: %v (kind %s), want %s", err, errkind.Of(err), errkind.ObjectMismatch)
			}
			for _, want := range []string{"load batch 000000000003", o3.Key, e.bucket.URL(), o3.SHA256,
				"the bucket holds", "put the original object back"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if len(res.Batches) != 1 || res.Batches[0].Sequence != 2 {
				t.Errorf("loaded %+v, want batch 2 only", res.Batches)
			}
			if n := pgtest.QueryInt(t, e.url, "SELECT max(sequence) FROM sandstone_loads"); n != 2 {
				t.Errorf("the ledger's newest batch is %d", n)
			}
			// Nothing of batch 3: neither its staff nor its sales.
			if got := joined(query(t, e.url, "SELECT staff_id::text, first_name FROM dim_staff ORDER BY 1")); got != "1|Second\n2|Deron" {
				t.Errorf("dim_staff:\n%s", got)
			}
			if got := joined(query(t, e.url, "SELECT sales_order_id::text FROM fact_sales_order ORDER BY 1")); got != "1\n2" {
				t.Errorf("fact_sales_order:\n%s", got)
			}
		})
	}
}

// TestLoadRefusesAnotherBucket: buckets wiped (or others) number their
// batches from 1 again; load refuses them with ledger_mismatch instead of
// taking them for the batches it loaded, and goes on loading from the right
// bucket.
func TestLoadRefusesAnotherBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	put(t, e.bucket, batch{seq: 2, staff: staffNamed("Second", 1)})
	e.load(t)
	before := e.counts(t)

	other, err := lake.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	refused := func(wants ...string) {
		t.Helper()
		opts := e.opts()
		opts.Processed = other
		res, err := e.loadWith(ctx, opts)
		if errkind.Of(err) != errkind.LedgerMismatch {
			t.Fatalf("load: %v (kind %s), want %s", err, errkind.Of(err), errkind.LedgerMismatch)
		}
		wants = append(wants, "the processed bucket "+other.URL()+" does not hold the batches this warehouse",
			"Point --processed-bucket at the bucket this warehouse was loaded from",
			"or rebuild the warehouse from these buckets into an empty schema")
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if len(res.Batches) != 0 {
			t.Errorf("loaded %+v", res.Batches)
		}
		if c := e.counts(t); !equalCounts(c, before) {
			t.Errorf("counts %v, were %v", c, before)
		}
	}

	// A bucket behind the ledger (wiped, and refilled with one batch).
	put(t, other, world(1))
	refused("the bucket has no batch 2")

	// A bucket with a batch 2 of its own, and more.
	put(t, other, batch{seq: 2, staff: staffNamed("Other", 1)})
	put(t, other, batch{seq: 3, staff: staffNamed("Other", 2)})
	var m lake.Manifest
	otherSum, err := other.ReadManifestSum(ctx, 2, &m)
	if err != nil {
		t.Fatal(err)
	}
	mineSum, err := e.bucket.ReadManifestSum(ctx, 2, &m)
	if err != nil {
		t.Fatal(err)
	}
	refused("batch 000000000002 in the ledger has manifest sha256 "+mineSum, "the bucket's has "+otherSum)

	// The right bucket goes on loading, and the ledger records each batch.
	put(t, e.bucket, batch{seq: 3, staff: staffNamed("Third", 1)})
	if res := e.load(t); len(res.Batches) != 1 || res.Batches[0].Sequence != 3 {
		t.Fatalf("loaded %+v", res.Batches)
	}
	sum3, err := e.bucket.ReadManifestSum(ctx, 3, &m)
	if err != nil {
		t.Fatal(err)
	}
	if got := joined(query(t, e.url, "SELECT sequence::text, run_id, manifest_sha256 FROM sandstone_loads ORDER BY 1")); got !=
		"1|test|"+sumOf(t, e.bucket, 1)+"\n2|test|"+mineSum+"\n3|test|"+sum3 {
		t.Errorf("ledger:\n%s", got)
	}
}

func sumOf(t *testing.T, b *lake.Bucket, seq int64) string {
	t.Helper()
	var m lake.Manifest
	sum, err := b.ReadManifestSum(context.Background(), seq, &m)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMigrationsUpgradeALoadedWarehouse: a warehouse at migration 1 with
// batches loaded gains the ledger's identity columns, NULL for the batches
// loaded before, which are not compared, the deletions table, the
// version keys led by the time and the corrections table; it ends
// identical to a fresh one.
func TestMigrationsUpgradeALoadedWarehouse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put(t, e.bucket, world(1))
	e.load(t)
	// Back to what migration 1 left: its ledger, without migration 2's columns.
	pgtest.Exec(t, e.url, `ALTER TABLE sandstone_loads DROP COLUMN run_id, DROP COLUMN manifest_sha256;
		DROP TABLE sandstone_deletions;
		DROP TABLE sandstone_corrections;
		ALTER TABLE fact_sales_order DROP CONSTRAINT fact_sales_order_version_key,
			ADD CONSTRAINT fact_sales_order_version_key UNIQUE (sales_order_id, last_updated_date, last_updated_time);
		ALTER TABLE fact_purchase_order DROP CONSTRAINT fact_purchase_order_version_key,
			ADD CONSTRAINT fact_purchase_order_version_key UNIQUE (purchase_order_id, last_updated_date, last_updated_time);
		ALTER TABLE fact_payment DROP CONSTRAINT fact_payment_version_key,
			ADD CONSTRAINT fact_payment_version_key UNIQUE (payment_id, last_updated_date, last_updated);
		DELETE FROM sandstone_migrations WHERE version > 1`)
	cols, _ := schemaOfDB(t, e.url, "public")
	want := strings.Replace(designSchema, ", run_id text null, manifest_sha256 text null", "", 1)
	want = strings.Replace(want, "sandstone_deletions: source_table text not null, id integer not null, seen_gone_at timestamp with time zone not null, batch text not null\n", "", 1)
	want = strings.Replace(want, "sandstone_corrections: fact_table text not null, record_id bigint not null, source_id integer not null, batch text not null, corrected_at timestamp with time zone not null, old_values jsonb not null, new_values jsonb not null\n", "", 1)
	if cols != want {
		t.Fatalf("the migration-1 warehouse:\n%s\nwant\n%s", cols, want)
	}

	put(t, e.bucket, batch{seq: 2, staff: staffNamed("Second", 1)})
	if res := e.load(t); len(res.Batches) != 1 || res.Batches[0].Sequence != 2 {
		t.Fatalf("loaded %+v", res.Batches)
	}
	if got := joined(query(t, e.url, "SELECT sequence::text, coalesce(run_id, 'NULL'), coalesce(manifest_sha256, 'NULL') FROM sandstone_loads ORDER BY 1")); got !=
		"1|NULL|NULL\n2|test|"+sumOf(t, e.bucket, 2) {
		t.Errorf("ledger:\n%s", got)
	}
	if got := joined(query(t, e.url, "SELECT version::text FROM sandstone_migrations ORDER BY 1")); got != "1\n2\n3\n4\n5" {
		t.Errorf("migrations: %s", got)
	}
	cols, keys := schemaOfDB(t, e.url, "public")
	if cols != designSchema || keys != designKeys {
		t.Errorf("the upgraded warehouse differs from a fresh one:\n%s\n%s", cols, keys)
	}
	if got := joined(query(t, e.url, "SELECT first_name FROM dim_staff WHERE staff_id = 1")); got != "Second" {
		t.Errorf("dim_staff: %s", got)
	}

	// The newest ledger row with no identity: only its sequence is checked.
	pgtest.Exec(t, e.url, "UPDATE sandstone_loads SET run_id = NULL, manifest_sha256 = NULL WHERE sequence = 2")
	put(t, e.bucket, batch{seq: 3, staff: staffNamed("Third", 1)})
	if res := e.load(t); len(res.Batches) != 1 {
		t.Fatalf("loaded %+v", res.Batches)
	}
}

// TestPreparedColumnTooShort: a pre-created varchar(n) column shorter than
// the values of the batches to load refuses the load up front, naming the
// column, its length, the length needed and the batch; nothing is written.
// Lengths are in characters, not bytes.
func TestPreparedColumnTooShort(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, alter string
		want        []string
	}{
		{"varchar(10)", "ALTER TABLE dim_staff ALTER email_address TYPE varchar(10)",
			[]string{"dim_staff.email_address holds at most 10 characters, and batch 000000000001 has a value of 32",
				`ALTER TABLE "public"."dim_staff" ALTER COLUMN "email_address" TYPE varchar(32)`}},
		{"a later batch", "ALTER TABLE dim_staff ALTER first_name TYPE varchar(11)",
			[]string{"dim_staff.first_name holds at most 11 characters, and batch 000000000002 has a value of 12"}},
		{"numeric(8,2)", "ALTER TABLE fact_payment ALTER payment_amount TYPE numeric(8,2)",
			[]string{"fact_payment.payment_amount is numeric(8,2), want numeric(10,2)"}},
		{"numeric(10,1)", "ALTER TABLE fact_sales_order ALTER unit_price TYPE numeric(10,1)",
			[]string{"fact_sales_order.unit_price is numeric(10,1), want numeric(10,2)"}},
		{"smallint", "ALTER TABLE dim_currency ALTER currency_id TYPE smallint",
			[]string{"dim_currency.currency_id is smallint, want int"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			pgtest.Exec(t, e.url, northcodersDDL)
			pgtest.Exec(t, e.url, "ALTER TABLE fact_sales_order DROP COLUMN note")
			pgtest.Exec(t, e.url, tc.alter)
			put(t, e.bucket, world(1))
			put(t, e.bucket, batch{seq: 2, staff: staffNamed("Renée-Éloïse", 1)}) // 12 characters, 15 bytes
			loadRefused(t, e, tc.want)
			if got := joined(query(t, e.url, `SELECT coalesce(string_agg(tablename, ','), 'none') FROM pg_tables
				WHERE schemaname = 'public' AND tablename LIKE 'sandstone%'`)); got != "none" {
				t.Errorf("tables written by a refused load: %s", got)
			}
			if n := pgtest.QueryInt(t, e.url, "SELECT count(*) FROM dim_date"); n != 0 {
				t.Errorf("dim_date has %d rows", n)
			}
		})
	}
	t.Run("long enough in characters", func(t *testing.T) {
		e := newEnv(t)
		pgtest.Exec(t, e.url, northcodersDDL)
		pgtest.Exec(t, e.url, "ALTER TABLE fact_sales_order DROP COLUMN note; ALTER TABLE dim_staff ALTER first_name TYPE varchar(12)")
		put(t, e.bucket, world(1))
		put(t, e.bucket, batch{seq: 2, staff: staffNamed("Renée-Éloïse", 1)})
		if res := e.load(t); len(res.Batches) != 2 {
			t.Fatalf("loaded %+v", res.Batches)
		}
		if got := joined(query(t, e.url, "SELECT first_name FROM dim_staff WHERE staff_id = 1")); got != "Renée-Éloïse" {
			t.Errorf("dim_staff: %s", got)
		}
	})
}
