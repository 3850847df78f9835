package warehouse

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// keysOf are the primary and unique keys of the tables whose names match
// like: name to "definition|index oid".
func keysOf(t *testing.T, url, like string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range query(t, url, `SELECT conname::text, pg_get_constraintdef(oid), conindid::text FROM pg_constraint
		WHERE contype IN ('p', 'u') AND conrelid::regclass::text LIKE $1`, like) {
		out[r[0]] = r[1] + "|" + r[2]
	}
	return out
}

// bulkEnv is a migrated warehouse where every batch into an empty table is
// big, with setup (SQL) run in it when not empty.
func bulkEnv(t *testing.T, setup string) *env {
	t.Helper()
	e := newEnv(t)
	e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1
	e.load(t) // migrates
	if setup != "" {
		pgtest.Exec(t, e.url, setup)
	}
	return e
}

func TestBulkIndexBuildKeepsTheKeys(t *testing.T) {
	t.Parallel()
	// Another table's foreign key needs fact_payment's primary key: that
	// one stays, and is maintained row by row.
	e := bulkEnv(t, "CREATE TABLE payment_note (payment_record_id int REFERENCES fact_payment (payment_record_id))")
	before := keysOf(t, e.url, `fact\_%`)
	if len(before) != 6 {
		t.Fatalf("fact table keys before the load: %v", before)
	}
	put(t, e.bucket, world(1))
	e.load(t)
	after := keysOf(t, e.url, `fact\_%`)
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("%s is gone after the initial load", name)
			continue
		}
		def, _, _ := strings.Cut(b, "|")
		if gotDef, _, _ := strings.Cut(a, "|"); gotDef != def {
			t.Errorf("%s is %q, was %q", name, gotDef, def)
		}
		if rebuilt := a != b; rebuilt != (name != "fact_payment_pkey") {
			t.Errorf("%s rebuilt %v (index %s, was %s)", name, rebuilt, a, b)
		}
	}
	if len(after) != len(before) {
		t.Errorf("fact table keys after the load: %v", after)
	}
	if got := joined(query(t, e.url, `SELECT count(*)::text, bool_and(convalidated)::text FROM pg_constraint
		WHERE contype = 'f' AND conrelid::regclass::text LIKE 'fact\_%'`)); got != "24|true" {
		t.Errorf("fact table foreign keys (count|validated): %s, want 24|true", got)
	}
	if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != "1" {
		t.Errorf("fact_sales_order has %s rows", got)
	}

	// A table with rows keeps its indexes, and they refuse a duplicate.
	put(t, e.bucket, batch{seq: 2, sales: []star.FactSalesOrder{sale(1, "2024-01-02", "10:11:12.345", 50, 1234),
		sale(1, "2024-01-03", "08:00:00.000", 1, 1)}})
	res := e.load(t)
	if got := res.Batches[0].Rows["fact_sales_order"]; got != 1 {
		t.Errorf("batch 2 wrote %d sales versions, want the new one only", got)
	}
	if again := keysOf(t, e.url, `fact\_%`); fmt.Sprint(again) != fmt.Sprint(after) {
		t.Errorf("keys of a table with rows changed:\n%v\nwas\n%v", again, after)
	}
}

// recorder is a slog handler that keeps each record's message and attributes.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	return nil
}

// has reports whether a line so far contains s.
func (r *recorder) has(s string) bool {
	return slices.ContainsFunc(r.snapshot(), func(l string) bool { return strings.Contains(l, s) })
}

// snapshot is a copy of the lines so far.
func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func TestDuplicateVersionInABatchIsStaged(t *testing.T) {
	t.Parallel()
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk %v", bulk), func(t *testing.T) {
			e := newEnv(t)
			if bulk {
				e.set.bulkCheckMinRows, e.set.bulkCheckRatio = 1, 1
			}
			b := world(1)
			v := sale(1, "2024-01-02", "10:11:12.345", 50, 1234)
			b.sales = []star.FactSalesOrder{v, sale(2, "2024-01-02", "11:00:00.000", 3, 300), v} // version 1 twice
			put(t, e.bucket, b)
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			res, err := e.loadWith(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Batches[0].Rows["fact_sales_order"]; got != 2 {
				t.Errorf("wrote %d sales versions, want 2", got)
			}
			if got := joined(query(t, e.url, `SELECT sales_order_id::text, units_sold::text FROM fact_sales_order
				ORDER BY 1`)); got != "1|50\n2|3" {
				t.Errorf("fact_sales_order:\n%s", got)
			}
			// The duplicate was refused by the COPY, or, copied without the
			// index, by building it; either way the batch was staged.
			want := "duplicate key value"
			if bulk {
				want = "could not create unique index"
			}
			staged := false
			for _, l := range rec.lines {
				staged = staged || strings.Contains(l, "staging them") && strings.Contains(l, "fact_sales_order") &&
					strings.Contains(l, want)
			}
			if !staged {
				t.Errorf("no log of the batch staged after %q:\n%s", want, strings.Join(rec.lines, "\n"))
			}
			if keys := keysOf(t, e.url, `fact\_%`); len(keys) != 6 {
				t.Errorf("fact table keys after the fallback: %v", keys)
			}
			if got := joined(query(t, e.url, `SELECT count(*)::text FROM pg_constraint
				WHERE contype = 'f' AND conrelid = 'fact_sales_order'::regclass AND convalidated`)); got != "9" {
				t.Errorf("fact_sales_order has %s valid foreign keys, want 9", got)
			}
		})
	}
}

// TestBulkLoadNumbersTheIDs loads three sales into an empty fact table in
// bulk, on sequences as a warehouse's owner may have left them: where the
// serial column's sequence counts up by one, load numbers the rows itself
// from where it stood, and the next batch's ids (PostgreSQL's) follow on;
// otherwise PostgreSQL numbers them. An id past the column's type fails
// the batch, as PostgreSQL's own nextval would, and writes nothing.
func TestBulkLoadNumbersTheIDs(t *testing.T) {
	t.Parallel()
	const seq = "fact_sales_order_sales_record_id_seq"
	for _, tc := range []struct {
		name, setup string
		numbered    bool
		want        string // the ids of batches 1 and 2, or the error
	}{
		{"a new sequence", "", true, "1,2,3|4"},
		{"a sequence set forward", "SELECT setval('" + seq + "', 1000)", true, "1001,1002,1003|1004"},
		{"a bigint column past int4", "ALTER TABLE fact_sales_order ALTER COLUMN sales_record_id TYPE bigint;" +
			"ALTER SEQUENCE " + seq + " AS bigint; SELECT setval('" + seq + "', 3000000000)", true,
			"3000000001,3000000002,3000000003|3000000004"},
		{"an identity column", "ALTER TABLE fact_sales_order ALTER COLUMN sales_record_id DROP DEFAULT; DROP SEQUENCE " + seq + ";" +
			"ALTER TABLE fact_sales_order ALTER COLUMN sales_record_id ADD GENERATED ALWAYS AS IDENTITY (START 7)", true, "7,8,9|10"},
		{"a sequence counting by two", "ALTER SEQUENCE " + seq + " INCREMENT BY 2", false, "1,3,5|7"},
		{"an integer column, its sequence past int4", "ALTER SEQUENCE " + seq + " AS bigint; SELECT setval('" + seq + "', 2147483646)",
			true, "sales_record_id reaches 2147483649, past an integer column's range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := bulkEnv(t, tc.setup)
			b := world(1)
			b.sales = append(b.sales, sale(2, "2024-01-02", "11:00:00.000", 3, 300), sale(3, "2024-01-02", "12:00:00.000", 4, 400))
			put(t, e.bucket, b)
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			_, err := e.loadWith(context.Background(), opts)
			if strings.HasPrefix(tc.want, "sales_record_id") {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("load: %v, want %q", err, tc.want)
				}
				if got := joined(query(t, e.url, "SELECT count(*)::text FROM fact_sales_order")); got != "0" {
					t.Errorf("the failed batch left %s sales", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(rec.lines, func(l string) bool {
				return strings.Contains(l, "table=fact_sales_order rows=3 written=3 direct=true") &&
					strings.Contains(l, fmt.Sprintf("index_keys=2 ids_numbered=%v", tc.numbered))
			}) {
				t.Errorf("no log of fact_sales_order loaded with ids_numbered=%v:\n%s", tc.numbered, strings.Join(rec.lines, "\n"))
			}
			put(t, e.bucket, laterSales(2, 1))
			e.load(t)
			ids := func(where string) string {
				return joined(query(t, e.url, "SELECT string_agg(sales_record_id::text, ',' ORDER BY sales_order_id) FROM fact_sales_order WHERE "+where))
			}
			got := ids("last_updated_date = '2024-01-02'") + "|" + ids("last_updated_date = '2024-01-03'")
			if got != tc.want {
				t.Errorf("ids %s, want %s", got, tc.want)
			}
			if got := joined(query(t, e.url, `SELECT sales_order_id::text, units_sold::text FROM fact_sales_order
				WHERE last_updated_date = '2024-01-02' ORDER BY 1`)); got != "1|50\n2|3\n3|4" {
				t.Errorf("fact_sales_order:\n%s", got)
			}
		})
	}
}

// TestBulkIndexBuildOfAnEmptyDimension loads the first batch into empty
// dimensions as a big one: each is copied without its primary key, which
// is built after, and the facts' foreign keys that reference it are
// dropped and added back, all of them as they were and validated. A
// dimension that a table holding rows, or another role's table, references
// keeps its key, as does dim_date, whose rows are always staged; an owner
// without CREATE on the schema, which building an index needs, keeps every
// key; and a batch with an id twice is refused by the key's build and
// staged, its latest value kept.
func TestBulkIndexBuildOfAnEmptyDimension(t *testing.T) {
	t.Parallel()
	const ownedBy = `DO $$ DECLARE r record; BEGIN
			FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'staff_note' LOOP
				EXECUTE format('ALTER TABLE %I OWNER TO sandstone_star_owner', r.tablename);
			END LOOP; END $$`
	for _, tc := range []struct {
		name, setup string
		kept        []string // the dimension keys not rebuilt, besides dim_date's ("all": none is)
		twice       bool     // staff 1 twice in the batch
		owner       string   // when set, the role that owns the star tables and loads
	}{
		{"every referencing table empty", "", nil, false, ""},
		{"a table with a row references dim_staff", "CREATE TABLE staff_note (staff_id int REFERENCES dim_staff (staff_id));" +
			"INSERT INTO staff_note VALUES (NULL)", []string{"dim_staff_pkey"}, false, ""},
		{"another role's empty table references dim_staff", `GRANT CREATE ON SCHEMA public TO sandstone_star_owner;
			CREATE TABLE staff_note (staff_id int REFERENCES dim_staff (staff_id));` + ownedBy,
			[]string{"dim_staff_pkey"}, false, "sandstone_star_owner"},
		// Building an index takes CREATE on the schema, even for the owner.
		{"the owner may not create in the schema", ownedBy, []string{"all"}, false, "sandstone_star_owner"},
		{"an id twice in the batch", "", []string{"dim_staff_pkey"}, true, ""}, // rolled back to before the COPY
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := bulkEnv(t, "")
			loader := e.url
			if tc.owner != "" {
				loader = asRole(t, e.url, tc.owner)
			}
			if tc.setup != "" {
				pgtest.Exec(t, e.url, tc.setup)
			}
			e.url = loader
			fks := `SELECT string_agg(conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' ||
				convalidated::text, E'\n' ORDER BY conrelid::regclass::text, conname) FROM pg_constraint WHERE contype = 'f'`
			fksBefore := joined(query(t, e.url, fks))
			before := keysOf(t, e.url, `dim\_%`)
			if len(before) != 8 {
				t.Fatalf("dimension keys before the load: %v", before)
			}
			b := world(1)
			if tc.twice {
				renamed := b.staff[0]
				renamed.LastName = "Renamed"
				b.staff = append(b.staff, renamed)
			}
			put(t, e.bucket, b)
			rec := &recorder{}
			opts := e.opts()
			opts.Logger = slog.New(rec)
			if _, err := e.loadWith(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			after := keysOf(t, e.url, `dim\_%`)
			for name, was := range before {
				is, ok := after[name]
				def, _, _ := strings.Cut(was, "|")
				gotDef, _, _ := strings.Cut(is, "|")
				// dim_date only gains dates: its rows are always staged.
				want := !slices.Contains(append(tc.kept, "dim_date_pkey"), name) && !slices.Contains(tc.kept, "all")
				switch rebuilt := is != was; {
				case !ok || gotDef != def:
					t.Errorf("%s is %q after the load, was %q", name, is, was)
				case rebuilt != want:
					t.Errorf("%s rebuilt %v, want %v (index %s, was %s)", name, rebuilt, want, is, was)
				}
			}
			if got := joined(query(t, e.url, fks)); got != fksBefore {
				t.Errorf("foreign keys after the load:\n%s\nbefore:\n%s", got, fksBefore)
			}
			if got := joined(query(t, e.url, `SELECT string_agg(staff_id || ' ' || last_name, ',' ORDER BY staff_id)
				FROM dim_staff`)); got != map[bool]string{false: "1 Franey,2 Beier", true: "1 Renamed,2 Beier"}[tc.twice] {
				t.Errorf("dim_staff: %s", got)
			}
			if got := joined(query(t, e.url, `SELECT (SELECT count(*) FROM dim_transaction) || ' ' ||
				(SELECT count(*) FROM fact_payment)`)); got != "2 1" {
				t.Errorf("dim_transaction and fact_payment rows: %s, want 2 1", got)
			}
			if staged := rec.has("could not create unique index \"dim_staff_pkey\""); staged != tc.twice {
				t.Errorf("dim_staff staged after its key's build refused a duplicate: %v, want %v:\n%s",
					staged, tc.twice, strings.Join(rec.snapshot(), "\n"))
			}
		})
	}
}
