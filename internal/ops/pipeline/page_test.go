package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/contract/totesys"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/ops/status"
)

// TestStatusPageFigures gathers what the status page shows from a loaded
// warehouse: the sales value of each order's current version by month and
// currency, the loads of the window and how far behind the source the
// warehouse was, and the row counts, counted once per load.
func TestStatusPageFigures(t *testing.T) {
	t.Parallel()
	cfg := install(t)
	src := cfg.SourceURL
	pgtest.Exec(t, src, totesys.Schema)
	pgtest.Exec(t, src, pgtest.ReferenceRows)
	pgtest.Exec(t, src, `INSERT INTO sales_order SELECT g, '2024-03-05 10:00', now() - interval '1 hour',1,1,1,g,2.50,1,'2024-01-02','2024-01-03',1
		FROM generate_series(1, 4) g`)
	cycle(t, cfg)
	pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = 20, last_updated = now() WHERE sales_order_id = 2`)
	cycle(t, cfg)

	cache := &status.Cache{}
	opts := status.Options{Window: 24 * time.Hour, Sales: true, Cache: cache}
	r := status.GatherWith(context.Background(), cfg, opts)
	// The current versions: 1 + 20 + 3 + 4 units at 2.50.
	if len(r.Sales) != 1 || r.Sales[0].Month != "2024-03" || r.Sales[0].Currency != "GBP" || r.Sales[0].Value != 70 {
		t.Errorf("sales %+v, want 2024-03 GBP 70", r.Sales)
	}
	if len(r.Loads) != 2 || len(r.Behind) < 2 {
		t.Errorf("%d loads and %d behind-source points in the window, want 2 and a line", len(r.Loads), len(r.Behind))
	}
	if r.Counts["fact_sales_order"] != 5 {
		t.Fatalf("fact_sales_order counts %d, want 5 versions", r.Counts["fact_sales_order"])
	}
	// Until the next load the counts come from the cache.
	pgtest.Exec(t, cfg.WarehouseURL, `DELETE FROM fact_sales_order WHERE sales_order_id = 1`)
	if again := status.GatherWith(context.Background(), cfg, opts); again.Counts["fact_sales_order"] != 5 {
		t.Errorf("the second gathering counted again: %d", again.Counts["fact_sales_order"])
	}
	pgtest.Exec(t, src, `UPDATE sales_order SET units_sold = 30, last_updated = now() WHERE sales_order_id = 3`)
	cycle(t, cfg)
	if after := status.GatherWith(context.Background(), cfg, opts); after.Counts["fact_sales_order"] != 5 || len(after.Loads) != 3 {
		t.Errorf("after a load: %d versions counted, %d loads; want 5 (one deleted by hand, one new) and 3", after.Counts["fact_sales_order"], len(after.Loads))
	}
}
