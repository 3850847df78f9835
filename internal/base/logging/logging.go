// Package logging builds Sandstone's loggers on log/slog: JSON lines for
// machines (CloudWatch, Loki, jq), a readable text format for terminals, and
// a redacting handler under both so that no password reaches a log line.
//
// # Log fields
//
// Every line is one JSON object (format "json") with these fields; the text
// format shows the same keys. Fields other than time, level and msg appear
// only where they apply.
//
//	time        RFC 3339 timestamp with nanoseconds, in the local zone
//	level       DEBUG, INFO, WARN or ERROR
//	msg         what happened (e.g. "stage failed")
//	stage       ingest, transform, load or audit (freshness for behind_source)
//	run_id      the id of one stage run
//	batch       a batch id (ingest/transform manifests)
//	table       a source or warehouse table name
//	rows        rows written for the table (or in total)
//	bytes       bytes written for the table (or in total)
//	seconds     the stage run's duration in seconds (float)
//	error_kind  a stable errkind.Kind: source_unreachable, bad_rows_rejected, ...
//	error       the cause, with any password redacted
//
// Every failed stage run logs exactly one ERROR line through [Failure]; the
// CloudWatch metric filters match `{ $.level = "ERROR" && $.error_kind = * }`.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/lmittmann/tint"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// The log formats New accepts.
const (
	// FormatAuto is FormatText on a terminal and FormatJSON otherwise.
	FormatAuto = "auto"
	// FormatJSON writes one JSON object per line.
	FormatJSON = "json"
	// FormatText writes readable, coloured lines for people at a terminal.
	FormatText = "text"
)

// The stable field names of Sandstone's log lines (see the package doc).
const (
	KeyStage     = "stage"
	KeyRunID     = "run_id"
	KeyBatch     = "batch"
	KeyTable     = "table"
	KeyRows      = "rows"
	KeyBytes     = "bytes"
	KeySeconds   = "seconds"
	KeyErrorKind = "error_kind"
	KeyError     = "error"
)

// MsgFailure is the message of the one ERROR line a failed stage run logs.
const MsgFailure = "stage failed"

// ParseFormat checks a --log-format value and returns it in lower case.
func ParseFormat(s string) (string, error) {
	f := strings.ToLower(strings.TrimSpace(s))
	switch f {
	case FormatAuto, FormatJSON, FormatText:
		return f, nil
	}
	return "", fmt.Errorf("log format %q: want auto, json or text", s)
}

// ParseLevel parses a --log-level value: debug, info, warn or error (any
// case), or a slog offset such as "info+2".
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing to w in the given format (FormatAuto,
// FormatJSON or FormatText; anything else means JSON) at level and above.
// Every line goes through [NewRedactingHandler].
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	return slog.New(NewHandler(w, format, level))
}

// Text reports whether [New] writes text (for people) rather than JSON to
// w in the given format.
func Text(w io.Writer, format string) bool {
	return format == FormatText || (format == FormatAuto && IsTerminal(w))
}

// NewHandler is the handler of [New].
func NewHandler(w io.Writer, format string, level slog.Level) slog.Handler {
	term := IsTerminal(w)
	var h slog.Handler
	if Text(w, format) {
		h = tint.NewTextHandler(w, &tint.Options{
			Level:       level,
			TimeFormat:  time.DateTime,
			NoColor:     !term,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return plainAttr(a) },
		})
	} else {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	}
	return NewRedactingHandler(h)
}

// IsTerminal reports whether w is a character device such as a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Failure logs the one ERROR line of a failed stage run: msg MsgFailure with
// stage, run_id, error_kind (errkind.Of(err)) and error (redacted). A nil
// logger means slog.Default().
func Failure(logger *slog.Logger, stage, runID string, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	msg := "unknown error"
	if err != nil {
		msg = config.Redact(err.Error())
	}
	logger.LogAttrs(context.Background(), slog.LevelError, MsgFailure,
		slog.String(KeyStage, stage),
		slog.String(KeyRunID, runID),
		slog.String(KeyErrorKind, string(errkind.Of(err))),
		slog.String(KeyError, msg),
	)
}

// plainAttr writes a map as "key=value key=value" (keys sorted, a nested
// map's keys joined with a dot) and a list as "a,b,c", so that text lines
// never show Go's map[…] or […] syntax.
func plainAttr(a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	v := reflect.ValueOf(a.Value.Any())
	switch v.Kind() {
	case reflect.Map:
		var parts []string
		flatten("", v, &parts)
		sort.Strings(parts)
		return slog.String(a.Key, strings.Join(parts, " "))
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return a
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i))
		}
		return slog.String(a.Key, strings.Join(parts, ","))
	}
	return a
}

// flatten appends a map's entries as key=value, a nested map's as
// key.subkey=value.
func flatten(prefix string, m reflect.Value, parts *[]string) {
	for it := m.MapRange(); it.Next(); {
		key := fmt.Sprint(it.Key())
		if prefix != "" {
			key = prefix + "." + key
		}
		val := it.Value()
		if val.Kind() == reflect.Interface {
			val = val.Elem()
		}
		if val.Kind() == reflect.Map {
			flatten(key, val, parts)
			continue
		}
		*parts = append(*parts, fmt.Sprintf("%s=%v", key, val))
	}
}

// Level is the level of a run's result lines: Debug when quiet (a
// terminal, where the caller prints the result, or a run whose batches are
// many), Info otherwise.
func Level(quiet bool) slog.Level {
	if quiet {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
