package config

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
)

// maxIdentifier is PostgreSQL's longest name, in bytes (NAMEDATALEN-1).
const maxIdentifier = 63

// slotPrefix begins every default slot name.
const slotPrefix = "sandstone_"

// CheckCapture refuses a capture mode other than CapturePoll and CaptureWAL.
func CheckCapture(v string) error {
	if v != CapturePoll && v != CaptureWAL {
		return errors.New("want poll (read the rows whose last_updated is new; the default) or wal (read every change from the write-ahead log through a replication slot)")
	}
	return nil
}

// CheckSlot refuses a name PostgreSQL does not take for a replication
// slot: it wants 1 to 63 lowercase letters, digits and underscores.
func CheckSlot(name string) error {
	if name == "" || len(name) > maxIdentifier || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return errors.New("a replication slot name is 1 to 63 lowercase letters, digits and underscores")
	}
	return nil
}

// CheckPublication refuses a publication name PostgreSQL cannot hold: an
// empty one, or one longer than 63 bytes (it would be truncated).
func CheckPublication(name string) error {
	if name == "" || len(name) > maxIdentifier {
		return errors.New("a publication name is 1 to 63 bytes")
	}
	return nil
}

// DefaultSlot is the replication slot of a pipeline reading the source at
// sourceURL: "sandstone_" and the database's name, lowercase, every other
// character than a-z, 0-9 and _ made _, at most 63 bytes in all. Two
// pipelines reading two databases of one server so hold two slots (a slot
// belongs to one database). A URL that names no database takes the
// user's name, as PostgreSQL does; one that cannot be parsed gives
// "sandstone" (connecting to it fails anyway).
func DefaultSlot(sourceURL string) string {
	cfg, err := pgx.ParseConfig(sourceURL)
	if err != nil {
		return "sandstone"
	}
	db := cfg.Database
	if db == "" {
		db = cfg.User
	}
	name := []byte(slotPrefix)
	for _, r := range strings.ToLower(db) {
		if len(name) == maxIdentifier {
			break
		}
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			r = '_'
		}
		name = append(name, byte(r))
	}
	return string(name)
}
