package terraform_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/ops/metrics/emf"
)

// emfMetrics are the metric names the EMF lines carry, read from the
// lines the emf package writes for a stage run, an audit and a slot's
// lag that set every figure.
func emfMetrics(t *testing.T) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	w := emf.New(&out)
	if err := w.Record(emf.StageRun{Stage: "load", Duration: time.Second, Rows: map[string]int64{"t": 1}, Bytes: map[string]int64{"t": 1},
		Freshness: time.Second, BehindSource: time.Second, Err: errors.New("x")}); err != nil {
		t.Fatal(err)
	}
	if err := w.RecordAudit(emf.AuditRun{Duration: time.Second, Measured: true, WarehouseChecked: true}); err != nil {
		t.Fatal(err)
	}
	safe := int64(1)
	if err := w.RecordSlotLag("ingest", emf.SlotLag{Slot: "s", RetainedBytes: 1, SafeWALBytes: &safe}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var line struct {
			AWS struct {
				CloudWatchMetrics []struct {
					Namespace string
					Metrics   []struct{ Name string }
				}
			} `json:"_aws"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		for _, d := range line.AWS.CloudWatchMetrics {
			for _, m := range d.Metrics {
				names[m.Name] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no EMF metric written")
	}
	return names
}

// TestDashboard: the CloudWatch dashboard charts only metrics the EMF
// lines carry (in their namespace, by their dimension), every one of them,
// and shows the state of every alarm.
func TestDashboard(t *testing.T) {
	m, err := parseModule(mainFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	boards := m.instances("aws_cloudwatch_dashboard")
	if len(boards) != 1 {
		t.Fatalf("%d dashboards, want 1", len(boards))
	}
	var body struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Metrics [][]any
				Alarms  []string
			}
		}
	}
	if err := json.Unmarshal([]byte(boards[0].str("dashboard_body")), &body); err != nil {
		t.Fatalf("dashboard_body: %v", err)
	}
	want := emfMetrics(t)
	charted := map[string]bool{}
	var alarms []string
	for _, w := range body.Widgets {
		alarms = append(alarms, w.Properties.Alarms...)
		for _, row := range w.Properties.Metrics {
			if len(row) < 2 {
				continue // an expression
			}
			ns, _ := row[0].(string)
			name, _ := row[1].(string)
			if ns != emf.Namespace {
				t.Errorf("dashboard metric %v: namespace %q, want the EMF lines' %q", row, ns, emf.Namespace)
				continue
			}
			if !want[name] {
				t.Errorf("dashboard metric %q: no EMF line carries it", name)
			}
			if len(row) < 4 || row[2] != emf.Dimension {
				t.Errorf("dashboard metric %v: not by the EMF lines' dimension %s", row, emf.Dimension)
			}
			charted[name] = true
		}
	}
	for name := range want {
		if !charted[name] {
			t.Errorf("the dashboard does not chart the EMF metric %s", name)
		}
	}
	var defined []string
	for _, a := range m.instances("aws_cloudwatch_metric_alarm") {
		defined = append(defined, a.ref("arn"))
	}
	slices.Sort(alarms)
	slices.Sort(defined)
	if !slices.Equal(alarms, defined) {
		t.Errorf("the dashboard's alarms:\n%s\nthe alarms defined:\n%s", strings.Join(alarms, "\n"), strings.Join(defined, "\n"))
	}
}
