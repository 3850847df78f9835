package warehouse

import (
	"context"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/errkind"
	"github.com/sandstone-data/sandstone/internal/pgtest"
)

// TestRunLock: one run at a time per warehouse schema, the refusal naming
// the holder, and the lock free for the next run the moment Release
// returns, however soon that run starts.
func TestRunLock(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	first, err := LockRun(ctx, url, "public")
	if err != nil {
		t.Fatal(err)
	}
	other, err := LockRun(ctx, url, "other")
	if err != nil {
		t.Fatalf("another schema's run: %v", err)
	}
	defer func() { _ = other.Release(ctx) }()
	_, err = LockRun(ctx, url, "public")
	if errkind.Of(err) != errkind.ConfigInvalid || !strings.Contains(err.Error(), "another sandstone run already runs") ||
		!strings.Contains(err.Error(), "sandstone run pid") || !strings.Contains(err.Error(), "server process") {
		t.Fatalf("a second run on the same schema: %v", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l, err := LockRun(ctx, url, "public")
		if err != nil {
			t.Fatalf("run %d, started as the one before released the lock: %v", i, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var nilLock *RunLock
	if err := nilLock.Release(ctx); err != nil {
		t.Errorf("releasing no lock: %v", err)
	}
}
