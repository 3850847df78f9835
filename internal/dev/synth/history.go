package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The shape of the real snapshot (shared/totesys, 2024-11-15) that the
// synthetic history copies.
const (
	// purchasesPerSale: 4,649 purchase orders for 11,187 sales orders, so
	// about 1.4 transactions (and payments) per sales order.
	purchasesPerSale = 4649.0 / 11187
	// designsPerSale: 463 designs were added after the first 10.
	designsPerSale = 463.0 / 11187
	// initialDesigns are the designs that exist from the start.
	initialDesigns = 10
	// paidShare: 9,648 of 15,836 payments are paid; the others never were.
	paidShare = 9648.0 / 15836
	// lateDesignShare: 21 sales orders refer to a design stamped later than
	// the order.
	lateDesignShare = 21.0 / 11187

	// Orders arrive on weekdays from 08:00 to 18:59, at about HH:MM:10.
	workFromHour, workToHour = 8, 19
	burstFromMs, burstSpanMs = 9500, 1100 // 09.500 .. 10.599 s into the minute
	// Payments are paid on a weekday at 07:MM:11, 13 hours to 6 days after
	// they were created.
	payHour      = 7
	payAtSecond  = 11
	payMinDelay  = 13 * time.Hour
	payMaxDelay  = 6 * 24 * time.Hour
	refLaterSkew = 1601 * time.Millisecond // counterparty and staff rows follow the others
)

const (
	msPerMinute = int64(time.Minute / time.Millisecond)
	msPerHour   = int64(time.Hour / time.Millisecond)
	msPerDay    = 24 * msPerHour
	minPerDay   = 24 * 60
)

type eventKind uint8

const (
	eventDesign eventKind = iota
	eventSale
	eventPurchase
)

// event is one thing that happens in the history: a new design, or a new
// sales or purchase order with its transaction and payment. Times are Unix
// milliseconds, dates Unix days.
type event struct {
	kind eventKind
	at   int64
	// id is the design_id, sales_order_id or purchase_order_id.
	id int32
	// txID is the transaction_id and payment_id of an order.
	txID int32

	staff, counterparty, currency, location, design int32
	quantity                                        int32 // units_sold or item_quantity
	price                                           int64 // cents
	deliveryDay, paymentDay                         int64
	itemCode                                        uint64
	paid                                            bool
	paidAt                                          int64
	companyAc, counterpartyAc                       int32

	designName, designDir int
	designFileDay         int64
	designSuffix          uint64
}

// amount is the payment amount of an order, in cents.
func (e *event) amount() int64 { return int64(e.quantity) * e.price }

// plan fixes the size and the time span of a seeded history.
type plan struct {
	seed                      uint64
	start, end                int64 // Unix ms
	sales, purchases, designs int   // designs added after the initial ones
	axis                      axis
}

func newPlan(opts SeedOptions, now time.Time) (plan, error) {
	if opts.SalesOrders < 0 {
		return plan{}, fmt.Errorf("sales orders must be 0 or more, not %d", opts.SalesOrders)
	}
	start, end := opts.Start, opts.End
	if start.IsZero() {
		start = DefaultStart
	}
	if end.IsZero() || end.After(now) {
		end = now
	}
	p := plan{
		seed:      uint64(opts.RandomSeed), // #nosec G115 -- any bit pattern is a fine seed
		start:     start.UTC().Truncate(time.Millisecond).UnixMilli(),
		end:       end.UTC().Truncate(time.Millisecond).UnixMilli(),
		sales:     opts.SalesOrders,
		purchases: int(math.Round(float64(opts.SalesOrders) * purchasesPerSale)),
		designs:   int(math.Round(float64(opts.SalesOrders) * designsPerSale)),
	}
	if p.end <= p.start+refLaterSkew.Milliseconds() {
		return p, fmt.Errorf("the history must end after it starts: start %s, end %s",
			start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	}
	p.axis = newAxis(p.start, p.end)
	if p.sales+p.purchases+p.designs > 0 && p.axis.total == 0 {
		return p, fmt.Errorf("no working hours (weekdays %02d:00-%02d:00 UTC) between %s and %s to place orders in",
			workFromHour, workToHour, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	}
	return p, nil
}

// axis is the working time between start and end, minute by minute.
type axis struct {
	days  []workDay
	total int64
}

// workDay is a run of working minutes: Unix minutes first .. first+n-1,
// preceded by before working minutes on earlier days.
type workDay struct{ first, n, before int64 }

func newAxis(start, end int64) axis {
	firstMin := (start + msPerMinute - 1) / msPerMinute        // an order's minute starts at or after start
	lastMin := (end - burstFromMs - burstSpanMs) / msPerMinute // and ends, with its seconds, by end
	var a axis
	for d := firstMin / minPerDay; d <= lastMin/minPerDay; d++ {
		if weekend(d) {
			continue
		}
		lo := max(d*minPerDay+workFromHour*60, firstMin)
		hi := min(d*minPerDay+workToHour*60, lastMin+1)
		if hi > lo {
			a.days = append(a.days, workDay{first: lo, n: hi - lo, before: a.total})
			a.total += hi - lo
		}
	}
	return a
}

// weekend reports whether Unix day d is a Saturday or a Sunday.
func weekend(d int64) bool {
	wd := (d + 4) % 7 // 1970-01-01 was a Thursday; 0 = Sunday
	return wd == 0 || wd == 6
}

// history replays a plan event by event, in time order. Two histories of
// the same plan yield the same events, so each table can be streamed in a
// pass of its own without holding any of it in memory.
type history struct {
	p   plan
	rnd *rand.Rand

	initialLeft                int
	salesLeft, purchasesLeft   int
	designsLeft                int
	pointsLeft                 int
	x                          float64 // position of the last event on the axis, 0..1
	day                        int
	sales, purchases, txs      int32
	designsSoFar, designsTotal int32

	ev event
}

func newHistory(p plan) *history {
	return &history{
		p:             p,
		rnd:           rand.New(rand.NewPCG(p.seed, 0x70735e5)), // #nosec G404 -- synthetic data, not secrets
		initialLeft:   initialDesigns,
		salesLeft:     p.sales,
		purchasesLeft: p.purchases,
		designsLeft:   p.designs,
		pointsLeft:    p.sales + p.purchases + p.designs,
		designsTotal:  int32(initialDesigns + p.designs), // #nosec G115 -- bounded by the int32 ids of the schema
	}
}

// next moves to the next event (h.ev) and reports whether there was one.
func (h *history) next() bool {
	e := &h.ev
	*e = event{}
	if h.initialLeft > 0 {
		h.initialLeft--
		h.newDesign(e, h.p.start)
		return true
	}
	if h.pointsLeft == 0 {
		return false
	}
	at := h.nextTime()
	// Which kind: drawn without replacement, so the counts come out exact.
	switch r := h.rnd.IntN(h.salesLeft + h.purchasesLeft + h.designsLeft); {
	case r < h.salesLeft:
		h.salesLeft--
		h.newSale(e, at)
	case r < h.salesLeft+h.purchasesLeft:
		h.purchasesLeft--
		h.newPurchase(e, at)
	default:
		h.designsLeft--
		h.newDesign(e, at)
	}
	return true
}

// nextTime draws the time of the next event: the events are a sorted
// uniform sample of the working minutes (drawn one by one as successive
// order statistics), each at about HH:MM:10.
func (h *history) nextTime() int64 {
	u := 1 - h.rnd.Float64() // (0, 1]
	h.x += (1 - h.x) * (1 - math.Pow(u, 1/float64(h.pointsLeft)))
	h.pointsLeft--
	k := min(int64(h.x*float64(h.p.axis.total)), h.p.axis.total-1)
	for k >= h.p.axis.days[h.day].before+h.p.axis.days[h.day].n {
		h.day++
	}
	d := h.p.axis.days[h.day]
	return (d.first+k-d.before)*msPerMinute + burstFromMs + h.rnd.Int64N(burstSpanMs)
}

func (h *history) newDesign(e *event, at int64) {
	h.designsSoFar++
	e.kind, e.at, e.id = eventDesign, at, h.designsSoFar
	e.designName = h.rnd.IntN(len(designNames))
	e.designDir = h.rnd.IntN(len(designDirs))
	e.designFileDay = at/msPerDay - h.rnd.Int64N(730)
	e.designSuffix = h.rnd.Uint64()
}

func (h *history) newSale(e *event, at int64) {
	h.sales++
	h.txs++
	e.kind, e.at, e.id, e.txID = eventSale, at, h.sales, h.txs
	if h.designsSoFar < h.designsTotal && h.rnd.Float64() < lateDesignShare {
		e.design = h.designsSoFar + 1 // stamped later than this order, as in the snapshot
	} else {
		e.design = 1 + h.rnd.Int32N(h.designsSoFar)
	}
	h.orderCommon(e)
	e.quantity = 1001 + h.rnd.Int32N(99000) // 1001 .. 100000
	e.price = 200 + h.rnd.Int64N(201)       // 2.00 .. 4.00
	h.payment(e)
}

func (h *history) newPurchase(e *event, at int64) {
	h.purchases++
	h.txs++
	e.kind, e.at, e.id, e.txID = eventPurchase, at, h.purchases, h.txs
	h.orderCommon(e)
	e.itemCode = h.rnd.Uint64()
	e.quantity = 1 + h.rnd.Int32N(999)   // 1 .. 999
	e.price = 100 + h.rnd.Int64N(99_900) // 1.00 .. 999.99
	h.payment(e)
}

func (h *history) orderCommon(e *event) {
	e.staff = 1 + h.rnd.Int32N(staffCount)
	e.counterparty = 1 + h.rnd.Int32N(counterpartyCount)
	e.currency = 1 + h.rnd.Int32N(currencyCount)
	e.location = 1 + h.rnd.Int32N(addressCount)
	day := e.at / msPerDay
	e.deliveryDay = day + h.rnd.Int64N(8)
	e.paymentDay = day + h.rnd.Int64N(7)
	e.companyAc = 10_000_000 + h.rnd.Int32N(90_000_000)
	e.counterpartyAc = 10_000_000 + h.rnd.Int32N(90_000_000)
}

// payment decides whether and when the order's payment is paid: most are,
// 13 hours to 6 days after the order, unless that is still to come.
func (h *history) payment(e *event) {
	willPay := h.rnd.Float64() < paidShare
	at := payTime(h.rnd, e.at)
	e.paid = willPay && at <= h.p.end
	e.paidAt = at
}

// payTime draws when a payment created at created is paid: on a weekday at
// 07:MM:11.mmm, 13 hours to 6 days later.
func payTime(rnd *rand.Rand, created int64) int64 {
	lo, hi := created+payMinDelay.Milliseconds(), created+payMaxDelay.Milliseconds()
	slot := payHour*msPerHour + rnd.Int64N(60)*msPerMinute + payAtSecond*1000 + rnd.Int64N(1000)
	var cands [8]int64
	n := 0
	for d := lo / msPerDay; d <= hi/msPerDay; d++ {
		if c := d*msPerDay + slot; !weekend(d) && c >= lo && c <= hi {
			cands[n] = c
			n++
		}
	}
	// A span of 131 hours holds at least three weekday slots.
	return cands[rnd.IntN(n)]
}
