// Package demo runs Sandstone end to end on one machine with nothing
// configured: throwaway source and warehouse servers, a seeded totesys, the
// pipeline, then a few cycles of simulated business, and a summary.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
	"github.com/sandstone-data/sandstone/internal/dev/sandbox"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// Options shape a demo.
type Options struct {
	// Dir holds everything the demo makes; --clean removes it.
	Dir string
	// SalesOrders is the size of the seeded source.
	SalesOrders int
	// Cycles of simulated business after the initial load.
	Cycles int
	Out    io.Writer
	Logger *slog.Logger
	// Self is how the user runs this program, for the closing hint
	// ("sandstone" when empty).
	Self string
}

// Summary is what the demo ends with.
type Summary struct {
	Counts    map[string]int64
	Freshness time.Duration
	PsqlLine  string
	Elapsed   time.Duration
}

// Run runs the demo. It leaves the servers running so that the warehouse
// can be queried; sandbox.Clean(opts.Dir) removes everything.
func Run(ctx context.Context, opts Options) (Summary, error) {
	start := time.Now()
	out := opts.Out
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format+"\n", args...) }

	self := opts.Self
	if self == "" {
		self = "sandstone"
	}
	say("Starting throwaway PostgreSQL servers for the source and the warehouse in %s ...", opts.Dir)
	// The ports of the last demo in Dir, if any: the settings it printed
	// keep working from one demo to the next.
	sb, err := sandbox.StartOn(ctx, opts.Dir, sandbox.SavedPorts(opts.Dir))
	if err != nil {
		if ctx.Err() != nil {
			say("\nInterrupted. Remove what was made with:\n  %s demo --clean --dir %s", self, opts.Dir)
			return Summary{}, ErrInterrupted
		}
		if errors.Is(err, pgserver.ErrPortTaken) {
			return Summary{}, fmt.Errorf("demo: %w; the demo keeps its ports from one run to the next, so that the settings it printed keep working: "+
				"stop what listens there, or start afresh on new ports with '%s demo --clean --dir %s'", err, self, opts.Dir)
		}
		return Summary{}, err
	}
	sum, err := run(ctx, opts, sb, say)
	if ctx.Err() != nil {
		stopErr := sb.Stop()
		say("\nInterrupted: the demo's servers are stopped (%v); its files stay in %s. Remove them with:\n  %s demo --clean --dir %s",
			errOrNone(stopErr), opts.Dir, self, opts.Dir)
		return sum, ErrInterrupted
	}
	if err != nil {
		return sum, err
	}
	sum.Elapsed = time.Since(start)
	say("Demo finished in %.1fs.", sum.Elapsed.Seconds())
	whatNext(say, sb, sum.PsqlLine, self, opts.Dir)
	return sum, nil
}

// ErrInterrupted is returned when the demo was stopped by a signal.
var ErrInterrupted = errors.New("demo interrupted")

func errOrNone(err error) string {
	if err != nil {
		return "with an error: " + err.Error()
	}
	return "cleanly"
}

// whatNext tells how to go on with the demo's servers and buckets: the
// program on PATH (when it was run by a path, as make demo runs
// ./bin/sandstone) and the settings that make every other command work
// against the demo, its alert state kept with it. The servers keep their
// ports from one demo to the next, so the settings stay good.
func whatNext(say func(string, ...any), sb *sandbox.Sandbox, psql, self, dir string) {
	say("\nThe servers are still running. Query the warehouse with:\n  %s", psql)
	say("\nWhat next: paste these lines; they make every sandstone command work against the demo")
	say("(the next demo in %s keeps the same ports, so they go on working):", dir)
	name := self
	if bin := filepath.Dir(self); bin != "." || strings.ContainsRune(self, filepath.Separator) {
		if abs, err := filepath.Abs(bin); err == nil {
			say("  export PATH=\"%s:$PATH\"", abs)
			name = filepath.Base(self)
		}
	}
	cfg := sb.Config
	for _, e := range []struct{ name, value string }{
		{config.EnvSource, cfg.SourceURL},
		{config.EnvWarehouse, cfg.WarehouseURL},
		{config.EnvIngestBucket, cfg.IngestBucket},
		{config.EnvProcessedBucket, cfg.ProcessedBucket},
		{config.EnvAlertState, filepath.Join(sb.Dir, "alerts.json")},
	} {
		say("  export %s='%s'", e.name, e.value)
	}
	say("then, for example:")
	say("  %s status        # what each stage has done, what waits, freshness, rejects", name)
	say("  %s simulate      # the business changes a few source rows", name)
	say("  %s run --once    # one cycle of the pipeline (without --once: every 10m until Ctrl-C)", name)
	say("  %s run --metrics-addr 127.0.0.1:9464   # the pipeline every 10m, and its status page:", name)
	say("                   # open http://127.0.0.1:9464/ (the pipeline, its lag, the warehouse's sales)")
	say("  %s audit         # prove the source, the buckets and the warehouse agree", name)
	say("Remove everything (the alert state too) with:\n  %s demo --clean --dir %s", name, dir)
}

// run is the demo once its servers run.
func run(ctx context.Context, opts Options, sb *sandbox.Sandbox, say func(string, ...any)) (Summary, error) {
	say("Seeding a synthetic totesys with %d sales orders ...", opts.SalesOrders)
	t0 := time.Now()
	stats, err := synth.Seed(ctx, sb.Config.SourceURL, synth.SeedOptions{SalesOrders: opts.SalesOrders, RandomSeed: 1})
	if err != nil {
		return Summary{}, fmt.Errorf("demo: seed: %w", err)
	}
	say("  %d source rows in %.1fs", stats.Total(), time.Since(t0).Seconds())

	p, err := pipeline.Open(ctx, sb.Config, opts.Logger)
	if err != nil {
		return Summary{}, err
	}
	defer func() { _ = p.Close() }()
	runner := &pipeline.Runner{Stages: p.Stages(), Retries: 1, Backoff: time.Second, Logger: opts.Logger}
	cycle := func(title string) error {
		say("\n%s", title)
		reports, err := runner.Cycle(ctx)
		for _, r := range reports {
			r.Write(opts.Out)
		}
		return err
	}
	if err := cycle("Initial load: ingest -> transform -> load"); err != nil {
		return Summary{}, err
	}
	rnd := rand.New(rand.NewPCG(1, 2)) // #nosec G404 -- simulated business, not security
	for i := 1; i <= opts.Cycles; i++ {
		a := synth.TypicalStep(rnd)
		a.NewSalesOrders += 5
		a.PaymentsPaid += 5
		if i == 1 {
			a.AddressChanges, a.DepartmentChanges = 1, 1
		}
		changed, err := synth.Simulate(ctx, sb.Config.SourceURL, a, rnd)
		if err != nil {
			return Summary{}, fmt.Errorf("demo: simulate: %w", err)
		}
		if err := cycle(fmt.Sprintf("Cycle %d: the business changed %d source rows (%s)", i, changed.Total(), tableCounts(changed))); err != nil {
			return Summary{}, err
		}
	}

	sum := Summary{PsqlLine: fmt.Sprintf("psql %q", sb.Config.WarehouseURL)}
	wh, err := warehouse.Open(ctx, sb.Config.WarehouseURL, sb.Config.WarehouseSchema)
	if err != nil {
		return sum, err
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	if sum.Counts, err = wh.Counts(ctx); err != nil {
		return sum, err
	}
	last, err := wh.LastLoad(ctx)
	if err != nil {
		return sum, err
	}
	sum.Freshness = last.Lag
	say("\nWarehouse tables:")
	for _, t := range star.Tables {
		say("  %-20s %9d rows", t.Name, sum.Counts[t.Name])
	}
	if err := salesByMonth(ctx, sb.Config.WarehouseURL, opts.Out); err != nil {
		return sum, err
	}
	say("\nFreshness: the newest source change reached the warehouse %.1fs after it was made.", sum.Freshness.Seconds())
	return sum, nil
}

// SalesByMonth is the demo's sample analytic query: the value of the
// current version of each sales order, by month of creation and currency.
const SalesByMonth = `
WITH current_orders AS (
    SELECT DISTINCT ON (sales_order_id) *
      FROM fact_sales_order
     ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC)
SELECT d.year, d.month, d.month_name, c.currency_code,
       count(*) AS orders, sum(o.units_sold * o.unit_price) AS value
  FROM current_orders o
  JOIN dim_date d ON d.date_id = o.created_date
  JOIN dim_currency c ON c.currency_id = o.currency_id
 GROUP BY d.year, d.month, d.month_name, c.currency_code
 ORDER BY d.year DESC, d.month DESC, c.currency_code
 LIMIT 9`

func salesByMonth(ctx context.Context, url string, out io.Writer) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, SalesByMonth)
	if err != nil {
		return fmt.Errorf("demo: sales by month: %w", err)
	}
	defer rows.Close()
	_, _ = fmt.Fprintln(out, "\nSales by month and currency (current version of each order, newest months):")
	_, _ = fmt.Fprintf(out, "  %-16s %-8s %7s %18s\n", "month", "currency", "orders", "value")
	for rows.Next() {
		var year, month, orders int64
		var monthName, code, value string
		if err := rows.Scan(&year, &month, &monthName, &code, &orders, &value); err != nil {
			return fmt.Errorf("demo: sales by month: %w", err)
		}
		_, _ = fmt.Fprintf(out, "  %-16s %-8s %7d %18s\n", fmt.Sprintf("%s %d", monthName, year), code, orders, value)
	}
	return rows.Err()
}

func tableCounts(m map[string]int64) string {
	names := make([]string, 0, len(m))
	for t, n := range m {
		if n > 0 {
			names = append(names, t)
		}
	}
	sort.Strings(names)
	s := ""
	for i, t := range names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", t, m[t])
	}
	return s
}
