package terraform_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestCaptureVariants: capture sets SANDSTONE_CAPTURE on ingest alone; in
// wal capture, the publication and (when named) the slot too, and an
// alarm on the WAL the slot holds back, on the dashboard; the poll has no
// such alarm.
func TestCaptureVariants(t *testing.T) {
	for _, v := range []struct {
		name     string
		defaults map[string]string
		env      map[string]string // ingest's capture settings
		alarm    bool
	}{
		{"poll", nil, map[string]string{"SANDSTONE_CAPTURE": "poll"}, false},
		{"wal", map[string]string{"capture": `"wal"`},
			map[string]string{"SANDSTONE_CAPTURE": "wal", "SANDSTONE_PUBLICATION": "sandstone"}, true},
		{"wal, named", map[string]string{"capture": `"wal"`, "replication_slot": `"totesys_prod"`, "publication": `"totesys"`},
			map[string]string{"SANDSTONE_CAPTURE": "wal", "SANDSTONE_PUBLICATION": "totesys", "SANDSTONE_SLOT": "totesys_prod"}, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			files := mainFiles(t)
			for name, value := range v.defaults {
				withDefault(t, files, name, value)
			}
			m, err := parseModule(files)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range check(m) {
				t.Error(p)
			}
			for _, f := range m.instances("aws_lambda_function") {
				env := f.block("environment").strMap("variables")
				got := map[string]string{}
				for _, k := range []string{"SANDSTONE_CAPTURE", "SANDSTONE_PUBLICATION", "SANDSTONE_SLOT"} {
					if val, ok := env[k]; ok {
						got[k] = val
					}
				}
				want := map[string]string{}
				if strings.HasSuffix(f.addr, `["ingest"]`) {
					want = v.env
				}
				if !maps.Equal(got, want) {
					t.Errorf("%s: capture settings %v, want %v", f.addr, got, want)
				}
			}
			var slotAlarms []*alarm
			for _, a := range alarmsOf(m) {
				if a.metric == "SlotRetainedBytes" {
					slotAlarms = append(slotAlarms, a)
				}
			}
			if !v.alarm {
				if len(slotAlarms) != 0 {
					t.Errorf("the poll has a slot alarm: %s", slotAlarms[0].node.addr)
				}
				return
			}
			if len(slotAlarms) != 1 {
				t.Fatalf("%d slot alarms, want 1", len(slotAlarms))
			}
			a := slotAlarms[0]
			if a.dims["Stage"] != "ingest" || a.threshold != 1<<30 || a.comparison != "GreaterThanThreshold" ||
				!strings.Contains(a.description, "sandstone drop-slot") || !strings.Contains(a.description, "--resnapshot") {
				t.Errorf("slot alarm %+v", a)
			}
			var body struct {
				Widgets []struct{ Properties struct{ Alarms []string } }
			}
			if err := json.Unmarshal([]byte(m.instances("aws_cloudwatch_dashboard")[0].str("dashboard_body")), &body); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(body.Widgets, func(w struct{ Properties struct{ Alarms []string } }) bool {
				return slices.Contains(w.Properties.Alarms, a.node.ref("arn"))
			}) {
				t.Error("the dashboard does not show the slot alarm")
			}
		})
	}
}

// TestCaptureValidations: capture is poll or wal, and wal keeps ingest's
// reserved concurrency at 1; the slot's name is one PostgreSQL takes; the
// slot-lag alarm is no lower than one WAL segment.
func TestCaptureValidations(t *testing.T) {
	str, n := cty.StringVal, cty.NumberIntVal
	reserve := func(ingest int64) cty.Value { return cty.MapVal(map[string]cty.Value{"ingest": n(ingest)}) }
	for name, cases := range map[string][]struct {
		vars map[string]cty.Value
		ok   bool
	}{
		"capture": {
			{map[string]cty.Value{"capture": str("poll")}, true},
			{map[string]cty.Value{"capture": str("wal")}, true},
			{map[string]cty.Value{"capture": str("wal"), "reserved_concurrency": reserve(1)}, true},
			{map[string]cty.Value{"capture": str("poll"), "reserved_concurrency": cty.MapValEmpty(cty.Number)}, true},
			{map[string]cty.Value{"capture": str("wal"), "reserved_concurrency": cty.MapValEmpty(cty.Number)}, false},
			{map[string]cty.Value{"capture": str("wal"), "reserved_concurrency": reserve(2)}, false},
			{map[string]cty.Value{"capture": str("cdc")}, false},
		},
		"replication_slot": {
			{map[string]cty.Value{"replication_slot": str("")}, true},
			{map[string]cty.Value{"replication_slot": str("sandstone_prod_2")}, true},
			{map[string]cty.Value{"replication_slot": str("Sandstone-prod")}, false},
			{map[string]cty.Value{"replication_slot": str(strings.Repeat("s", 64))}, false},
		},
		"publication": {
			{map[string]cty.Value{"publication": str("Totesys Pub")}, true},
			{map[string]cty.Value{"publication": str("")}, false},
		},
		"slot_lag_alarm_bytes": {
			{map[string]cty.Value{"slot_lag_alarm_bytes": n(1 << 30)}, true},
			{map[string]cty.Value{"slot_lag_alarm_bytes": n(1 << 20)}, false},
		},
	} {
		valid := validation(t, name)
		for _, c := range cases {
			if got := valid(c.vars); got != c.ok {
				t.Errorf("%s %v: valid %v, want %v", name, c.vars, got, c.ok)
			}
		}
	}
}
