package warehouse

import (
	"context"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

// TestRunLock: one run at a time per warehouse schema, the refusal naming
// the holder, and the lock free for the next run the moment Release
// returns, however soon that run starts.
func TestRunLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	// lockRun opens the warehouse at url in schema and takes its run lock;
	// the handle closes after release.
	lockRun := func(schema string) (lock *RunLock, release func(), err error) {
		w, err := Open(ctx, url, schema)
		if err != nil {
			t.Fatal(err)
		}
		lock, err = w.LockRun(ctx)
		return lock, func() {
			if err := lock.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}, err
	}
	_, releaseFirst, err := lockRun("public")
	if err != nil {
		t.Fatal(err)
	}
	_, releaseOther, err := lockRun("other")
	if err != nil {
		t.Fatalf("another schema's run: %v", err)
	}
	defer releaseOther()
	_, releaseRefused, err := lockRun("public")
	if errkind.Of(err) != errkind.ConfigInvalid || !strings.Contains(err.Error(), "another sandstone run already runs") ||
		!strings.Contains(err.Error(), "sandstone run pid") || !strings.Contains(err.Error(), "server process") {
		t.Fatalf("a second run on the same schema: %v", err)
	}
	releaseRefused()
	releaseFirst()
	for i := range 100 {
		_, release, err := lockRun("public")
		if err != nil {
			t.Fatalf("run %d, started as the one before released the lock: %v", i, err)
		}
		release()
	}
	var nilLock *RunLock
	if err := nilLock.Release(ctx); err != nil {
		t.Errorf("releasing no lock: %v", err)
	}
}
