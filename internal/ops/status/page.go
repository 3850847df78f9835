package status

// The status page: the Report that `sandstone status` writes as text,
// written as HTML with server-side SVG charts, for `sandstone run
// --metrics-addr` to serve at /.

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/contract/star"
)

// PageWindow is how far back the page's charts look.
const PageWindow = 24 * time.Hour

// pageCSP lets the page load nothing at all: no script, font, image or
// style from anywhere, its own inline style and empty icon alone.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"stamp": stamp,
	"clock": clock,
	"count": count,
	"secs":  func(s float64) string { return dur(seconds(s)) },
	"money": money,
	"slot":  slotSummary,
	"n": func(v *int64) int64 {
		if v == nil {
			return 0
		}
		return *v
	},
}).Parse(pageHTML))

// Page serves the status page of one installation. It gathers the report
// at most once per half refresh, whoever asks, keeping what changes only
// with a load (Cache) between gatherings. It only reads.
type Page struct {
	cfg     config.Config
	opts    Options
	refresh time.Duration

	mu   sync.Mutex
	last *Report
	at   time.Time
}

// NewPage returns the page of the installation cfg, with the alert state
// in the file alertState, that the browser reloads every refresh.
func NewPage(cfg config.Config, alertState string, refresh time.Duration) *Page {
	return &Page{cfg: cfg, refresh: max(refresh, 2*time.Second),
		opts: Options{AlertState: alertState, Window: PageWindow, Sales: true, Cache: &Cache{}}}
}

// ServeHTTP writes the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := p.report(r.Context())
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf, p.cfg, p.refresh); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = buf.WriteTo(w)
}

// report is the latest report, gathered again when older than half the
// refresh.
func (p *Page) report(ctx context.Context) Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil || time.Since(p.at) >= p.refresh/2 {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		r := GatherWith(ctx, p.cfg, p.opts)
		p.last, p.at = &r, time.Now()
	}
	return *p.last
}

// pageView is what the template writes: the report, the settings
// (redacted), and the charts drawn from the report.
type pageView struct {
	Report
	Refresh  int
	Settings [][2]string
	Tables   []string
	Rejects  []rejectRow
	Drift    []driftRow
	Totals   []total
	Behind   plot
	Rows     plot
	Rejected plot
	Sales    plot
}

type rejectRow struct {
	Table                    string
	BadValue, MissingRefence int64
}

type driftRow struct {
	Table string
	Kinds map[string]int64
}

type total struct {
	Currency string
	Value    float64
}

// WriteHTML writes the report as the status page: the settings of cfg
// (passwords redacted), reloading every refresh.
func (r Report) WriteHTML(w io.Writer, cfg config.Config, refresh time.Duration) error {
	v := pageView{Report: r, Refresh: int(refresh.Seconds()),
		Settings: [][2]string{
			{"warehouse", config.Redact(cfg.WarehouseURL)}, {"schema", or(cfg.WarehouseSchema, config.DefaultSchema)},
			{"ingestion bucket", config.Redact(cfg.IngestBucket)}, {"processed bucket", config.Redact(cfg.ProcessedBucket)},
		},
		Behind: behindPlot(r.Behind, r.At, PageWindow), Sales: salesPlot(r.Sales)}
	for _, t := range star.Tables {
		v.Tables = append(v.Tables, t.Name)
	}
	v.Rows = r.rowsPlot()
	v.Rejects, v.Rejected = r.rejectsView()
	if a := r.LastAudit; a != nil {
		drift := a.DriftRows()
		for _, t := range slices.Sorted(maps.Keys(drift)) {
			if slices.ContainsFunc(slices.Collect(maps.Values(drift[t])), func(n int64) bool { return n > 0 }) {
				v.Drift = append(v.Drift, driftRow{Table: t, Kinds: drift[t]})
			}
		}
	}
	sums := map[string]float64{}
	for _, s := range r.Sales {
		sums[s.Currency] += s.Value
	}
	for _, c := range slices.Sorted(maps.Keys(sums)) {
		v.Totals = append(v.Totals, total{c, sums[c]})
	}
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("write the status page: %w", err)
	}
	return nil
}

// rowsPlot draws the rows each batch of the window brought.
func (r Report) rowsPlot() plot {
	values := make([]float64, len(r.Loads))
	for i, l := range r.Loads {
		for _, n := range l.Rows {
			values[i] += float64(n)
		}
	}
	return barPlot("rows", "Rows per batch loaded, last "+hours(PageWindow), "the rows each batch wrote to the warehouse, over every table",
		values, func(i int) string { return "#" + strconv.FormatInt(r.Loads[i].Sequence, 10) },
		func(i int) string {
			return fmt.Sprintf("batch %s at %s: %.0f rows", r.Loads[i].Batch, stamp(r.Loads[i].LoadedAt), values[i])
		}, compact)
}

// rejectsView is the rejected rows by table and reason, as a table and a
// chart.
func (r Report) rejectsView() ([]rejectRow, plot) {
	var rows []rejectRow
	var values []float64
	var labels []string
	for _, t := range slices.Sorted(maps.Keys(r.Rejected)) {
		k := r.Rejected[t]
		rows = append(rows, rejectRow{Table: t, BadValue: k["bad_value"], MissingRefence: k["missing_reference"]})
		for _, kind := range slices.Sorted(maps.Keys(k)) {
			values = append(values, float64(k[kind]))
			labels = append(labels, t+" "+kind)
		}
	}
	p := barPlot("rejected", "Rejected rows by table and reason", "set aside by transform; 'sandstone rejects' lists them",
		values, func(i int) string { return labels[i] }, func(i int) string { return fmt.Sprintf("%s: %.0f", labels[i], values[i]) }, compact)
	if len(values) == 0 {
		p.Empty = "No row rejected."
	}
	return rows, p
}

// money writes an amount with two decimals and its thousands grouped:
// 1,234,567.80.
func money(v float64) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', 2, 64)
	whole, cents := s[:len(s)-3], s[len(s)-3:]
	for i := len(whole) - 3; i > 0; i -= 3 {
		whole = whole[:i] + "," + whole[i:]
	}
	if v < 0 {
		whole = "-" + whole
	}
	return whole + cents
}

// hours writes a window as whole hours: "24 hours".
func hours(d time.Duration) string { return strconv.Itoa(int(d.Hours())) + " hours" }
