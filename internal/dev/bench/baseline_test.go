package bench

import (
	"context"
	"testing"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

func seeded(t *testing.T, orders int) (string, synth.Stats) {
	t.Helper()
	src := pgtest.NewDatabase(t)
	stats, err := synth.Seed(context.Background(), src, synth.SeedOptions{SalesOrders: orders, RandomSeed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return src, stats
}

func TestBaselineCopiesEveryRow(t *testing.T) {
	ctx := context.Background()
	src, stats := seeded(t, 300)
	dst := pgtest.NewDatabase(t)
	names := make([]string, len(totesys.Tables))
	for i, tb := range totesys.Tables {
		names[i] = tb.Name
	}
	// Twice: a second run replaces the first one's tables.
	for range 2 {
		got, err := Baseline(ctx, src, dst, "base line", names)
		if err != nil {
			t.Fatal(err)
		}
		if got.Total() != stats.Total() || got.Duration <= 0 {
			t.Fatalf("copied %d rows in %v, want %d", got.Total(), got.Duration, stats.Total())
		}
		for _, name := range names {
			n := pgtest.QueryInt(t, dst, "SELECT count(*) FROM "+ident("base line", name))
			if n != stats[name] || got.Rows[name] != n {
				t.Errorf("%s: %d rows in the copy, reported %d, want %d", name, n, got.Rows[name], stats[name])
			}
		}
	}
	// Same values, column for column; the source's enum is text there.
	if n := pgtest.QueryInt(t, dst, `SELECT count(*) FROM "base line".transaction WHERE transaction_type = 'SALE'`); n != stats["sales_order"] {
		t.Errorf("%d SALE transactions copied, want %d", n, stats["sales_order"])
	}
	want := pgtest.QueryInt(t, src, "SELECT sum(payment_amount * 100)::bigint FROM payment")
	if got := pgtest.QueryInt(t, dst, `SELECT sum(payment_amount * 100)::bigint FROM "base line".payment`); got != want {
		t.Errorf("payments sum to %d cents in the copy, %d in the source", got, want)
	}
	for col, typ := range map[string]string{"transaction_type": "text", "created_at": "timestamp without time zone"} {
		if n := pgtest.QueryInt(t, dst, `SELECT count(*) FROM information_schema.columns
			WHERE table_schema = 'base line' AND table_name = 'transaction' AND column_name = $1 AND data_type = $2`, col, typ); n != 1 {
			t.Errorf("transaction.%s is not %s in the copy", col, typ)
		}
	}
}

func TestBaselineFails(t *testing.T) {
	ctx := context.Background()
	src, _ := seeded(t, 10)
	dst := pgtest.NewDatabase(t)
	if _, err := Baseline(ctx, src, dst, "b", []string{"no_such_table"}); err == nil {
		t.Error("a missing table was copied")
	}
	if _, err := Baseline(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", dst, "b", []string{"payment"}); err == nil {
		t.Error("an unreachable source was copied")
	}
	if _, err := Baseline(ctx, src, "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "b", []string{"payment"}); err == nil {
		t.Error("copied into an unreachable warehouse")
	}
	// A COPY failing midway (here: into a table whose columns do not fit)
	// is an error, not a short count.
	pgtest.Exec(t, dst, `CREATE SCHEMA s; CREATE TABLE s.t (a int)`)
	if _, err := copyTable(ctx, connect(t, src), connect(t, dst), "COPY payment TO STDOUT", "COPY s.t FROM STDIN"); err == nil {
		t.Error("a COPY into the wrong columns succeeded")
	}
	if _, err := copyTable(ctx, connect(t, src), connect(t, dst), "COPY no_such_table TO STDOUT", "COPY s.t FROM STDIN"); err == nil {
		t.Error("a COPY out of a missing table succeeded")
	}
}
