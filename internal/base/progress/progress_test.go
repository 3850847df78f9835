package progress

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a time source the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestLogLines: away from a terminal a line is logged every LogEvery with
// the rows, the rate and, when the total is known, the time left.
func TestLogLines(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := New("load", &buf, slog.New(slog.NewJSONHandler(&buf, nil)).With("stage", "load"), 0)
	m.now, m.last = c.now, c.t
	ctr := m.Table("fact_sales_order", 4000)
	for i := 0; i < 6; i++ {
		c.t = c.t.Add(10 * time.Second)
		ctr.Add(500) // 50 rows/s
	}
	ctr.Done()
	var lines []map[string]any
	for l := range strings.Lines(buf.String()) {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		lines = append(lines, v)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines over 60s, want one every 30s:\n%s", len(lines), buf.String())
	}
	want := map[string]any{"msg": "progress", "stage": "load", "table": "fact_sales_order", "rows": 1500.0,
		"rows_per_second": 50.0, "of": 4000.0, "seconds_left": 50.0}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %v in %v", k, lines[0][k], v, lines[0])
		}
	}
}

// TestTerminalLine: on a terminal one line is rewritten in place with the
// share done and the time left, and cleared when the table is done.
func TestTerminalLine(t *testing.T) {
	var term bytes.Buffer
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := &Meter{stage: "ingest", term: &term, every: TerminalEvery, now: c.now}
	ctr := m.Table("payment", 1000)
	c.t = c.t.Add(time.Second)
	ctr.Add(250)
	c.t = c.t.Add(100 * time.Millisecond) // too soon for another line
	ctr.Add(10)
	first := "ingest payment: 250 of 1000 rows (25%), 250 rows/s, about 3s left"
	if got := term.String(); got != "\r"+first {
		t.Errorf("terminal line %q, want %q", got, "\r"+first)
	}
	unknown := m.Table("sales_order", 0)
	c.t = c.t.Add(time.Second)
	unknown.Add(100)
	second := "ingest sales_order: 100 rows, 100 rows/s"
	if !strings.HasSuffix(term.String(), "\r"+second+strings.Repeat(" ", len(first)-len(second))) {
		t.Errorf("a shorter line does not blank the longer one: %q", term.String())
	}
	unknown.Done()
	unknown.Done()
	if !strings.HasSuffix(term.String(), "\r"+strings.Repeat(" ", len(second))+"\r") {
		t.Errorf("done does not clear the line: %q", term.String())
	}
}

// TestNilIsQuiet: stages call a nil meter and a nil counter freely.
func TestNilIsQuiet(t *testing.T) {
	var m *Meter
	c := m.Table("x", 10)
	c.Add(5)
	c.Done()
	if c != nil {
		t.Fatal("a nil meter made a counter")
	}
	var buf bytes.Buffer
	n := New("transform", &buf, nil, 0) // not a terminal, no logger
	ctr := n.Table("address", 3)
	n.now = func() time.Time { return time.Now().Add(time.Hour) }
	ctr.Add(3)
	if buf.Len() != 0 {
		t.Errorf("wrote %q with nowhere to report", buf.String())
	}
}
