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
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/alert"
	"github.com/sandstone-data/sandstone/internal/audit"
	"github.com/sandstone-data/sandstone/internal/metrics"
	"github.com/sandstone-data/sandstone/internal/pgtest"
	"github.com/sandstone-data/sandstone/internal/pipeline"
	"github.com/sandstone-data/sandstone/internal/status"
	"github.com/sandstone-data/sandstone/internal/totesys/synth"
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

	// Between cycles, the auditor finds a payment gone from the source,
	// alerts, counts it and mends it; once the tombstone is in, it recovers.
	p, err := pipeline.Open(ctx, sb.Config, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	pgtest.Exec(t, sb.Config.SourceURL, "DELETE FROM payment WHERE payment_id = 1")
	aud := &auditor{every: time.Hour, log: log, m: m, n: notifier, bucket: p.Ingest,
		opts: audit.Options{SourceURL: sb.Config.SourceURL, Bucket: p.Ingest, Lookback: sb.Config.Lookback, Repair: true}}
	aud.maybe(ctx)
	aud.maybe(ctx) // within --audit-every: no second audit
	st := status.Gather(ctx, sb.Config, filepath.Join(t.TempDir(), "none.json"))
	if st.LastAudit == nil || !st.LastAudit.Drift || st.LastAudit.Repaired == nil {
		t.Fatalf("status shows the last audit as %+v", st.LastAudit)
	}
	aud.last = time.Time{}
	aud.maybe(ctx)
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
