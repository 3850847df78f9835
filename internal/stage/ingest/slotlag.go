package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Lag is how far wal capture's replication slot holds the source back, as
// pg_replication_slots tells it.
type Lag struct {
	Slot string `json:"slot"`
	// RetainedBytes is the WAL the slot keeps on the source's disk: from
	// its restart_lsn to the server's current WAL position. It grows while
	// no capture runs, and is what max_slot_wal_keep_size bounds.
	RetainedBytes int64 `json:"retained_bytes"`
	// UnconfirmedBytes is the WAL written since the position the capture
	// last confirmed (confirmed_flush_lsn): what the next run reads, or
	// skips when none of it is published.
	UnconfirmedBytes int64 `json:"unconfirmed_bytes"`
	// WALStatus is reserved or extended (the WAL is kept), unreserved (it
	// is past max_slot_wal_keep_size and may go at the next checkpoint) or
	// lost (the slot is invalidated: a capture gap).
	WALStatus string `json:"wal_status"`
	// SafeWALBytes is how much more WAL may be written before the slot is
	// at risk of being invalidated; nil when max_slot_wal_keep_size is -1
	// (no limit: the slot keeps WAL until the disk is full).
	SafeWALBytes *int64 `json:"safe_wal_bytes,omitempty"`
	// Active is true while a consumer streams from the slot.
	Active bool `json:"active"`
}

// SlotLag reads how far the replication slot (config.DefaultSlot of
// sourceURL when empty) holds the source at sourceURL back; nil when the
// slot does not exist. The bytes of an invalidated slot, which holds
// nothing any more, are 0. They are counted to the WAL's insert position:
// with asynchronous commits, the WAL's written end may lag what was
// written to it by up to the WAL buffers.
func SlotLag(ctx context.Context, sourceURL, slot string) (*Lag, error) {
	slot = cmp.Or(slot, config.DefaultSlot(sourceURL))
	conn, err := connectSource(ctx, sourceURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	l := Lag{Slot: slot}
	var retained, unconfirmed *int64
	var status *string
	err = conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn)::bigint,
		pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::bigint, wal_status, safe_wal_size, active
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot).Scan(&retained, &unconfirmed, &status, &l.SafeWALBytes, &l.Active)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read slot %s: %w", slot, err))
	}
	l.RetainedBytes, l.UnconfirmedBytes, l.WALStatus = orZero(retained), orZero(unconfirmed), deref(status)
	return &l, nil
}

// Check is an error of kind errkind.SlotLag when the slot holds back more
// than limit bytes of WAL on the source's disk, saying what it risks and
// what to do; nil otherwise.
func (l *Lag) Check(limit int64) error {
	if l == nil || l.RetainedBytes <= limit {
		return nil
	}
	risk := "max_slot_wal_keep_size is not set, so it keeps WAL until the source's disk is full"
	if l.SafeWALBytes != nil {
		risk = fmt.Sprintf("%d bytes more and the server invalidates it (max_slot_wal_keep_size), a capture gap", *l.SafeWALBytes)
	}
	state := "no capture is reading it: start it again (sandstone run, or ingest --capture wal), or, if wal capture is given up, drop the slot with sandstone drop-slot"
	if l.Active {
		state = "capture reads it and is not keeping up: see ingest's durations and errors"
	}
	return errkind.Wrap(errkind.SlotLag, fmt.Errorf("the replication slot %s holds back %d bytes of WAL on the source's disk (limit %d, %s); %s; %s",
		l.Slot, l.RetainedBytes, limit, config.EnvSlotLagAlert, risk, state))
}

// Lost reports whether the slot was invalidated: the server removed WAL
// it still needed, so the changes after its confirmed position are gone.
func (l *Lag) Lost() bool { return l.WALStatus == "lost" }

func orZero(n *int64) int64 {
	if n == nil {
		return 0
	}
	return *n
}
