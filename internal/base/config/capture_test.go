package config

import (
	"strings"
	"testing"
)

func TestDefaultSlot(t *testing.T) {
	long := strings.Repeat("x", 80)
	for url, want := range map[string]string{
		"postgres://u:p@h:5432/totesys":          "sandstone_totesys",
		"postgres://u@h/Tote-Sys.2024":           "sandstone_tote_sys_2024",
		"postgres://u@h/caf%C3%A9":               "sandstone_caf_",
		"host=h user=u dbname=Sales_DB":          "sandstone_sales_db",
		"postgres://reader@h:5432/":              "sandstone_reader",
		"postgres://u@h/" + long:                 "sandstone_" + long[:63-len("sandstone_")],
		"postgres://u@h/totesys?sslmode=disable": "sandstone_totesys",
	} {
		got := DefaultSlot(url)
		if got != want || CheckSlot(got) != nil {
			t.Errorf("DefaultSlot(%q) = %q, want %q (valid)", url, got, want)
		}
	}
	if a, b := DefaultSlot("postgres://u@h/one"), DefaultSlot("postgres://u@h/two"); a == b {
		t.Errorf("two databases of one server share the slot %s", a)
	}
}

func TestCheckSlot(t *testing.T) {
	for _, ok := range []string{"sandstone", "s_1", strings.Repeat("a", 63)} {
		if err := CheckSlot(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Sandstone", "my-slot", "slot.1", "café", strings.Repeat("a", 64)} {
		if err := CheckSlot(bad); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

func TestCaptureFromEnv(t *testing.T) {
	t.Setenv(EnvCapture, "")
	t.Setenv(EnvSlot, "")
	t.Setenv(EnvPublication, "")
	c, err := FromEnv()
	if err != nil || c.Capture != CapturePoll || c.Slot != "" || c.Publication != DefaultPublication {
		t.Fatalf("defaults: %q %q %q, %v", c.Capture, c.Slot, c.Publication, err)
	}
	t.Setenv(EnvCapture, "wal")
	t.Setenv(EnvSlot, "pipeline_2")
	t.Setenv(EnvPublication, "Totesys Pub")
	if c, err := FromEnv(); err != nil || c.Capture != CaptureWAL || c.Slot != "pipeline_2" || c.Publication != "Totesys Pub" {
		t.Fatalf("set: %q %q %q, %v", c.Capture, c.Slot, c.Publication, err)
	}
	for env, v := range map[string]string{EnvCapture: "logical", EnvSlot: "Pipeline-2", EnvPublication: strings.Repeat("p", 64)} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, v)
			if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%q gave %v; want an error naming it", env, v, err)
			}
		})
	}
	t.Setenv(EnvCapture, "WAL")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "want poll") {
		t.Errorf("WAL gave %v; want the modes named", err)
	}
}

// TestSlotLagAlertFromEnv: 1 GiB by default, a positive number of bytes
// (digits grouped by underscores) when set, else an error naming it.
func TestSlotLagAlertFromEnv(t *testing.T) {
	t.Setenv(EnvSlotLagAlert, "")
	if c, err := FromEnv(); err != nil || c.SlotLagAlertBytes != 1<<30 {
		t.Fatalf("default %d, %v", c.SlotLagAlertBytes, err)
	}
	t.Setenv(EnvSlotLagAlert, "268_435_456")
	if c, err := FromEnv(); err != nil || c.SlotLagAlertBytes != 256<<20 {
		t.Fatalf("256 MiB: %d, %v", c.SlotLagAlertBytes, err)
	}
	for _, v := range []string{"0", "-1", "1GB"} {
		t.Setenv(EnvSlotLagAlert, v)
		if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvSlotLagAlert) {
			t.Errorf("%q gave %v; want an error naming %s", v, err, EnvSlotLagAlert)
		}
	}
}
