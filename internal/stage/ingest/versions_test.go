package ingest

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestVersionsRoundTrip(t *testing.T) {
	t.Parallel()
	cases := map[string]Versions{
		"none":          {},
		"one":           {{7, 1_700_000_000_000_000}},
		"shared stamps": {{3, 5}, {1, 5}, {2, 5}},
		"out of order":  {{1, 9}, {2, 3}, {3, 12}, {4, -2}},
		"edges of the types": {{math.MinInt32, math.MinInt64}, {math.MaxInt32, math.MaxInt64}, {0, 0},
			{-1, math.MinInt64}, {5, math.MaxInt64}},
		"twice": {{1, 2}, {1, 2}},
	}
	for name, vs := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := json.Marshal(TableState{Recent: vs})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), `"recent":"`) {
				t.Errorf("recent versions not packed: %s", data)
			}
			var got TableState
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Recent, vs) {
				t.Errorf("round trip: %v, want %v", got.Recent, vs)
			}
		})
	}
}

func TestVersionsReadsEveryForm(t *testing.T) {
	t.Parallel()
	cases := []struct {
		json    string
		want    Versions
		wantErr string
	}{
		{`{"recent": [[1, 1700000000000000], [2, -5]]}`, Versions{{1, 1_700_000_000_000_000}, {2, -5}}, ""}, // as states were written before
		{`{"recent": null}`, nil, ""},
		{`{}`, nil, ""},
		{`{"recent": "AQ=="}`, Versions{}, ""},
		{`{"recent": "Ag=="}`, Versions{}, ""}, // format 2: a state with spilled ranges
		{`{"recent": "AwI="}`, nil, "not in a format this version of sandstone reads"},
		{`{"recent": "AYA="}`, nil, "truncated"},
		{`{"recent": "AQI="}`, nil, "truncated"},
		{`{"recent": "not base64!"}`, nil, "illegal base64"},
		{`{"recent": [[1, "x"]]}`, nil, "cannot unmarshal"},
	}
	for _, tc := range cases {
		var ts TableState
		err := json.Unmarshal([]byte(tc.json), &ts)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one saying %q", tc.json, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.json, err)
		case !slices.Equal(ts.Recent, tc.want) || (ts.Recent == nil) != (tc.want == nil):
			t.Errorf("%s: %v, want %v", tc.json, ts.Recent, tc.want)
		}
	}
}

// A state with spilled ranges packs its versions as format 2, which a
// sandstone older than the ranges refuses (it reads format 1 only); one
// without stays readable by it.
func TestSpilledStatesAreRefusedByOlderVersions(t *testing.T) {
	t.Parallel()
	vs := Versions{{1, 5}, {2, 9}}
	spill := []Spill{{From: 3, To: 4, Newest: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	for _, tc := range []struct {
		name   string
		ts     TableState
		format byte
	}{
		{"no spilled ranges", TableState{Recent: vs}, versionsFormat},
		{"spilled ranges", TableState{Recent: vs, Spilled: spill}, versionsFormatSpilled},
		{"spilled ranges, no versions", TableState{Spilled: spill}, versionsFormatSpilled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(map[string]*TableState{"sales_order": &tc.ts})
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]struct {
				Recent []byte `json:"recent"` // base64, as encoding/json decodes it
			}
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			if r := raw["sales_order"].Recent; len(r) == 0 || r[0] != tc.format {
				t.Fatalf("recent packed as %v, want format %d: %s", r, tc.format, data)
			}
			var got map[string]*TableState
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if g := got["sales_order"]; !slices.Equal(g.Recent, tc.ts.Recent) || !slices.Equal(g.Spilled, tc.ts.Spilled) {
				t.Errorf("round trip: %+v, want %+v", g, tc.ts)
			}
		})
	}
}

func TestVersionSet(t *testing.T) {
	t.Parallel()
	var none *versionSet
	if none.has(version{1, 1}) || none.len() != 0 {
		t.Fatal("a nil set has versions")
	}
	s := &versionSet{vs: []version{{3, 5}, {1, 5}, {2, math.MinInt64}, {math.MaxInt32, math.MaxInt64}, {1, 5}, {-4, 0}}}
	s.sort()
	if s.len() != 5 {
		t.Errorf("%d versions, want 5 (one twice)", s.len())
	}
	for _, tc := range []struct {
		v    version
		want bool
	}{
		{version{1, 5}, true}, {version{3, 5}, true}, {version{2, 5}, false}, {version{1, 6}, false},
		{version{2, math.MinInt64}, true}, {version{math.MaxInt32, math.MaxInt64}, true}, {version{-4, 0}, true}, {version{4, 0}, false},
	} {
		if got := s.has(tc.v); got != tc.want {
			t.Errorf("has(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
