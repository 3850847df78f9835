package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

// Freshness is what the freshness phase measured.
type Freshness struct {
	// Delays are, for each source change that reached the warehouse, the
	// time from its last_updated to its fact row being seen there.
	Delays []time.Duration
	// Changes is the number of source row versions (sales orders and
	// payments) the simulator wrote; Missing those never seen as fact rows
	// before the phase ended.
	Changes, Missing int64
	// RunPeakRSS is the peak resident set size of `sandstone run`, in bytes.
	RunPeakRSS int64
	// SimSeconds is how long the simulator took to write the changes.
	SimSeconds float64
}

// Percentile returns the p-th percentile of the delays.
func (f Freshness) Percentile(p float64) time.Duration {
	d := slices.Clone(f.Delays)
	slices.Sort(d)
	return percentile(d, p)
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted values by
// the nearest-rank method: the smallest value with at least p% of the
// values at or below it. It returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// freshnessPlan shapes the freshness phase.
type freshnessPlan struct {
	sourceURL, warehouseURL, schema string
	// changes is how many source row versions the simulator writes.
	changes int
	// interval is `sandstone run`'s; the simulator takes a step every
	// step (interval/5 when zero), and poll is how often the warehouse is
	// looked at.
	interval, step, poll time.Duration
	// orders, with a step given, are the sales orders each step updates
	// (their ids drawn at random, by primary key, in one transaction):
	// a writer fast enough for a rate of hundreds a second at any scale,
	// where the simulator's steps (one new sales order and one payment
	// paid, found by a scan) are not.
	orders int
	// timeout bounds the phase.
	timeout time.Duration
	// logPath receives the output of `sandstone run`.
	logPath string
	// follow runs it with --follow; quiet with no audit beside (a phase
	// that times one change alone).
	follow, quiet bool
}

// factVersion is a warehouse fact table with its serial id and the columns
// of its version's last_updated.
type factVersion struct{ table, serial, date, time string }

// factVersions are the fact tables whose rows the simulator's changes (sales
// orders and payments) become, as star.Tables declares them.
var factVersions = versionsOf("fact_sales_order", "fact_payment")

// versionsOf are the fact tables called names: their serial id, and the
// last-updated date and time of their version key (source id, date, time).
// A name of no fact table is a programming error: it panics at start-up.
func versionsOf(names ...string) []factVersion {
	out := make([]factVersion, len(names))
	for i, name := range names {
		t, ok := star.Lookup(name)
		if !ok || t.Serial == "" || len(t.Key) != 3 {
			panic("bench: " + name + " is no fact table with a version key")
		}
		out[i] = factVersion{t.Name, t.Serial, t.Key[1], t.Key[2]}
	}
	return out
}

// measureFreshness starts `sandstone run --interval` as a child, has the
// simulator write new sales orders and pay payments (each step one new sales
// order, with its transaction and unpaid payment, and one payment paid:
// three new sales order and payment versions) until plan.changes versions
// are written, and polls the warehouse for the new fact rows: each one's
// delay is the time it was first seen minus its last_updated (the source
// and the warehouse share this machine's clock). The phase ends when every
// version written has been seen, when none has arrived for three intervals
// after the simulator stopped (versions overwritten before any ingest saw
// them never arrive), or at the timeout.
func measureFreshness(ctx context.Context, c children, plan freshnessPlan) (Freshness, error) {
	var res Freshness
	wh, err := pgx.Connect(ctx, plan.warehouseURL)
	if err != nil {
		return res, fmt.Errorf("freshness: connect to warehouse: %w", err)
	}
	defer func() { _ = wh.Close(context.WithoutCancel(ctx)) }()
	last, err := lastSerials(ctx, wh, plan.schema)
	if err != nil {
		return res, err
	}
	// Rows stamped before the phase (a parked row released late, say) are
	// not the simulator's.
	since := time.Now().Add(-time.Second)

	run, err := startRun(ctx, c, plan)
	if err != nil {
		return res, err
	}
	defer run.closeLog()
	pctx, cancel := context.WithTimeout(ctx, plan.timeout)
	defer cancel()
	simDone, simErr, err := watch(pctx, wh, plan, last, since, &res)
	if err != nil {
		return res, errors.Join(err, run.stop(&res))
	}
	runErr := run.stop(&res)
	res.Missing = max(res.Changes-int64(len(res.Delays)), 0)
	switch {
	case simErr != nil:
		return res, fmt.Errorf("freshness: simulate: %w", simErr)
	case ctx.Err() != nil:
		return res, ctx.Err()
	case runErr != nil:
		return res, runErr
	case !simDone:
		return res, fmt.Errorf("freshness: the simulator had not written %d changes within %s", plan.changes, plan.timeout)
	}
	return res, nil
}

// lastSerials reads the newest serial id of each of factVersions.
func lastSerials(ctx context.Context, wh *pgx.Conn, schema string) ([]int64, error) {
	last := make([]int64, len(factVersions))
	for i, f := range factVersions {
		if err := wh.QueryRow(ctx, "SELECT coalesce(max("+ident(f.serial)+"), 0) FROM "+ident(schema, f.table)).Scan(&last[i]); err != nil {
			return nil, fmt.Errorf("freshness: %s: %w", f.table, err)
		}
	}
	return last, nil
}

// backgroundRun is `sandstone run` started as a child, its output in a
// log file.
type backgroundRun struct {
	child
	log     *os.File
	logPath string
}

// startRun starts `sandstone run --interval`, its output to plan.logPath.
func startRun(ctx context.Context, c children, plan freshnessPlan) (*backgroundRun, error) {
	logFile, err := os.Create(filepath.Clean(plan.logPath))
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	args := []string{"run", "--interval", plan.interval.String(),
		"--alert-state", filepath.Join(filepath.Dir(plan.logPath), "alerts.json"), "--retries", "3", "--backoff", "1s"}
	if plan.follow {
		args = append(args, "--follow")
	}
	if plan.quiet {
		args = append(args, "--audit-every", "0")
	}
	run := c.command(context.WithoutCancel(ctx), args...)
	run.Stdout, run.Stderr = logFile, logFile
	if err := run.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("freshness: start sandstone run: %w", err)
	}
	return &backgroundRun{child: run, log: logFile, logPath: plan.logPath}, nil
}

func (r *backgroundRun) closeLog() { _ = r.log.Close() }

// stop stops the run by SIGTERM (killing it if it has not stopped within a
// minute) and records its peak RSS in res.
func (r *backgroundRun) stop(res *Freshness) error {
	_ = r.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = r.Process.Kill()
		err = errors.Join(errors.New("sandstone run did not stop within a minute of SIGTERM"), <-done)
	}
	res.RunPeakRSS = r.peakRSS()
	if err != nil {
		return fmt.Errorf("freshness: sandstone run (output in %s): %w", r.logPath, err)
	}
	return nil
}

// watch runs the simulator and polls the warehouse's fact tables (from the
// serial ids in last) into res until every change it wrote has been seen,
// none has arrived for three intervals after it stopped, it failed, or
// ctx ends. It reports whether the simulator finished and its error; err
// is a poll's failure before ctx ended.
func watch(ctx context.Context, wh *pgx.Conn, plan freshnessPlan, last []int64, since time.Time, res *Freshness) (simDone bool, simErr, err error) {
	sim := make(chan simulated, 1)
	go simulate(ctx, plan, sim)
	var lastChange time.Time // when the simulator stopped, or a row last arrived after that
	tick := time.NewTicker(plan.poll)
	defer tick.Stop()
	for {
		select {
		case s := <-sim:
			res.Changes, simErr, simDone, res.SimSeconds = s.changes, s.err, true, s.seconds
			lastChange = time.Now()
			sim = nil
		case <-tick.C:
		case <-ctx.Done():
		}
		if ctx.Err() != nil || simErr != nil {
			return simDone, simErr, nil
		}
		n, perr := pollFacts(ctx, wh, plan.schema, last, since, &res.Delays)
		if perr != nil {
			if ctx.Err() != nil {
				return simDone, simErr, nil
			}
			return simDone, simErr, perr
		}
		if !simDone {
			continue
		}
		if n > 0 {
			lastChange = time.Now()
		}
		if int64(len(res.Delays)) >= res.Changes || time.Since(lastChange) > 3*plan.interval {
			return simDone, simErr, nil
		}
	}
}

// simulated is the simulator's outcome.
type simulated struct {
	changes int64
	err     error
	seconds float64
}

// simulate writes one step of activity until plan.changes sales order
// and payment versions are written, then sends how many it wrote: with
// plan.step, plan.orders sales orders updated every step, paced from the
// start (a slow step does not slow the rate); else one step of the
// simulator, pausing interval/5 after each.
func simulate(ctx context.Context, plan freshnessPlan, out chan<- simulated) {
	rnd := rand.New(rand.NewPCG(7, 11)) // #nosec G404 -- simulated business, not security
	step, paced := plan.step, plan.step > 0
	write := func(ctx context.Context) (int64, error) {
		st, err := synth.Simulate(ctx, plan.sourceURL, synth.Activity{NewSalesOrders: 1, PaymentsPaid: 1}, rnd)
		return st["sales_order"] + st["payment"], err
	}
	if !paced {
		step = max(plan.interval/5, 10*time.Millisecond)
	} else {
		u, err := newUpdater(ctx, plan.sourceURL, plan.orders, rnd)
		if err != nil {
			out <- simulated{0, err, 0}
			return
		}
		defer u.close(ctx)
		write = u.step
	}
	start := time.Now()
	next := start
	var n int64
	for n < int64(plan.changes) {
		written, err := write(ctx)
		n += written
		if err != nil {
			out <- simulated{n, err, time.Since(start).Seconds()}
			return
		}
		next = next.Add(step)
		if !paced {
			next = time.Now().Add(step)
		}
		select {
		case <-ctx.Done():
			out <- simulated{n, ctx.Err(), time.Since(start).Seconds()}
			return
		case <-time.After(time.Until(next)):
		}
	}
	out <- simulated{n, nil, time.Since(start).Seconds()}
}

// updater updates random sales orders by id, each step in a transaction
// of its own over one connection.
type updater struct {
	conn   *pgx.Conn
	rnd    *rand.Rand
	orders int
	maxID  int32
}

func newUpdater(ctx context.Context, url string, orders int, rnd *rand.Rand) (*updater, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	u := &updater{conn: conn, rnd: rnd, orders: max(orders, 1)}
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(sales_order_id), 0) FROM sales_order").Scan(&u.maxID); err != nil || u.maxID == 0 {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("freshness: no sales order to update (%v)", err)
	}
	return u, nil
}

func (u *updater) close(ctx context.Context) { _ = u.conn.Close(context.WithoutCancel(ctx)) }

// step updates u.orders sales orders drawn at random, stamped with the
// source's clock as totesys stamps them, and returns how many it updated.
func (u *updater) step(ctx context.Context) (int64, error) {
	ids := make([]int32, u.orders)
	for i := range ids {
		ids[i] = 1 + u.rnd.Int32N(u.maxID)
	}
	tag, err := u.conn.Exec(ctx, `UPDATE sales_order SET
			units_sold = CASE WHEN units_sold > 1 THEN units_sold - 1 ELSE units_sold + 1 END,
			last_updated = date_trunc('milliseconds', LOCALTIMESTAMP)
		WHERE sales_order_id = ANY($1)`, ids)
	if err != nil {
		return 0, fmt.Errorf("freshness: update sales orders: %w", err)
	}
	return tag.RowsAffected(), nil
}

// pollFacts reads the fact rows added since the serial ids in last (and
// moves them on), and appends to delays, for each row stamped at or after
// since, how long ago its last_updated was. It returns the number of rows
// appended.
func pollFacts(ctx context.Context, wh *pgx.Conn, schema string, last []int64, since time.Time, delays *[]time.Duration) (int, error) {
	seenAt := time.Now()
	n := 0
	for i, f := range factVersions {
		rows, err := wh.Query(ctx, "SELECT "+ident(f.serial)+", "+ident(f.date)+" + "+ident(f.time)+" FROM "+
			ident(schema, f.table)+" WHERE "+ident(f.serial)+" > $1", last[i])
		if err != nil {
			return n, fmt.Errorf("freshness: poll %s: %w", f.table, err)
		}
		var id int64
		var stamp time.Time
		_, err = pgx.ForEachRow(rows, []any{&id, &stamp}, func() error {
			last[i] = max(last[i], id)
			if !stamp.Before(since) {
				*delays = append(*delays, seenAt.Sub(stamp))
				n++
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("freshness: poll %s: %w", f.table, err)
		}
	}
	return n, nil
}
