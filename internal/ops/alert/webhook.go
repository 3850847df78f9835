package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// webhook posts alerts as JSON to a URL. The URL may hold a token, so
// errors name only its scheme and host.
type webhook struct {
	url     string
	display string
	client  *http.Client
}

func newWebhook(u string) *webhook {
	return &webhook{url: u, display: webhookDisplay(u), client: &http.Client{
		// A redirect is an error to fix in the configuration, not to follow
		// (a POST would become a GET).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (w *webhook) channel() string { return "webhook" }

// send posts a as JSON; any status but 2xx is an error.
func (w *webhook) send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.display, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.display, stripURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sandstone-alert")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.display, stripURL(err))
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: status %s", w.display, resp.Status)
	}
	return nil
}

// stripURL drops the URL (which may hold a token) from an HTTP client error.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
