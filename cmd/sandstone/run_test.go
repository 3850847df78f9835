package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/alert"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/ops/status"
)

// TestMetricsAndAlertsOverARealPipeline runs cycles of the real pipeline
// with run's observer, then reads the metrics over HTTP and the alerts a
// webhook received: a broken warehouse alerts once, recovery says so once.
func TestMetricsAndAlertsOverARealPipeline(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	seeded, err := synth.Seed(ctx, sb.Config.SourceURL, synth.SeedOptions{SalesOrders: 250, RandomSeed: 4})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var hooks []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		_ = json.NewDecoder(r.Body).Decode(&v)
		mu.Lock()
		hooks = append(hooks, v)
		mu.Unlock()
	}))
	defer receiver.Close()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	notifier, err := alert.New(alert.Config{Webhook: receiver.URL, Reminder: 1 << 40}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{})

	cycle := func(cfgWarehouse string) error {
		cfg := sb.Config
		cfg.WarehouseURL = cfgWarehouse
		p, err := pipeline.Open(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Close() }()
		r := &pipeline.Runner{Stages: p.Stages(), Logger: log, Observers: []pipeline.Observer{observer{m, notifier}}}
		_, err = r.Cycle(ctx)
		return err
	}
	// The warehouse is down for two cycles, then comes back.
	down := fmt.Sprintf("postgres://postgres:pw@127.0.0.1:%d/warehouse?connect_timeout=1", sb.Warehouse.Port+1)
	for i := 0; i < 2; i++ {
		if err := cycle(down); err == nil {
			t.Fatal("a cycle with the warehouse down succeeded")
		}
	}
	if err := cycle(sb.Config.WarehouseURL); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	var states []string
	for _, h := range hooks {
		states = append(states, fmt.Sprintf("%v/%v/%v", h["stage"], h["state"], h["error_kind"]))
	}
	mu.Unlock()
	if got := strings.Join(states, " "); got != "load/failing/warehouse_unreachable load/recovered/warehouse_unreachable" {
		t.Errorf("webhook got %q, want one failing and one recovered alert for load", got)
	}

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		fmt.Sprintf(`sandstone_rows_total{stage="ingest",table="sales_order"} %d`, seeded["sales_order"]),
		fmt.Sprintf(`sandstone_rows_total{stage="load",table="fact_sales_order"} %d`, seeded["sales_order"]),
		fmt.Sprintf(`sandstone_rows_total{stage="transform",table="fact_payment"} %d`, seeded["payment"]),
		`sandstone_stage_failures_total{kind="warehouse_unreachable",stage="load"} 2`,
		`sandstone_freshness_lag_seconds_count 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Beside the cycles, the audits find a payment gone from the source,
	// alert, count it and mend it; once the tombstone is in, they recover.
	p, err := pipeline.Open(ctx, sb.Config, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	pgtest.Exec(t, sb.Config.SourceURL, "DELETE FROM payment WHERE payment_id = 1")
	count := &auditCounter{ran: make(chan struct{}, 10)}
	d := &audit.Driver{Logger: log, Observers: []audit.Observer{observer{m, notifier}, count}}
	opts := audit.Options{SourceURL: sb.Config.SourceURL, Bucket: p.Ingest, Lookback: sb.Config.Lookback, Repair: true}
	aud := newAudits(d, opts, time.Hour)
	actx, stop := context.WithCancel(ctx)
	go aud.run(actx)
	aud.cycleDone()
	aud.cycleDone() // a second cycle, within --audit-every: no second audit
	<-count.ran
	stop()
	<-aud.done
	if n := count.n.Load(); n != 1 {
		t.Fatalf("%d audits within --audit-every, want 1", n)
	}
	st := status.Gather(ctx, sb.Config, filepath.Join(t.TempDir(), "none.json"))
	if st.LastAudit == nil || !st.LastAudit.Drift || st.LastAudit.Repaired == nil {
		t.Fatalf("status shows the last audit as %+v", st.LastAudit)
	}
	if _, err := d.Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	states = nil
	for _, h := range hooks[2:] {
		states = append(states, fmt.Sprintf("%v/%v/%v", h["stage"], h["state"], h["error_kind"]))
	}
	mu.Unlock()
	if got := strings.Join(states, " "); got != "audit/failing/drift_found audit/recovered/drift_found" {
		t.Errorf("webhook got %q for the audits", got)
	}
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{`sandstone_audits_total{result="drift"} 1`, `sandstone_audits_total{result="clean"} 1`,
		`sandstone_drift_rows{kind="deleted",table="payment"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// auditCounter counts the audits that ran to their end, and tells each.
type auditCounter struct {
	n   atomic.Int32
	ran chan struct{}
}

func (c *auditCounter) AuditDone(context.Context, audit.Report) {
	c.n.Add(1)
	c.ran <- struct{}{}
}

func (c *auditCounter) AuditFailed(context.Context, error) {}

// holdAudit holds each audit at its end until a cycle has loaded a batch.
type holdAudit struct {
	held   chan struct{} // closed once an audit is held
	landed chan struct{} // closed once a cycle has loaded since
	once   sync.Once
	timely atomic.Bool // a cycle landed while the audit was held
}

func (h *holdAudit) AuditDone(context.Context, audit.Report) {
	h.once.Do(func() { close(h.held) })
	select {
	case <-h.landed:
		h.timely.Store(true)
	case <-time.After(2 * time.Minute):
	}
}

func (h *holdAudit) AuditFailed(ctx context.Context, _ error) { h.AuditDone(ctx, audit.Report{}) }

// landedAfterHold closes landed when a load of a batch ends while the
// audit is held.
type landedAfterHold struct {
	h    *holdAudit
	once sync.Once
}

func (l *landedAfterHold) StageDone(_ context.Context, r pipeline.Report) {
	select {
	case <-l.h.held:
		if r.Stage == pipeline.Load && len(r.Batches) > 0 {
			l.once.Do(func() { close(l.h.landed) })
		}
	default:
	}
}

func (l *landedAfterHold) StageFailed(context.Context, string, string, error) {}

// TestAuditBesideCycles: run's audit works beside the cycles, never in line
// with them: while an audit is held up (by an observer), a cycle still
// runs to its end; one audit at a time; when the run stops, the audits'
// goroutine has ended before the loop returns.
func TestAuditBesideCycles(t *testing.T) {
	ctx := context.Background()
	sb := startSandbox(t)
	if _, err := synth.Seed(ctx, sb.Config.SourceURL, synth.SeedOptions{SalesOrders: 50, RandomSeed: 5}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	p, err := pipeline.Open(ctx, sb.Config, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	notifier, err := alert.New(alert.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{})
	hold := &holdAudit{held: make(chan struct{}), landed: make(chan struct{})}
	count := &auditCounter{ran: make(chan struct{}, 10)}
	rf := &runFlags{configFlags: configFlags{sb.Config}, interval: 20 * time.Millisecond, behindLimit: time.Hour,
		alertState: filepath.Join(t.TempDir(), "alerts.json")}
	s := &session{rf: rf, p: p, m: m, n: notifier, log: log,
		aud: newAudits(&audit.Driver{Logger: log, Observers: []audit.Observer{observer{m, notifier}, count, hold}},
			audit.Options{SourceURL: sb.Config.SourceURL, Bucket: p.Ingest, Lookback: sb.Config.Lookback}, time.Hour)}
	runner := &pipeline.Runner{Stages: p.Stages(), Logger: log, Observers: []pipeline.Observer{&landedAfterHold{h: hold}}}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	loopErr := make(chan error, 1)
	go func() { loopErr <- s.loop(runCtx, runner) }()
	select {
	case <-hold.held:
	case <-time.After(3 * time.Minute):
		t.Fatal("no audit ran")
	}
	pgtest.Exec(t, sb.Config.SourceURL, "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = LOCALTIMESTAMP WHERE sales_order_id = 1")
	select {
	case <-hold.landed:
	case <-time.After(3 * time.Minute):
		t.Fatal("no cycle landed a batch while the audit was held")
	}
	<-count.ran
	stop()
	select {
	case err := <-loopErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the run did not stop")
	}
	select {
	case <-s.aud.done:
	default:
		t.Fatal("the loop returned before the audits' goroutine ended")
	}
	if !hold.timely.Load() || count.n.Load() != 1 {
		t.Errorf("cycle during the audit %v, %d audits (want 1 within --audit-every)", hold.timely.Load(), count.n.Load())
	}
}

// TestAuditRepairSetting: --auto-repair defaults to SANDSTONE_AUDIT_REPAIR;
// the old SANDSTONE_AUTO_REPAIR still counts, with a deprecation warning,
// unless the new name is set; a value neither true nor false is refused as
// config_invalid, under either name.
func TestAuditRepairSetting(t *testing.T) {
	def := func() string { return newRunCmd().Flags().Lookup("auto-repair").DefValue }
	for _, c := range []struct{ audit, auto, want string }{
		{"", "", "false"},
		{"true", "", "true"},
		{"1", "", "true"},
		{"", "true", "true"},
		{"false", "true", "false"},
	} {
		t.Setenv(config.EnvAuditRepair, c.audit)
		t.Setenv(envAutoRepair, c.auto)
		if got := def(); got != c.want {
			t.Errorf("%s=%q %s=%q: --auto-repair defaults to %s, want %s", config.EnvAuditRepair, c.audit, envAutoRepair, c.auto, got, c.want)
		}
	}
	args := []string{"run", "--once", "--log-format", "text", "--source", "postgres://u@127.0.0.1:1/x?connect_timeout=1",
		"--warehouse", "postgres://u@127.0.0.1:1/x?connect_timeout=1", "--alert-state", filepath.Join(t.TempDir(), "alerts.json")}
	for _, env := range []string{config.EnvAuditRepair, envAutoRepair} {
		t.Setenv(config.EnvAuditRepair, "")
		t.Setenv(envAutoRepair, "")
		t.Setenv(env, "yes")
		out, code := runCode(context.Background(), args...)
		if code != 1 || !strings.Contains(out, env+`="yes"`) || !strings.Contains(out, "error_kind=config_invalid") {
			t.Errorf("%s=yes: run exited %d:\n%s", env, code, out)
		}
	}
	t.Setenv(envAutoRepair, "true")
	if out, _ := runCode(context.Background(), args...); !strings.Contains(out, envAutoRepair+" is deprecated: set "+config.EnvAuditRepair+" instead") {
		t.Errorf("no deprecation warning:\n%s", out)
	}
}
