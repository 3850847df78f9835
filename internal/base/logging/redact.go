package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sandstone-data/sandstone/internal/base/config"
)

// Redacted replaces the value of an attribute whose key names a secret.
const Redacted = "xxxxx"

// secretKeys are the key fragments that mark an attribute's value as secret.
var secretKeys = []string{"password", "passwd", "secret", "token", "credential", "authorization"}

// NewRedactingHandler wraps h so that no secret reaches it: the message and
// every string, error and other value (in groups too) that holds a URL with
// a password or a password=... pair is rewritten by config.Redact, and the
// value of every attribute whose key looks secret (password, secret, token,
// ...) becomes Redacted.
func NewRedactingHandler(h slog.Handler) slog.Handler {
	if r, ok := h.(*redactingHandler); ok {
		return r
	}
	return &redactingHandler{next: h}
}

type redactingHandler struct{ next slog.Handler }

func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, config.Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &redactingHandler{next: h.next.WithAttrs(redactAttrs(attrs))}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{next: h.next.WithGroup(name)}
}

func redactAttrs(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redactAttr(a)
	}
	return out
}

// secretKey reports whether an attribute key names a secret.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(redactAttrs(v.Group())...)}
	}
	if secretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	return slog.Attr{Key: a.Key, Value: redactValue(v)}
}

// redactedError stands for an error whose text was redacted, so handlers
// still format it as an error.
type redactedError string

func (e redactedError) Error() string { return string(e) }

func redactValue(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(config.Redact(v.String()))
	case slog.KindAny:
	default:
		return v // numbers, booleans, times and durations hold no secret
	}
	switch x := v.Any().(type) {
	case error:
		return slog.AnyValue(redactedError(config.Redact(x.Error())))
	case fmt.Stringer:
		return slog.StringValue(config.Redact(x.String()))
	case []byte:
		return slog.StringValue(config.Redact(string(x)))
	default:
		// Structs, maps and slices: keep the value unless its printed form
		// holds a secret, then log the redacted printed form instead.
		s := fmt.Sprintf("%+v", x)
		if r := config.Redact(s); r != s {
			return slog.StringValue(r)
		}
		return v
	}
}
