package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/status"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// install is a source, a warehouse and two file buckets.
func install(t *testing.T) config.Config {
	dir := t.TempDir()
	return config.Config{
		SourceURL:       pgtest.NewDatabase(t),
		WarehouseURL:    pgtest.NewDatabase(t),
		IngestBucket:    filepath.Join(dir, "ingested"),
		ProcessedBucket: filepath.Join(dir, "processed"),
		WarehouseSchema: "public",
		Lookback:        5 * time.Minute,
	}
}

func open(t *testing.T, cfg config.Config) *Pipeline {
	p, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func cycle(t *testing.T, cfg config.Config) []Report {
	t.Helper()
	r := &Runner{Stages: open(t, cfg).Stages()}
	reports, err := r.Cycle(context.Background())
	if err != nil {
		t.Fatalf("cycle: %v", err)
	}
	return reports
}

func counts(t *testing.T, cfg config.Config) map[string]int64 {
	t.Helper()
	w, err := warehouse.Open(context.Background(), cfg.WarehouseURL, cfg.WarehouseSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	c, err := w.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSnapshotEndToEnd moves the real snapshot through all three stages
// into an empty warehouse, then changes, replays and a crash between
// stages.
func TestSnapshotEndToEnd(t *testing.T) {
	cfg := install(t)
	pgtest.LoadSnapshot(t, cfg.SourceURL)
	// Replay history: payments paid after 2024-11-01 start unpaid.
	pgtest.Exec(t, cfg.SourceURL, `
		CREATE TABLE paid_later AS SELECT * FROM payment WHERE paid AND last_updated > '2024-11-01';
		UPDATE payment SET paid = false, last_updated = created_at WHERE payment_id IN (SELECT payment_id FROM paid_later)`)
	paidLater := pgtest.QueryInt(t, cfg.SourceURL, "SELECT count(*) FROM paid_later")
	if paidLater == 0 {
		t.Fatal("the snapshot has no payment paid after 2024-11-01")
	}
	cycle(t, cfg)
	want := map[string]string{
		"fact_sales_order":    "SELECT count(*) FROM sales_order",
		"fact_purchase_order": "SELECT count(*) FROM purchase_order",
		"fact_payment":        "SELECT count(*) FROM payment",
		"dim_transaction":     "SELECT count(*) FROM transaction",
		"dim_location":        "SELECT count(*) FROM address",
		"dim_counterparty":    "SELECT count(*) FROM counterparty",
		"dim_staff":           "SELECT count(*) FROM staff",
		"dim_currency":        "SELECT count(*) FROM currency",
		"dim_design":          "SELECT count(*) FROM design",
		"dim_payment_type":    "SELECT count(*) FROM payment_type",
	}
	got := counts(t, cfg)
	for table, q := range want {
		if n := pgtest.QueryInt(t, cfg.SourceURL, q); got[table] != n {
			t.Errorf("%s: %d rows, source has %d", table, got[table], n)
		}
	}
	// Every date any fact refers to is in dim_date.
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM fact_sales_order f
		WHERE NOT EXISTS (SELECT 1 FROM dim_date d WHERE d.date_id = f.agreed_delivery_date)`); n != 0 {
		t.Errorf("%d sales orders with an agreed delivery date missing from dim_date", n)
	}

	// The business goes on: the later payments are paid, an address moves.
	pgtest.Exec(t, cfg.SourceURL, `
		UPDATE payment p SET paid = true, last_updated = LOCALTIMESTAMP FROM paid_later l WHERE p.payment_id = l.payment_id;
		UPDATE address SET city = 'New Leeds', last_updated = LOCALTIMESTAMP WHERE address_id = 15`)
	cycle(t, cfg)
	after := counts(t, cfg)
	if after["fact_payment"] != got["fact_payment"]+paidLater {
		t.Errorf("fact_payment %d after paying %d, want %d", after["fact_payment"], paidLater, got["fact_payment"]+paidLater)
	}
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM dim_counterparty WHERE counterparty_legal_city = 'New Leeds'`); n == 0 {
		t.Error("counterparty 1 (legal address 15) did not follow its address")
	}
	if n := pgtest.QueryInt(t, cfg.WarehouseURL, `SELECT count(*) FROM fact_payment WHERE payment_id = (SELECT min(payment_id) FROM fact_payment WHERE paid)`); n < 1 {
		t.Error("no history for a paid payment")
	}

	// Replaying the cycle changes nothing.
	for _, r := range cycle(t, cfg) {
		if r.Total() != 0 {
			t.Errorf("replayed cycle: %s wrote %v", r.Stage, r.Rows)
		}
	}

	// A crash between stages: ingest lands a batch, then the process dies;
	// a fresh process resumes with transform and load.
	pgtest.Exec(t, cfg.SourceURL, `UPDATE sales_order SET units_sold = units_sold + 1, last_updated = LOCALTIMESTAMP WHERE sales_order_id <= 10`)
	in, _ := open(t, cfg).Stage(Ingest)
	if rep, err := in.Run(context.Background(), Run{}); err != nil || rep.Total() != 10 {
		t.Fatalf("ingest before the crash: %+v %v", rep, err)
	}
	cycle(t, cfg)
	if n := counts(t, cfg)["fact_sales_order"]; n != after["fact_sales_order"]+10 {
		t.Errorf("after the crash: fact_sales_order %d, want %d", n, after["fact_sales_order"]+10)
	}

	st := status.Gather(context.Background(), cfg, filepath.Join(t.TempDir(), "none.json"))
	is := func(n *int64, want int64) bool { return n != nil && *n == want }
	if !is(st.IngestedBatch, 3) || !is(st.LoadedBatch, 3) || !is(st.PendingLoad, 0) || !is(st.PendingTransform, 0) || len(st.Problems) != 0 {
		t.Errorf("status: %+v", st)
	}
	var text strings.Builder
	_ = st.WriteText(&text)
	if !strings.Contains(text.String(), "fact_sales_order") || !strings.Contains(text.String(), "sales_order") {
		t.Errorf("status text:\n%s", text.String())
	}
}

// TestConcurrentCycles runs two whole pipelines at once over one
// installation: each version lands once.
func TestConcurrentCycles(t *testing.T) {
	cfg := install(t)
	pgtest.LoadSnapshot(t, cfg.SourceURL)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &Runner{Stages: open(t, cfg).Stages(), Retries: 2, Backoff: 10 * time.Millisecond}
			if _, err := r.Cycle(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	cycle(t, cfg) // whatever one run left waiting
	if n := counts(t, cfg)["fact_payment"]; n != 15836 {
		t.Fatalf("fact_payment %d, want 15836", n)
	}
}

func TestUnknownStage(t *testing.T) {
	if _, err := (&Pipeline{}).Stage("compact"); err == nil {
		t.Fatal("an unknown stage was accepted")
	}
	if _, err := Open(context.Background(), config.Config{}, nil); err == nil {
		t.Fatal("no buckets accepted")
	}
}

// TestEveryLineCarriesStageAndRunID: through the one path, every log line
// of every stage names its stage and its run, load's included, and the run
// id in the lines is the report's.
func TestEveryLineCarriesStageAndRunID(t *testing.T) {
	cfg := install(t)
	pgtest.LoadSnapshot(t, cfg.SourceURL)
	pgtest.Exec(t, cfg.SourceURL, "ANALYZE") // ingest's estimate of a first read is the planner's
	var buf lambdatest.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	p.ProgressEvery = time.Nanosecond // a progress line for every chunk read
	reports, err := (&Runner{Stages: p.Stages(), Logger: log}).Cycle(context.Background())
	if err != nil || len(reports) != 3 {
		t.Fatalf("cycle: %v, %d reports", err, len(reports))
	}
	ids := map[string]string{}
	for _, r := range reports {
		if r.RunID == "" {
			t.Errorf("%s: no run id in its report", r.Stage)
		}
		ids[r.Stage] = r.RunID
	}
	lines := 0
	progressed := map[string]bool{}
	for line := range strings.Lines(buf.String()) {
		var l struct {
			Msg   string `json:"msg"`
			Stage string `json:"stage"`
			RunID string `json:"run_id"`
			Table string `json:"table"`
			Rows  any    `json:"rows"` // a number, or a map per table
			Of    int64  `json:"of"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		lines++
		if n, ok := l.Rows.(float64); l.Msg == "progress" && l.Table != "" && ok && n > 0 && float64(l.Of) >= n {
			progressed[l.Stage] = true
		}
		if l.Stage == "" || l.RunID == "" || l.RunID != ids[l.Stage] {
			t.Errorf("line %q: stage %q, run_id %q (the %s report's is %q)", l.Msg, l.Stage, l.RunID, l.Stage, ids[l.Stage])
		}
		if strings.Count(line, `"stage"`) != 1 || strings.Count(line, `"run_id"`) != 1 {
			t.Errorf("stage or run_id twice in %q", line)
		}
	}
	if lines < 6 {
		t.Errorf("only %d log lines from a cycle", lines)
	}
	for _, s := range []string{Ingest, Transform, Load} {
		if !progressed[s] {
			t.Errorf("%s logged no progress (table, rows, of)", s)
		}
	}
}
