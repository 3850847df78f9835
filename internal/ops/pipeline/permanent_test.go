package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// TestPermanentFailuresAreNotRetried: a login refused or a database missing
// fails the stage at its first attempt, with one ERROR line of its kind; an
// unreachable server is still retried.
func TestPermanentFailuresAreNotRetried(t *testing.T) {
	for _, c := range []struct {
		kind  errkind.Kind
		calls int
	}{
		{errkind.SourceAuthFailed, 1}, {errkind.SourceDatabaseMissing, 1},
		{errkind.WarehouseAuthFailed, 1}, {errkind.WarehouseDatabaseMissing, 1},
		{errkind.SourceUnreachable, 3}, {errkind.WarehouseUnreachable, 3},
	} {
		var calls int
		var logs bytes.Buffer
		r := &Runner{Retries: 2, Backoff: time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		_, err := r.Run(context.Background(), Stage{Name: "s", Run: func(context.Context, Run) (Report, error) {
			calls++
			return Report{}, errkind.Wrap(c.kind, errors.New("refused"))
		}})
		if errkind.Of(err) != c.kind || calls != c.calls {
			t.Errorf("%s: %d attempts (want %d), error %v", c.kind, calls, c.calls, err)
		}
		if strings.Count(logs.String(), `"level":"ERROR"`) != 1 || !strings.Contains(logs.String(), `"error_kind":"`+string(c.kind)+`"`) {
			t.Errorf("%s: want one ERROR line of its kind:\n%s", c.kind, logs.String())
		}
	}
}

// TestNamedOnce: a cycle's error names the stage once, whether or not the
// stage's own error already starts with its name.
func TestNamedOnce(t *testing.T) {
	for _, tc := range []struct{ err, want string }{
		{"ingest: connect to source x: refused", "ingest: connect to source x: refused"},
		{"connect to source x: refused", "ingest: connect to source x: refused"},
		{"ingestion bucket: gone", "ingest: ingestion bucket: gone"},
	} {
		if got := named("ingest", errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("named(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
