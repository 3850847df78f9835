package bench

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := time.Second
	ten := []time.Duration{10 * s, 1 * s, 9 * s, 2 * s, 8 * s, 3 * s, 7 * s, 4 * s, 6 * s, 5 * s}
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 50, 0},
		{"one value is every percentile", []time.Duration{3 * s}, 95, 3 * s},
		{"median of ten is the 5th", ten, 50, 5 * s},
		{"p95 of ten is the largest", ten, 95, 10 * s},
		{"p90 of ten is the 9th", ten, 90, 9 * s},
		{"p10 of ten is the smallest", ten, 10, 1 * s},
		{"p100 is the max", ten, 100, 10 * s},
		{"a tiny percentile is the min", ten, 0.1, 1 * s},
		{"median of two is the lower", []time.Duration{4 * s, 2 * s}, 50, 2 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Freshness{Delays: slices.Clone(tt.values)}
			if got := f.Percentile(tt.p); got != tt.want {
				t.Fatalf("p%v of %v = %v, want %v", tt.p, tt.values, got, tt.want)
			}
			if !slices.Equal(f.Delays, tt.values) {
				t.Fatal("Percentile reordered the delays")
			}
		})
	}
}

func TestPercentileOfHundred(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 100; i++ {
		sorted = append(sorted, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50, 95: 95, 99: 99, 99.5: 100, 1: 1} {
		if got := percentile(sorted, p); got != want*time.Millisecond {
			t.Errorf("p%v = %v, want %v", p, got, want*time.Millisecond)
		}
	}
}
