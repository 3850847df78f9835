package transform

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// TestProgressCountsEachRowOnce: a table read twice to find the newest of
// several versions of an id (streamDim's first pass) reports each row once:
// its progress never passes the object's row count (it read "698505 of
// 436361 rows (160%)").
func TestProgressCountsEachRowOnce(t *testing.T) {
	ingest, proc := buckets(t)
	w := world()
	w.Design = append(w.Design,
		totesys.Design{DesignID: 1, DesignName: "Wooden v2", FileLocation: "/usr", FileName: "w2.json", CreatedAt: t0, LastUpdated: t0.Add(time.Hour)},
		totesys.Design{DesignID: 2, DesignName: "Steel", FileLocation: "/usr", FileName: "s.json", CreatedAt: t0, LastUpdated: t0},
	)
	putBatch(t, ingest, 1, w)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	meter := progress.New("transform", nil, log, time.Nanosecond) // a line for every chunk read
	if _, err := Run(context.Background(), Options{Ingest: ingest, Processed: proc, Logger: log, Progress: meter}); err != nil {
		t.Fatal(err)
	}
	designs := 0
	for line := range strings.Lines(logs.String()) {
		var l struct {
			Msg   string `json:"msg"`
			Table string `json:"table"`
			Rows  int64  `json:"rows"`
			Of    int64  `json:"of"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "progress" {
			continue
		}
		if l.Table == "design" {
			designs++
		}
		if l.Of > 0 && l.Rows > l.Of {
			t.Errorf("%s: %d of %d rows", l.Table, l.Rows, l.Of)
		}
	}
	if designs == 0 {
		t.Errorf("no progress line for design:\n%s", logs.String())
	}
}
