package errkind

import (
	"errors"
	"fmt"
	"testing"
)

func TestDefaultKeepsAKind(t *testing.T) {
	cause := errors.New("boom")
	if err := Default(BucketReadFailed, cause); Of(err) != BucketReadFailed || !errors.Is(err, cause) {
		t.Errorf("an unmarked error: %v %s", err, Of(err))
	}
	inner := fmt.Errorf("table t: %w", Wrap(ObjectMismatch, cause))
	if err := Default(BucketReadFailed, inner); Of(err) != ObjectMismatch || err.Error() != inner.Error() {
		t.Errorf("a marked error: %v %s", err, Of(err))
	}
	if Default(LoadFailed, nil) != nil {
		t.Error("nil is not nil")
	}
	// Wrap still marks the outermost kind.
	if Of(Wrap(LoadFailed, inner)) != LoadFailed {
		t.Error("Wrap no longer overrides")
	}
}

func TestAllIsComplete(t *testing.T) {
	seen := map[Kind]bool{}
	for _, k := range All {
		if seen[k] {
			t.Errorf("%s twice", k)
		}
		seen[k] = true
	}
	for _, k := range []Kind{ObjectMismatch, LedgerMismatch, CaptureNotReady, CaptureGap, CaptureSlotBusy, Internal} {
		if !seen[k] {
			t.Errorf("%s missing from All", k)
		}
	}
}

func TestPermanent(t *testing.T) {
	for _, k := range All {
		want := k == SourceAuthFailed || k == SourceDatabaseMissing || k == WarehouseAuthFailed || k == WarehouseDatabaseMissing ||
			k == CaptureNotReady || k == CaptureGap
		if got := Permanent(fmt.Errorf("stage: %w", Wrap(k, errors.New("x")))); got != want {
			t.Errorf("Permanent(%s) = %v, want %v", k, got, want)
		}
	}
	if Permanent(nil) || Permanent(errors.New("plain")) {
		t.Error("an error without a kind is permanent")
	}
}
