package lake

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// NewRunID returns a new random id for one run of a stage, as manifests
// and log lines carry it.
func NewRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeState returns v as gzip-compressed JSON, the form of a stage's state
// object.
func EncodeState(v any) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a valid level: no error
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return buf.Bytes(), nil
}

// ReadState reads the state object key (gzip-compressed JSON) into v.
func (b *Bucket) ReadState(ctx context.Context, key string, v any) error {
	data, err := b.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("state %s: %w", key, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("state %s: %w", key, err)
	}
	if err := json.NewDecoder(zr).Decode(v); err != nil {
		return fmt.Errorf("state %s: %w", key, err)
	}
	return nil
}
