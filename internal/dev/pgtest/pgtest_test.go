package pgtest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSnapshotLoads(t *testing.T) {
	url := NewDatabase(t)
	LoadSnapshot(t, url)
	for table, want := range map[string]int64{"sales_order": 11187, "payment": 15836, "address": 30} {
		if got := QueryInt(t, url, "SELECT count(*) FROM "+table); got != want {
			t.Errorf("%s: %d rows, want %d", table, got, want)
		}
	}
	if next := QueryInt(t, url, "SELECT nextval('sales_order_sales_order_id_seq')"); next <= 11187 {
		t.Errorf("sequence not moved past the data: %d", next)
	}
}
