package pgserver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestServerLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	if !Reachable(os.TempDir()) {
		t.Fatal("the temp dir is not reachable")
	}
	if os.Geteuid() == 0 && Reachable(dir) {
		t.Fatal("a directory under a private (0700) parent was called reachable")
	}
	base, err := os.MkdirTemp("", "pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // #nosec G302 -- the server's user must reach it
		t.Fatal(err)
	}
	dir = filepath.Join(base, "server")
	if _, ok := Running(dir); ok {
		t.Fatal("a server is running in an empty directory")
	}
	if err := StopDir(dir); err != nil {
		t.Fatalf("stopping nothing: %v", err)
	}
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if port, ok := Running(dir); !ok || port != s.Port {
		t.Fatalf("running: %d %v, want port %d", port, ok, s.Port)
	}
	url, err := s.CreateDatabase(ctx, "a b") // a name that needs quoting
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.CreateDatabase(ctx, "a b"); err != nil || again != url {
		t.Fatalf("creating an existing database: %s %v", again, err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var tz string
	_ = conn.QueryRow(ctx, "SHOW timezone").Scan(&tz)
	_ = conn.Close(ctx)
	if tz != "UTC" {
		t.Errorf("server time zone %s, want UTC", tz)
	}
	if err := StopDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := Running(dir); ok {
		t.Fatal("still running after StopDir")
	}
	// The data directory is reused by a new start.
	s, err = Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDatabase(ctx, "a b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestVersionOrder(t *testing.T) {
	if version("/usr/lib/postgresql/16/bin") != 16 || version("/x/bin") != 0 {
		t.Fatal("version parsing")
	}
	if d, err := BinDir(); err != nil || d == "" {
		t.Fatalf("BinDir: %q %v", d, err)
	}
}
