// Package progress tells a person how long work is going: per table, the
// rows done, the rate and, when the total is known, the time left. On a
// terminal it keeps one line up to date; elsewhere it logs a line now and
// then, so that a long initial load in a log shows it is alive.
//
// A nil *Meter and a nil *Counter do nothing: stages call them freely.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/logging"
)

// TerminalEvery is how often the terminal line is rewritten.
const TerminalEvery = 250 * time.Millisecond

// LogEvery is how often a log line is written when not on a terminal,
// unless New is told otherwise.
const LogEvery = 30 * time.Second

// Meter reports the progress of one stage's tables. Its methods are safe
// for concurrent use.
type Meter struct {
	stage string
	term  io.Writer    // the terminal, or nil
	log   *slog.Logger // when not on a terminal
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	last time.Time // of the last report
	wide int       // the terminal line's length, to blank it
}

// New returns a Meter for stage that writes to w when w is a terminal, and
// otherwise logs to log every logEvery, LogEvery when zero (nothing when
// log is nil; the logger's lines carry the stage and run).
func New(stage string, w io.Writer, log *slog.Logger, logEvery time.Duration) *Meter {
	if logEvery <= 0 {
		logEvery = LogEvery
	}
	m := &Meter{stage: stage, log: log, every: logEvery, now: time.Now}
	if logging.IsTerminal(w) {
		m.term, m.every = w, TerminalEvery
	}
	m.last = m.now() // work shorter than every says nothing
	return m
}

// Counter counts one table's rows.
type Counter struct {
	m      *Meter
	table  string
	total  int64
	done   int64
	start  time.Time
	closed bool
}

// Table starts counting table's rows; total is the number expected, or 0
// when unknown.
func (m *Meter) Table(table string, total int64) *Counter {
	if m == nil {
		return nil
	}
	return &Counter{m: m, table: table, total: total, start: m.now()}
}

// Add counts n more rows and reports when it is time to.
func (c *Counter) Add(n int64) {
	if c == nil {
		return
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.done += n
	if now := c.m.now(); now.Sub(c.m.last) >= c.m.every {
		c.m.last = now
		c.m.report(c, now)
	}
}

// Done ends the table's count; on a terminal its line is cleared, as the
// stage's result says the rest.
func (c *Counter) Done() {
	if c == nil {
		return
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if c.m.term != nil && c.m.wide > 0 {
		_, _ = fmt.Fprintf(c.m.term, "\r%*s\r", c.m.wide, "")
		c.m.wide = 0
	}
}

// report writes where c stands: on the terminal line, or as a log line.
func (m *Meter) report(c *Counter, now time.Time) {
	elapsed := now.Sub(c.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(c.done) / elapsed.Seconds()
	}
	var left time.Duration
	if c.total > c.done && rate > 0 {
		left = time.Duration(float64(c.total-c.done) / rate * float64(time.Second))
	}
	if m.term == nil {
		if m.log != nil {
			attrs := []any{"table", c.table, "rows", c.done, "rows_per_second", int64(rate)}
			if c.total > 0 {
				attrs = append(attrs, "of", c.total, "seconds_left", left.Round(time.Second).Seconds())
			}
			m.log.Info("progress", attrs...)
		}
		return
	}
	line := fmt.Sprintf("%s %s: %d rows", m.stage, c.table, c.done)
	if c.total > 0 {
		line = fmt.Sprintf("%s %s: %d of %d rows (%d%%)", m.stage, c.table, c.done, c.total, c.done*100/c.total)
	}
	line += fmt.Sprintf(", %.0f rows/s", rate)
	if left > 0 {
		line += fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	pad := max(0, m.wide-len(line))
	m.wide = len(line)
	_, _ = fmt.Fprintf(m.term, "\r%s%*s", line, pad, "")
}
