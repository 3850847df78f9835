package ingest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// execIn runs sql in a session whose time zone is tz, as an application
// writer there would: LOCALTIMESTAMP is then the wall clock in tz.
func execIn(f *fixture, tz, sql string, args ...any) {
	f.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "SELECT set_config('timezone', $1, false)", tz); err != nil {
		f.t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// referenceRows creates the schema and one row of each reference table and
// a sales order, each stamped at the SQL expression at by a writer in tz.
func referenceRows(f *fixture, tz, at string) {
	f.exec(totesys.Schema)
	execIn(f, tz, strings.ReplaceAll(`
	INSERT INTO address VALUES (1,'1 A St',NULL,NULL,'Leeds','LS1','UK','0113', AT, AT);
	INSERT INTO counterparty VALUES (1,'Acme',1,NULL,NULL, AT, AT);
	INSERT INTO currency VALUES (1,'GBP', AT, AT);
	INSERT INTO department VALUES (1,'Sales',NULL,NULL, AT, AT);
	INSERT INTO design VALUES (1, AT,'Wooden','/usr','w.json', AT);
	INSERT INTO staff VALUES (1,'Ann','Lee',1,'a@x', AT, AT);
	INSERT INTO payment_type VALUES (1,'SALES_RECEIPT', AT, AT);
	INSERT INTO sales_order VALUES (1, AT, AT,1,1,1,100,3.94,1,'2024-01-02','2024-01-03',1);`, "AT", at))
}

const insertOrder = `INSERT INTO sales_order VALUES ($1, %[1]s, %[1]s,1,1,1,5,1.00,1,'2024-01-02','2024-01-03',1)`

// TestWindowFollowsTheTablesClock: whatever clock stamps last_updated, each
// new version lands, once, and a skew beyond the lookback is reported once.
func TestWindowFollowsTheTablesClock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tz   string
		// at stamps the rows; n numbers the later orders.
		at       func(n int) string
		skewSign int
	}{
		{"a writer west of UTC", "America/New_York", func(int) string { return "LOCALTIMESTAMP" }, -1},
		{"a writer east of UTC", "Asia/Tokyo", func(int) string { return "LOCALTIMESTAMP" }, +1},
		{"history loaded in order", "UTC", func(n int) string {
			return fmt.Sprintf("'2023-01-01'::timestamp + interval '%d days'", n)
		}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			referenceRows(f, tc.tz, tc.at(0))
			if res := f.run(); res.Total() != 8 {
				t.Fatalf("first batch: %v", res.Rows)
			}
			for n := 1; n <= 3; n++ {
				execIn(f, tc.tz, fmt.Sprintf(insertOrder, tc.at(n)), n+1)
				res := f.run()
				if res.Total() != 1 || res.Rows["sales_order"] != 1 {
					t.Fatalf("order %d: landed %v, want the one new order", n+1, res.Rows)
				}
				if s := res.Skew["sales_order"]; s == 0 || (s > 0) != (tc.skewSign > 0) {
					t.Errorf("order %d: skew %s, want sign %d", n+1, s, tc.skewSign)
				}
			}
			if res := f.run(); res.Total() != 0 {
				t.Fatalf("a rerun landed %v again", res.Rows)
			}
			if n := strings.Count(f.logs.String(), "sales_order.last_updated runs"); n != 1 {
				t.Errorf("%d skew warnings, want exactly one:\n%s", n, f.logs)
			}
		})
	}
}

// TestRaisedLookbackLandsNothingTwice: a wider lookback never reaches
// below the versions ingest remembers.
func TestRaisedLookbackLandsNothingTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f) // stamped a day and an hour back
	if res := f.run(); res.Total() != 10 {
		t.Fatalf("first batch: %v", res.Rows)
	}
	for _, lookback := range []time.Duration{48 * time.Hour, 72 * time.Hour} {
		o := f.opts()
		o.Lookback = lookback
		res, err := Run(context.Background(), o)
		if err != nil || res.Total() != 0 {
			t.Fatalf("lookback %s: landed %v again (%v)", lookback, res.Rows, err)
		}
	}
	f.exec(fmt.Sprintf(insertOrder, "LOCALTIMESTAMP"), 2)
	o := f.opts()
	o.Lookback = 72 * time.Hour
	for i, want := range []int64{1, 0, 0} {
		res, err := Run(context.Background(), o)
		if err != nil || res.Total() != want {
			t.Fatalf("run %d with the raised lookback: landed %v, want %d (%v)", i, res.Rows, want, err)
		}
	}
}

// TestTimestamptzIsReadInUTC: a last_updated altered to timestamptz lands
// as the same instant whatever the database's time zone, and once.
func TestTimestamptzIsReadInUTC(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	db := pgtestDatabaseName(t, f)
	f.exec(`ALTER TABLE design ALTER COLUMN last_updated TYPE timestamptz USING last_updated AT TIME ZONE 'UTC'`)
	f.exec(`UPDATE design SET last_updated = '2026-03-01 12:00:00.5+00', created_at = '2026-03-01 12:00:00.5'`)
	f.exec(`ALTER DATABASE ` + pgx.Identifier{db}.Sanitize() + ` SET timezone = 'America/New_York'`)
	res := f.run()
	d := rows[totesys.Design](t, f.bucket, res.Sequence, "design")
	want := time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)
	if len(d) != 1 || !d[0].LastUpdated.Equal(want) {
		t.Fatalf("design landed as %+v, want last_updated %s", d, want)
	}
	for i := 0; i < 2; i++ {
		if res := f.run(); res.Total() != 0 {
			t.Fatalf("rerun %d landed %v again", i, res.Rows)
		}
	}
}

func pgtestDatabaseName(t *testing.T, f *fixture) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// TestStampsBeyondTime: 'infinity' and a year past 9999 land as they are,
// once, without moving the watermark or stopping other tables.
func TestStampsBeyondTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.exec(`INSERT INTO design VALUES (2, LOCALTIMESTAMP, 'Forever', '/f', 'f', 'infinity');
		INSERT INTO design VALUES (3, LOCALTIMESTAMP, 'Far', '/f', 'f', '12000-01-01');
		INSERT INTO design VALUES (4, LOCALTIMESTAMP, 'Never', '/f', 'f', '-infinity')`)
	res := f.run()
	if res.Total() != 13 || res.Rows["design"] != 4 {
		t.Fatalf("first batch: %v", res.Rows)
	}
	var m lake.Manifest
	if err := f.bucket.ReadManifest(context.Background(), res.Sequence, &m); err != nil {
		t.Fatal(err)
	}
	obj, _ := m.Table("design")
	if obj.Watermark == nil || obj.Watermark.To.Year() > 9999 || obj.Watermark.From.Year() < 1 {
		t.Errorf("design watermark %+v holds a stamp beyond time", obj.Watermark)
	}
	// Read as µs: a time.Time cannot hold them.
	type stamp struct {
		ID int32 `parquet:"design_id"`
		Us int64 `parquet:"last_updated"`
	}
	got := map[int32]int64{}
	for _, d := range rows[stamp](t, f.bucket, res.Sequence, "design") {
		got[d.ID] = d.Us
	}
	if got[2] != math.MaxInt64 || got[4] != math.MinInt64 || got[3] != time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() {
		t.Errorf("stamps landed as %v", got)
	}
	for i := 0; i < 2; i++ {
		if res := f.run(); res.Total() != 0 {
			t.Fatalf("rerun %d landed %v again", i, res.Rows)
		}
	}
	f.exec(`INSERT INTO design VALUES (5, LOCALTIMESTAMP, 'New', '/n', 'n', LOCALTIMESTAMP)`)
	if res := f.run(); res.Total() != 1 || res.Rows["design"] != 1 {
		t.Fatalf("after the stamps beyond time: landed %v, want the new design", res.Rows)
	}
}

// TestLandedSetStaysSmall: the versions kept to tell the next window
// apart are those within the lookback of the newest stamp, however many
// rows an initial load reads.
func TestLandedSetStaysSmall(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	smallSource(f)
	f.exec(`INSERT INTO design SELECT g, t, 'D', '/d', 'd', t
		FROM generate_series(2, 5001) g, LATERAL (SELECT LOCALTIMESTAMP - (5001 - g) * interval '1 second' AS t) s`)
	f.run()
	_, st, err := LoadState(context.Background(), f.bucket)
	if err != nil {
		t.Fatal(err)
	}
	// A lookback of five minutes keeps the last 300 s of designs.
	if n := len(st.Tables["design"].Recent); n < 290 || n > 310 {
		t.Fatalf("design keeps %d recent versions, want about 300", n)
	}
}

// TestCapturedStampsBeyondTime: capture lands stamps beyond time as they
// are, its state still saves (a spilled range newest at year 9999), and a
// poll that takes over tells those versions apart.
func TestCapturedStampsBeyondTime(t *testing.T) {
	t.Parallel()
	f := walFixture(t)
	smallSource(f)
	f.run()
	f.exec(`INSERT INTO design VALUES (2, LOCALTIMESTAMP, 'Forever', '/f', 'f', 'infinity');
		INSERT INTO design VALUES (3, LOCALTIMESTAMP, 'Far', '/f', 'f', '12000-01-01');
		INSERT INTO design VALUES (4, LOCALTIMESTAMP, 'Never', '/f', 'f', '-infinity')`)
	if res := f.run(); res.Rows["design"] != 3 {
		t.Fatalf("captured %v, want the three designs", res.Rows)
	}
	if res := f.run(); res.Total() != 0 {
		t.Fatalf("a rerun landed %v again", res.Rows)
	}
	p := *f
	p.capture = config.CapturePoll
	f.exec(`INSERT INTO design VALUES (5, LOCALTIMESTAMP, 'New', '/n', 'n', LOCALTIMESTAMP)`)
	if res := p.run(); res.Total() != 1 || res.Rows["design"] != 1 {
		t.Fatalf("the poll after capture landed %v, want the new design alone", res.Rows)
	}
}
