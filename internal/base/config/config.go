// Package config holds Sandstone's settings: the source and warehouse
// URLs and the two buckets, read from SANDSTONE_* environment variables and
// overridden by flags.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is the pipeline's configuration.
type Config struct {
	SourceURL       string
	WarehouseURL    string
	IngestBucket    string
	ProcessedBucket string
	// WarehouseSchema is the warehouse's PostgreSQL schema.
	WarehouseSchema string
	// Lookback is how long after its last_updated a source row may still
	// commit and be caught by ingest.
	Lookback time.Duration
	// MaxBatchRows bounds the rows one ingest batch lands (so also the
	// rows one transform or load batch takes); 0 means no bound.
	MaxBatchRows int64
	// AuditRepair has an audit land what it finds missing, and tombstones
	// for what it finds deleted, as a repair batch (sandstone run's
	// --auto-repair, the audit function's setting).
	AuditRepair bool
	// Capture is how ingest reads the source: CapturePoll (by
	// last_updated) or CaptureWAL (logical replication).
	Capture string
	// Slot is the replication slot of wal capture; empty means
	// DefaultSlot(SourceURL), decided once the source URL is known.
	Slot string
	// Publication is the publication wal capture reads.
	Publication string
	// SlotLagAlertBytes is how much WAL wal capture's slot may hold back
	// on the source's disk before `sandstone run` alerts.
	SlotLagAlertBytes int64
	// Resnapshot has wal capture start again from a new slot and its
	// snapshot (sandstone ingest --resnapshot, after a gap); a flag only.
	Resnapshot bool
}

// The capture modes.
const (
	// CapturePoll reads the rows whose last_updated is new: a read-only
	// login suffices.
	CapturePoll = "poll"
	// CaptureWAL reads every committed change from the write-ahead log
	// through a logical replication slot.
	CaptureWAL = "wal"
)

// The environment variables Config reads.
const (
	EnvSource          = "SANDSTONE_SOURCE_URL"
	EnvWarehouse       = "SANDSTONE_WAREHOUSE_URL"
	EnvIngestBucket    = "SANDSTONE_INGEST_BUCKET"
	EnvProcessedBucket = "SANDSTONE_PROCESSED_BUCKET"
	EnvWarehouseSchema = "SANDSTONE_WAREHOUSE_SCHEMA"
	EnvLookback        = "SANDSTONE_LOOKBACK"
	EnvMaxBatchRows    = "SANDSTONE_MAX_BATCH_ROWS"
	EnvAuditRepair     = "SANDSTONE_AUDIT_REPAIR"
	EnvCapture         = "SANDSTONE_CAPTURE"
	EnvSlot            = "SANDSTONE_SLOT"
	EnvPublication     = "SANDSTONE_PUBLICATION"
	EnvSlotLagAlert    = "SANDSTONE_SLOT_LAG_ALERT_BYTES"
)

// EnvAlertState names the alert state file that `sandstone run` keeps and
// `sandstone status` shows (not a setting of Config: the CLI's alone).
const EnvAlertState = "SANDSTONE_ALERT_STATE"

// Defaults.
const (
	DefaultIngestBucket    = "./sandstone-data/ingested"
	DefaultProcessedBucket = "./sandstone-data/processed"
	DefaultSchema          = "public"
	DefaultLookback        = 10 * time.Minute
	// DefaultMaxBatchRows keeps a batch well inside a Lambda invocation:
	// on the benchmark's 2-core machine a million rows take each stage
	// a few seconds, against the functions' 300 and 600 s limits.
	DefaultMaxBatchRows = 1_000_000
	DefaultCapture      = CapturePoll
	DefaultPublication  = "sandstone"
	// DefaultSlotLagAlertBytes alerts well before a slot can fill a
	// source's disk, and far above what one run leaves behind.
	DefaultSlotLagAlertBytes = 1 << 30
)

// FromEnv reads the configuration from the environment, with defaults. The
// error names a variable that could not be parsed (its default is kept).
func FromEnv() (Config, error) {
	c := Config{
		SourceURL:         os.Getenv(EnvSource),
		WarehouseURL:      os.Getenv(EnvWarehouse),
		IngestBucket:      env(EnvIngestBucket, DefaultIngestBucket),
		ProcessedBucket:   env(EnvProcessedBucket, DefaultProcessedBucket),
		WarehouseSchema:   env(EnvWarehouseSchema, DefaultSchema),
		Lookback:          DefaultLookback,
		MaxBatchRows:      DefaultMaxBatchRows,
		Capture:           DefaultCapture,
		Slot:              os.Getenv(EnvSlot),
		Publication:       env(EnvPublication, DefaultPublication),
		SlotLagAlertBytes: DefaultSlotLagAlertBytes,
	}
	if v := os.Getenv(EnvLookback); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive duration such as 10m", EnvLookback, v)
		}
		c.Lookback = d
	}
	if v := os.Getenv(EnvMaxBatchRows); v != "" {
		n, err := ParseMaxBatchRows(v)
		if err != nil {
			return c, fmt.Errorf("%s=%q: %w", EnvMaxBatchRows, v, err)
		}
		c.MaxBatchRows = n
	}
	if v := os.Getenv(EnvAuditRepair); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s=%q: want true or false", EnvAuditRepair, v)
		}
		c.AuditRepair = b
	}
	if v := os.Getenv(EnvCapture); v != "" {
		if err := CheckCapture(v); err != nil {
			return c, fmt.Errorf("%s=%q: %w", EnvCapture, v, err)
		}
		c.Capture = v
	}
	if c.Slot != "" {
		if err := CheckSlot(c.Slot); err != nil {
			return c, fmt.Errorf("%s=%q: %w", EnvSlot, c.Slot, err)
		}
	}
	if err := CheckPublication(c.Publication); err != nil {
		return c, fmt.Errorf("%s=%q: %w", EnvPublication, c.Publication, err)
	}
	if v := os.Getenv(EnvSlotLagAlert); v != "" {
		n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive number of bytes such as 1073741824", EnvSlotLagAlert, v)
		}
		c.SlotLagAlertBytes = n
	}
	return c, nil
}

// ParseMaxBatchRows parses a bound on a batch's rows: a whole number of
// rows, 0 for no bound. Underscores may group the digits (1_000_000).
func ParseMaxBatchRows(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a number of rows such as 1000000, or 0 for no bound")
	}
	return n, nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var passwordInText = regexp.MustCompile(`(?i)(://[^:/@\s]*:)[^@\s]*@|(password=)\S+`)

// Redact returns s with any password in URLs or key=value connection
// strings replaced by "xxxxx", safe for logs and errors.
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			s = u.String()
		}
	}
	return passwordInText.ReplaceAllStringFunc(s, func(m string) string {
		sub := passwordInText.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + "xxxxx@"
		}
		return sub[2] + "xxxxx"
	})
}

// RedactError wraps err so that its text has any password masked, while
// errors.Is and errors.As still see err. Nil stays nil.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{err}
}

type redactedError struct{ err error }

func (r redactedError) Error() string { return Redact(r.err.Error()) }
func (r redactedError) Unwrap() error { return r.err }
