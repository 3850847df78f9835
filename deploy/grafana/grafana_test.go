// Package grafana_test checks the Grafana dashboard and the Prometheus
// alert rules in this directory against what `sandstone run` exports.
package grafana_test

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/ops/metrics"
)

// exported is every series name `sandstone run` serves at /metrics, read
// from its registry: each metric recorded once so that every vector has a
// series, with a histogram's _bucket, _sum and _count. It fails when a
// metric the registry describes was not recorded, so that the list is
// whole.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Options{})
	parked := int64(1)
	m.Record(metrics.StageRun{Stage: "load", Duration: time.Second, Rows: map[string]int64{"t": 1}, Bytes: map[string]int64{"t": 1},
		Freshness: time.Second, Skew: map[string]time.Duration{"t": time.Second}, Rejected: map[string]map[string]int64{"t": {"bad_value": 1}}, Parked: &parked})
	m.Record(metrics.StageRun{Stage: "load", Err: errkind.Wrap(errkind.LoadFailed, errors.New("x"))})
	m.SetPending("load", 1)
	m.CaughtUp(time.Now())
	m.SourceChanged(time.Now())
	m.SetBuildInfo("v", "c", "go")
	m.AuditDone(map[string]map[string]int64{"t": {"missing": 1}}, nil)
	safe := int64(1)
	m.SlotLag("s", 1, 1, &safe)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	descs := make(chan *prometheus.Desc)
	go func() { m.Registry().Describe(descs); close(descs) }()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if n := fqName.FindStringSubmatch(d.String()); n != nil && strings.HasPrefix(n[1], "sandstone_") && !names[n[1]] {
			t.Errorf("%s is registered but the test recorded none of it: record it in exported", n[1])
		}
	}
	return names
}

// queried are the metric names in a PromQL expression: the identifiers
// that start with sandstone_ (every name this project's rules and
// dashboards use does).
var queried = regexp.MustCompile(`\bsandstone_[a-zA-Z0-9_:]*`)

func checkExpr(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	found := queried.FindAllString(expr, -1)
	if len(found) == 0 {
		t.Errorf("%s: %q queries no sandstone metric", where, expr)
	}
	for _, n := range found {
		if !names[n] {
			t.Errorf("%s: %q queries %s, which sandstone run does not export", where, expr, n)
		}
	}
}

// TestDashboard: every panel's query is on metrics `run` exports, and the
// dashboard covers freshness, behind-source, rows, rejects, durations,
// failures by kind, audit drift and the replication slot's lag.
func TestDashboard(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile("sandstone.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, "panel "+p.Title, q.Expr, names)
			all = append(all, queried.FindAllString(q.Expr, -1)...)
		}
	}
	for _, want := range []string{"sandstone_freshness_seconds", "sandstone_warehouse_behind_source_seconds", "sandstone_rows_total",
		"sandstone_rejected_rows_total", "sandstone_stage_duration_seconds_bucket", "sandstone_stage_failures_total", "sandstone_drift_rows",
		"sandstone_slot_retained_wal_bytes"} {
		if !slices.Contains(all, want) {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestAlertRules: every rule queries metrics `run` exports, and the
// README names every rule.
func TestAlertRules(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			checkExpr(t, "rule "+r.Alert, r.Expr, names)
			if !strings.Contains(string(readme), "`"+r.Alert+"`") {
				t.Errorf("the README does not describe the rule %s", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Error("no rule")
	}
}
