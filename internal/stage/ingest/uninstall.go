package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// ownMark is the comment on a publication that Sandstone created.
const ownMark = "created by sandstone ingest --capture wal"

// Dropped tells what DropCapture removed from the source.
type Dropped struct {
	// Slot is set when the slot existed and was dropped.
	Slot bool
	// Publication is set when the publication was Sandstone's and was
	// dropped; KeptPublication when it exists and is someone else's.
	Publication, KeptPublication bool
}

// DropCapture removes what wal capture set up on the source: the slot,
// which otherwise holds WAL on the source's disk for ever, and the
// publication when Sandstone created it (its comment says so). A slot in
// use by a running consumer is refused (capture_not_ready): stop it first.
func DropCapture(ctx context.Context, sourceURL, slot, publication string) (Dropped, error) {
	var d Dropped
	conn, err := connectSource(ctx, sourceURL)
	if err != nil {
		return d, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var pid *int32
	err = conn.QueryRow(ctx, "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return d, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read slot %s: %w", slot, err))
	case pid != nil:
		return d, errkind.Wrap(errkind.CaptureNotReady, fmt.Errorf("slot %s is in use by process %d: stop the pipeline that reads it first", slot, *pid))
	default:
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1)", slot); err != nil {
			return d, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("drop slot %s: %w", slot, err))
		}
		d.Slot = true
	}
	var mark *string
	err = conn.QueryRow(ctx, "SELECT pg_catalog.obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1",
		publication).Scan(&mark)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return d, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("read publication %s: %w", publication, err))
	case mark == nil || *mark != ownMark:
		d.KeptPublication = true
	default:
		if _, err := conn.Exec(ctx, "DROP PUBLICATION "+pgx.Identifier{publication}.Sanitize()); err != nil {
			return d, errkind.Wrap(errkind.SourceUnreachable, fmt.Errorf("drop publication %s: %w", publication, err))
		}
		d.Publication = true
	}
	return d, nil
}
