package ingest

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// preflight stands in for the helper's until merged.
func preflight(ctx context.Context, conn *pgx.Conn, slot, publication string) (any, error) {
	_, err := conn.Exec(ctx, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'sandstone') THEN CREATE PUBLICATION sandstone FOR TABLE address, counterparty, currency, department, design, payment_type, staff, transaction, sales_order, purchase_order, payment; END IF; END $$")
	return nil, err
}
