package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
)

// runCLI runs the sandstone command line with args and returns its output.
func runCLI(ctx context.Context, args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestSeedAndSimulateCommands runs `sandstone seed` and `sandstone
// simulate` against a throwaway PostgreSQL server of their own.
func TestSeedAndSimulateCommands(t *testing.T) {
	t.Setenv(config.EnvSource, "")
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Stop()
		_ = os.RemoveAll(srv.Dir)
	})
	url, err := srv.CreateDatabase(ctx, "seed_cmd")
	if err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(ctx, "seed", "--source", url, "--sales-orders", "300", "--random-seed", "5")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"seeded totesys: ", "sales_order            300", "department               8", "rows/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("seed output lacks %q:\n%s", want, out)
		}
	}

	// The environment names the source when the flag does not.
	t.Setenv(config.EnvSource, url)
	if _, err := runCLI(ctx, "seed"); err == nil || !strings.Contains(err.Error(), "already has totesys") {
		t.Errorf("seeding twice: err = %v", err)
	}
	out, err = runCLI(ctx, "simulate", "--steps", "3", "--interval", "10ms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "step 1 at ") || !strings.Contains(out, "step 3 at ") || !strings.Contains(out, "done, 3 steps: ") {
		t.Errorf("simulate output:\n%s", out)
	}

	// Interrupted (Ctrl-C cancels the context): it stops cleanly.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	out, err = runCLI(cancelled, "simulate", "--interval", "10ms")
	if err != nil || !strings.Contains(out, "stopped after 0 steps") {
		t.Errorf("interrupted simulate: err = %v, output:\n%s", err, out)
	}
}

func TestSeedAndSimulateFlagErrors(t *testing.T) {
	t.Setenv(config.EnvSource, "")
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"seed"}, "--source is required"},
		{[]string{"seed", "--source", "postgres://x@127.0.0.1:1/x", "--sales-orders", "-3"}, "--sales-orders must be 0 or more"},
		{[]string{"seed", "--source", "postgres://x@127.0.0.1:1/x", "extra"}, "unknown command"},
		{[]string{"seed", "--source", "postgres://sandstone:s3cret@127.0.0.1:1/x?connect_timeout=5"}, "connect to source"},
		{[]string{"simulate"}, "--source is required"},
		{[]string{"simulate", "--source", "postgres://x@127.0.0.1:1/x", "--interval", "0s"}, "--interval must be positive"},
		{[]string{"simulate", "--source", "postgres://x@127.0.0.1:1/x", "--steps", "-1"}, "--steps must be 0"},
		{[]string{"simulate", "--source", "postgres://sandstone:s3cret@127.0.0.1:1/x?connect_timeout=5", "--steps", "1"}, "step 1: simulate: connect to source"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runCLI(ctx, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
