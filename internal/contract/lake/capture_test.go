package lake

import (
	"encoding/json"
	"testing"
)

func TestLSN(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text string
		lsn  LSN
	}{
		{"0/0", 0},
		{"0/16B3748", 0x16B3748},
		{"16/B374D848", 0x16_B374D848},
		{"FFFFFFFF/FFFFFFFF", ^LSN(0)},
	} {
		if got := c.lsn.String(); got != c.text {
			t.Errorf("%d prints %s, want %s", c.lsn, got, c.text)
		}
		got, err := ParseLSN(c.text)
		if err != nil || got != c.lsn {
			t.Errorf("%s parses to %d, %v", c.text, got, err)
		}
		data, _ := json.Marshal(c.lsn)
		var back LSN
		if err := json.Unmarshal(data, &back); err != nil || back != c.lsn {
			t.Errorf("%s: JSON %s reads back as %d, %v", c.text, data, back, err)
		}
	}
	for _, bad := range []string{"", "16", "16/", "/1", "G/1", "1/100000000", `"1/1"`} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	var l LSN
	if err := json.Unmarshal([]byte("42"), &l); err == nil {
		t.Error("a number read as an LSN")
	}
	if (*Capture)(nil).Moves() || !(&Capture{Snapshot: true}).Moves() || !(&Capture{Start: 1, End: 2}).Moves() || (&Capture{Start: 2, End: 2}).Moves() {
		t.Error("Moves")
	}
	if !IsCaptureColumn(OpColumn) || IsCaptureColumn("last_updated") || len(CaptureColumns) != 3 {
		t.Error("capture columns")
	}
}
