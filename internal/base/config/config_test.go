package config

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://user:s3cret@host:5432/db", "postgres://user:xxxxx@host:5432/db"},
		{"failed: postgres://u:p%40ss@h/db?sslmode=disable", "failed: postgres://u:xxxxx@h/db?sslmode=disable"},
		{"host=h user=u password=s3cret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"postgres://user@host/db", "postgres://user@host/db"},
		{"no secrets here", "no secrets here"},
	}
	for _, tc := range tests {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactError(t *testing.T) {
	if RedactError(nil) != nil {
		t.Fatal("nil error wrapped")
	}
	err := RedactError(errors.Join(io.EOF, errors.New("dial postgres://a:b1g-secret@h/d")))
	if strings.Contains(err.Error(), "b1g-secret") || !errors.Is(err, io.EOF) {
		t.Fatalf("%v: password kept or cause lost", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvSource, "postgres://s")
	t.Setenv(EnvIngestBucket, "")
	t.Setenv(EnvLookback, "90s")
	c, err := FromEnv()
	if err != nil || c.SourceURL != "postgres://s" || c.IngestBucket != DefaultIngestBucket || c.Lookback != 90*time.Second || c.WarehouseSchema != DefaultSchema {
		t.Fatalf("%+v", c)
	}
	t.Setenv(EnvLookback, "soon")
	if c, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvLookback) || c.Lookback != DefaultLookback {
		t.Fatalf("a bad lookback gave %s, %v", c.Lookback, err)
	}
}

func TestMaxBatchRowsFromEnv(t *testing.T) {
	t.Setenv(EnvMaxBatchRows, "")
	if c, err := FromEnv(); err != nil || c.MaxBatchRows != DefaultMaxBatchRows {
		t.Fatalf("default bound %d, %v", c.MaxBatchRows, err)
	}
	for v, want := range map[string]int64{"250000": 250_000, "1_000_000": 1_000_000, "0": 0} {
		t.Setenv(EnvMaxBatchRows, v)
		if c, err := FromEnv(); err != nil || c.MaxBatchRows != want {
			t.Errorf("%s=%s gave %d, %v; want %d", EnvMaxBatchRows, v, c.MaxBatchRows, err, want)
		}
	}
	for _, v := range []string{"-1", "lots", "1e6"} {
		t.Setenv(EnvMaxBatchRows, v)
		if c, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvMaxBatchRows) || c.MaxBatchRows != DefaultMaxBatchRows {
			t.Errorf("%s=%s gave %d, %v; want an error naming it and the default kept", EnvMaxBatchRows, v, c.MaxBatchRows, err)
		}
	}
}

func TestAuditRepairFromEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "true": true, "1": true, "false": false, "FALSE": false} {
		t.Setenv(EnvAuditRepair, v)
		if c, err := FromEnv(); err != nil || c.AuditRepair != want {
			t.Errorf("%s=%q gave %v, %v; want %v", EnvAuditRepair, v, c.AuditRepair, err, want)
		}
	}
	for _, v := range []string{"yes", "sometimes"} {
		t.Setenv(EnvAuditRepair, v)
		if c, err := FromEnv(); err == nil || !strings.Contains(err.Error(), EnvAuditRepair) || c.AuditRepair {
			t.Errorf("%s=%q gave %v, %v; want an error naming it and no repair", EnvAuditRepair, v, c.AuditRepair, err)
		}
	}
}
