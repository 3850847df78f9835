package synth

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestPayTimeIsAWeekdayMorning13HoursTo6DaysLater(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for range 20000 {
		// Any creation time in working hours, weekends included for good measure.
		created := start + rnd.Int64N(3*365)*msPerDay + int64(workFromHour)*msPerHour + rnd.Int64N(11*msPerHour)
		paid := payTime(rnd, created)
		delay := time.Duration(paid-created) * time.Millisecond
		at := time.UnixMilli(paid).UTC()
		if delay < payMinDelay || delay > payMaxDelay {
			t.Fatalf("created %s, paid %s: delay %s outside 13h..6d", time.UnixMilli(created).UTC(), at, delay)
		}
		if wd := at.Weekday(); wd == time.Saturday || wd == time.Sunday || at.Hour() != payHour || at.Second() != payAtSecond {
			t.Fatalf("paid at %s, want a weekday at 07:MM:11", at)
		}
	}
}

func TestHistoryPlacesOrdersInWorkingHourBursts(t *testing.T) {
	start := time.Date(2024, 3, 1, 16, 30, 0, 0, time.UTC) // a Friday afternoon
	end := time.Date(2024, 3, 12, 12, 0, 0, 0, time.UTC)
	p, err := newPlan(SeedOptions{SalesOrders: 2000, RandomSeed: 3, Start: start, End: end}, end.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h := newHistory(p)
	var kinds [3]int
	last := int64(0)
	for h.next() {
		e := h.ev
		kinds[e.kind]++
		at := time.UnixMilli(e.at).UTC()
		if e.at < p.start || e.at > p.end {
			t.Fatalf("event at %s outside %s..%s", at, start, end)
		}
		if e.at < last-burstSpanMs {
			t.Fatalf("event at %s before the previous minute's", at)
		}
		last = e.at
		if e.kind == eventDesign && e.id <= initialDesigns {
			if !at.Equal(start) {
				t.Fatalf("initial design %d at %s, want %s", e.id, at, start)
			}
			continue
		}
		ms := at.Second()*1000 + at.Nanosecond()/1e6
		if wd := at.Weekday(); wd == time.Saturday || wd == time.Sunday || at.Hour() < workFromHour ||
			at.Hour() >= workToHour || ms < burstFromMs || ms >= burstFromMs+burstSpanMs {
			t.Fatalf("event at %s, want a weekday 08:00-18:59 at about HH:MM:10", at)
		}
	}
	if kinds[eventSale] != 2000 || kinds[eventPurchase] != p.purchases || kinds[eventDesign] != initialDesigns+p.designs {
		t.Fatalf("kinds %v, want 2000 sales, %d purchases, %d designs", kinds, p.purchases, initialDesigns+p.designs)
	}
}

func TestNewPlanRejectsImpossibleSpans(t *testing.T) {
	now := time.Date(2024, 11, 15, 14, 40, 0, 0, time.UTC)
	saturday := time.Date(2024, 11, 9, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts SeedOptions
		want string
	}{
		{"negative", SeedOptions{SalesOrders: -1}, "0 or more"},
		{"end before start", SeedOptions{SalesOrders: 1, Start: now, End: now.Add(-time.Hour)}, "must end after it starts"},
		{"start in the future", SeedOptions{SalesOrders: 1, Start: now.Add(time.Hour)}, "must end after it starts"},
		{"weekend only", SeedOptions{SalesOrders: 1, Start: saturday, End: saturday.Add(30 * time.Hour)}, "no working hours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newPlan(tc.opts, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A weekend is fine when there is nothing to place.
	if _, err := newPlan(SeedOptions{Start: saturday, End: saturday.Add(30 * time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
}

func TestTextShapes(t *testing.T) {
	if len(departments) != departmentCount || len(currencyCodes) != currencyCount {
		t.Errorf("%d departments, %d currencies: fix the counts", len(departments), len(currencyCodes))
	}
	if got := itemCode(0); got != "AAAAAAA" {
		t.Errorf("itemCode(0) = %q", got)
	}
	day := time.Date(2024, 2, 23, 0, 0, 0, 0, time.UTC).UnixMilli() / msPerDay
	if got := designFile("Steel", day, 0); got != "steel-20240223-aaaa.json" {
		t.Errorf("designFile = %q", got)
	}
	if got := email("Mary Ann", "O'Keefe"); got != "maryann.o'keefe@terrifictotes.com" {
		t.Errorf("email = %q", got)
	}
}
