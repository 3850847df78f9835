// Package errkind gives every failure a stable kind, for the one ERROR log
// line each failure writes, the CloudWatch metric filters and the alerts.
package errkind

import "errors"

// Kind is a stable, machine-readable name for a class of failure.
type Kind string

// The kinds of failure.
const (
	SourceUnreachable Kind = "source_unreachable"
	// SourceAuthFailed: the source refused the login (a wrong user or
	// password, or no pg_hba.conf entry for it). Permanent.
	SourceAuthFailed Kind = "source_auth_failed"
	// SourceDatabaseMissing: the source server has no database of the
	// URL's name. Permanent.
	SourceDatabaseMissing Kind = "source_database_missing"
	SourceSchemaMismatch  Kind = "source_schema_mismatch"
	BucketReadFailed      Kind = "bucket_read_failed"
	BucketWriteFailed     Kind = "bucket_write_failed"
	BadRowsRejected       Kind = "bad_rows_rejected"
	WarehouseUnreachable  Kind = "warehouse_unreachable"
	// WarehouseAuthFailed: the warehouse refused the login. Permanent.
	WarehouseAuthFailed Kind = "warehouse_auth_failed"
	// WarehouseDatabaseMissing: the warehouse server has no database of
	// the URL's name. Permanent.
	WarehouseDatabaseMissing Kind = "warehouse_database_missing"
	WarehouseSchemaMismatch  Kind = "warehouse_schema_mismatch"
	LoadFailed               Kind = "load_failed"
	// ObjectMismatch: an object differs from its manifest entry (size,
	// checksum or row count), so its batch is refused.
	ObjectMismatch Kind = "object_mismatch"
	// LedgerMismatch: a bucket does not hold the batches a later stage (the
	// warehouse's ledger, or the processed bucket) says it took from it.
	LedgerMismatch Kind = "ledger_mismatch"
	ConfigInvalid  Kind = "config_invalid"
	// CaptureNotReady: the source cannot be read by log-based capture
	// (--capture wal) as it is: wal_level, the REPLICATION attribute, the
	// publication, the slot or a table's replica identity. Permanent: a
	// person (often a DBA) must change the source first.
	CaptureNotReady Kind = "capture_not_ready"
	// CaptureGap: the capture's replication slot is gone, invalidated, on
	// another server, or confirmed past what the lake holds, so changes
	// may be missing. Permanent: a resnapshot, or an audit and repair,
	// must close the gap.
	CaptureGap Kind = "capture_gap"
	// CaptureSlotBusy: another consumer holds the capture's replication
	// slot (another pipeline streaming from it, a run still under way, or
	// a killed one whose WAL sender keeps it until wal_sender_timeout
	// passes), or landed the batch this run was to land. Transient: the
	// pipeline retries it, and never lands a batch twice.
	CaptureSlotBusy Kind = "capture_slot_busy"
	Internal        Kind = "internal"
)

// DriftFound is the kind of an audit's finding (rows that never reached the
// lake, rows gone from the source, a warehouse out of step): not a failure
// of a stage, so not in All (no ERROR line, no failure counter, no error
// alarm), but the kind its alert carries.
const DriftFound Kind = "drift_found"

// BehindSource is the kind of the alert `sandstone run` sends when the
// warehouse lags the source by more than its limit: a finding about the
// whole pipeline, not a failure of one stage, so not in All either.
const BehindSource Kind = "behind_source"

// SlotLag is the kind of the alert `sandstone run` sends when log-based
// capture's replication slot holds back more WAL on the source's disk
// than its limit: a finding, as BehindSource is, not in All.
const SlotLag Kind = "slot_lag"

// All lists every kind of failure: the findings DriftFound, BehindSource
// and SlotLag are not failures and are not in it.
var All = []Kind{SourceUnreachable, SourceAuthFailed, SourceDatabaseMissing, SourceSchemaMismatch,
	BucketReadFailed, BucketWriteFailed, BadRowsRejected,
	WarehouseUnreachable, WarehouseAuthFailed, WarehouseDatabaseMissing, WarehouseSchemaMismatch,
	LoadFailed, ObjectMismatch, LedgerMismatch, ConfigInvalid, CaptureNotReady, CaptureGap, CaptureSlotBusy, Internal}

// Permanent reports whether err is of a kind that trying again cannot
// mend (a login refused, a database missing, a source not ready for
// capture, a gap in the capture): the pipeline does not retry it, and a
// person must change the setting.
func Permanent(err error) bool {
	switch Of(err) {
	case SourceAuthFailed, SourceDatabaseMissing, WarehouseAuthFailed, WarehouseDatabaseMissing,
		CaptureNotReady, CaptureGap:
		return true
	}
	return false
}

type kindError struct {
	kind Kind
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

// Wrap marks err as a failure of kind k; nil stays nil.
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{k, err}
}

// Default marks err as a failure of kind k unless it carries a kind
// already, which it keeps: a verdict found deep down (an object that does
// not match its manifest) is not turned into a generic failure on the way up.
func Default(k Kind, err error) error {
	var ke *kindError
	if err == nil || errors.As(err, &ke) {
		return err
	}
	return &kindError{k, err}
}

// Of returns the kind err was marked with (the outermost), or Internal.
func Of(err error) Kind {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return Internal
}
