package status

// The page's charts, drawn on the server as SVG: a plot is the shapes and
// labels in the coordinates of a fixed view box, which the page's template
// writes out; nothing is drawn in the browser.

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// The view box of every plot, and the margins that hold the axis labels.
const (
	plotW, plotH                    = 640.0, 220.0
	padLeft, padRight, padTop, padB = 72.0, 28.0, 10.0, 26.0
)

// palette colours the series of a plot, in order.
var palette = []string{"#2f6db5", "#d9822b", "#3a9a5b", "#b8453b", "#7d5ba6", "#8c6d3f", "#c25a9c", "#5f6b73"}

// plot is one chart: lines and bars on a frame, labelled ticks and a
// legend; Empty says why there is nothing to draw instead.
type plot struct {
	ID, Title, Note string
	Empty           string
	Lines           []line
	Bars            []bar
	XTicks, YTicks  []tick
	Legend          []legend
}

type line struct{ Color, Points string }

type bar struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type tick struct {
	X, Y float64
	Text string
}

type legend struct{ Color, Name string }

// ViewBox is the plot's SVG view box.
func (plot) ViewBox() string { return fmt.Sprintf("0 0 %g %g", plotW, plotH) }

// Left, Right and Bottom are where the frame's edges lie.
func (plot) Left() float64   { return padLeft }
func (plot) Right() float64  { return plotW - padRight }
func (plot) Bottom() float64 { return plotH - padB }

// frame maps data to the view box: x from x0 to x1, y from 0 to ymax.
type frame struct{ x0, x1, ymax float64 }

func (f frame) x(v float64) float64 {
	if f.x1 == f.x0 {
		return padLeft
	}
	return round1(padLeft + (v-f.x0)/(f.x1-f.x0)*(plotW-padLeft-padRight))
}

func (f frame) y(v float64) float64 {
	return round1(plotH - padB - v/f.ymax*(plotH-padTop-padB))
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// yTicks sets the frame's top to a round number at or above top and
// labels five ticks up to it with label.
func (f *frame) yTicks(top float64, label func(float64) string) []tick {
	f.ymax = niceCeil(top)
	var ticks []tick
	for i := range 5 {
		v := f.ymax * float64(i) / 4
		ticks = append(ticks, tick{X: padLeft - 6, Y: f.y(v), Text: label(v)})
	}
	return ticks
}

// niceCeil is the smallest of 1, 2, 2.5, 5 times a power of ten at or
// above v (1 for nothing).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// points writes a polyline's points.
func points(xy [][2]float64) string {
	var b strings.Builder
	for i, p := range xy {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(p[0], 'f', -1, 64) + "," + strconv.FormatFloat(p[1], 'f', -1, 64))
	}
	return b.String()
}

// behindPlot draws how far the warehouse was behind the source over the
// window ending at now, from its first point (a warehouse loaded for the
// first time an hour ago gets an hour wide chart).
func behindPlot(pts []BehindPoint, now time.Time, window time.Duration) plot {
	p := plot{ID: "behind", Title: "Behind the source, last " + hours(window),
		Note: "the age of the newest source snapshot loaded; it rises between loads (an upper bound while the source is quiet) and drops at each load"}
	if len(pts) == 0 {
		p.Empty = "No batch loaded yet."
		return p
	}
	from := pts[0].At
	f := frame{x0: float64(from.UnixMilli()), x1: float64(now.UnixMilli())}
	top := 0.0
	for _, b := range pts {
		top = max(top, b.Seconds)
	}
	p.YTicks = f.yTicks(top, func(v float64) string { return dur(seconds(v)) })
	xy := make([][2]float64, len(pts))
	for i, b := range pts {
		xy[i] = [2]float64{f.x(float64(b.At.UnixMilli())), f.y(b.Seconds)}
	}
	p.Lines = []line{{Color: palette[0], Points: points(xy)}}
	layout := "15:04"
	if now.Sub(from) < 10*time.Minute {
		layout = "15:04:05"
	}
	for i := range 5 {
		t := from.Add(now.Sub(from) * time.Duration(i) / 4)
		p.XTicks = append(p.XTicks, tick{X: f.x(float64(t.UnixMilli())), Text: t.UTC().Format(layout)})
	}
	return p
}

// barPlot draws one bar per value, labelled below by label when it says
// something (every few bars for many), each bar titled title(i).
func barPlot(id, title, note string, values []float64, label, titles func(int) string, yLabel func(float64) string) plot {
	p := plot{ID: id, Title: title, Note: note}
	if len(values) == 0 {
		p.Empty = "Nothing yet."
		return p
	}
	f := frame{x0: 0, x1: float64(len(values))}
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	p.YTicks = f.yTicks(top, yLabel)
	slot := (plotW - padLeft - padRight) / float64(len(values))
	every := max(1, len(values)/8)
	for i, v := range values {
		x := f.x(float64(i))
		y := f.y(v)
		p.Bars = append(p.Bars, bar{X: round1(x + slot*0.1), Y: y, W: round1(slot * 0.8), H: round1(f.y(0) - y), Color: palette[0], Title: titles(i)})
		if i%every == 0 {
			p.XTicks = append(p.XTicks, tick{X: round1(x + slot/2), Text: label(i)})
		}
	}
	return p
}

// salesPlot draws the sales value by month, one line per currency (a
// month without sales in a currency is 0).
func salesPlot(sales []warehouse.Sales) plot {
	p := plot{ID: "sales", Title: "Sales value by month of the order and currency",
		Note: "units sold x unit price of each order's current version; deleted orders left out"}
	if len(sales) == 0 {
		p.Empty = "No sales order in the warehouse yet."
		return p
	}
	var months, currencies []string
	value := map[[2]string]float64{}
	top := 0.0
	for _, s := range sales {
		if len(months) == 0 || months[len(months)-1] != s.Month {
			months = append(months, s.Month)
		}
		if !slices.Contains(currencies, s.Currency) {
			currencies = append(currencies, s.Currency)
		}
		value[[2]string{s.Month, s.Currency}] = s.Value
		top = max(top, s.Value)
	}
	f := frame{x0: 0, x1: float64(max(1, len(months)-1))}
	p.YTicks = f.yTicks(top, func(v float64) string { return compact(v) })
	every := max(1, len(months)/8)
	for i, m := range months {
		if i%every == 0 {
			p.XTicks = append(p.XTicks, tick{X: f.x(float64(i)), Text: m})
		}
	}
	for c, cur := range currencies {
		xy := make([][2]float64, len(months))
		for i, m := range months {
			xy[i] = [2]float64{f.x(float64(i)), f.y(value[[2]string{m, cur}])}
		}
		color := palette[c%len(palette)]
		p.Lines = append(p.Lines, line{Color: color, Points: points(xy)})
		p.Legend = append(p.Legend, legend{Color: color, Name: cur})
	}
	return p
}

// compact writes a number shortly: 950, 12.5k, 3.2M.
func compact(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
