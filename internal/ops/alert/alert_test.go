package alert

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// Secrets that must never reach a log line.
const (
	smtpPassword = "smtp-s3cret"
	dbPassword   = "db-s3cret"
	hookToken    = "T0KEN-in-path"
)

var t0 = time.Date(2024, 11, 15, 9, 0, 0, 0, time.UTC)

func warehouseDown() error {
	return fmt.Errorf("load batch b7: %w", errkind.Wrap(errkind.WarehouseUnreachable,
		errors.New("dial postgres://etl:"+dbPassword+"@wh:5432/dw: connection refused")))
}

// newNotifier builds a Notifier logging JSON to logs (through a plain
// handler: the package itself must keep secrets out) on a settable clock.
func newNotifier(t *testing.T, cfg Config, logs *logBuffer) (*Notifier, *clock) {
	t.Helper()
	n, err := New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	n.now = c.now
	return n, c
}

func assertNoSecrets(t *testing.T, logs *logBuffer) {
	t.Helper()
	out := logs.String()
	for _, s := range []string{smtpPassword, dbPassword, hookToken} {
		if strings.Contains(out, s) {
			t.Errorf("secret %q logged:\n%s", s, out)
		}
	}
}

func TestLifecycleOverSMTPAndWebhook(t *testing.T) {
	cert, pool := selfSigned(t)
	box := &mailbox{user: "alerts", pass: smtpPassword}
	addr := smtpServer(t, box, cert)
	hooks := &hookReceiver{}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	n, c := newNotifier(t, Config{
		SMTPAddr: addr, SMTPUsername: "alerts", SMTPPassword: smtpPassword,
		SMTPFrom: "Sandstone <sandstone@example.com>", EmailTo: []string{"ops@example.com", "data@example.com"},
		SMTPStartTLS: StartTLSAlways, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Webhook:  hook.URL + "/hooks/" + hookToken,
		Reminder: time.Hour, Timeout: 5 * time.Second,
	}, &logs)

	steps := []struct {
		name    string
		advance time.Duration
		err     error
		want    string // the alert state sent, "" for none
	}{
		{"healthy run", 0, nil, ""},
		{"streak starts", time.Minute, warehouseDown(), StateFailing},
		{"fails again soon", 10 * time.Minute, warehouseDown(), ""},
		{"just inside the interval", 49*time.Minute + 59*time.Second, warehouseDown(), ""},
		{"an hour after the alert", time.Second, warehouseDown(), StateReminder},
		{"after the reminder", 30 * time.Minute, warehouseDown(), ""},
		{"recovers", time.Minute, nil, StateRecovered},
		{"stays healthy", time.Minute, nil, ""},
		{"a new streak", time.Hour, warehouseDown(), StateFailing},
	}
	var want []string
	for i, s := range steps {
		c.add(s.advance)
		n.Observe(context.Background(), "load", fmt.Sprintf("run-%d", i), s.err)
		if s.want != "" {
			want = append(want, s.want)
		}
		mails, posts := box.messages(), hooks.posted()
		if len(mails) != len(want) || len(posts) != len(want) {
			t.Fatalf("after %q: %d e-mails and %d webhook posts, want %d of each", s.name, len(mails), len(posts), len(want))
		}
		if s.want != "" {
			if got := mails[len(want)-1].Subject; !strings.HasPrefix(got, "["+s.want+"] ") {
				t.Errorf("after %q: e-mail subject %q", s.name, got)
			}
			if got := posts[len(want)-1]["state"]; got != s.want {
				t.Errorf("after %q: webhook state %v", s.name, got)
			}
		}
	}

	// The first alert, by e-mail.
	m := box.messages()[0]
	if !m.TLS || m.User != "alerts" || m.From != "sandstone@example.com" ||
		strings.Join(m.To, ",") != "ops@example.com,data@example.com" {
		t.Errorf("envelope: TLS %v, user %q, from %q, to %v", m.TLS, m.User, m.From, m.To)
	}
	if m.Subject != "[failing] sandstone load failing: warehouse_unreachable" {
		t.Errorf("subject %q", m.Subject)
	}
	if m.Header.Get("To") != "<ops@example.com>, <data@example.com>" || m.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("headers %v", m.Header)
	}
	for _, part := range []string{"Stage:         load", "Error kind:    warehouse_unreachable", "Run id:        run-1",
		"Failing since: 2024-11-15T09:01:00Z", "dial postgres://etl:xxxxx@wh:5432/dw: connection refused"} {
		if !strings.Contains(m.Body, part) {
			t.Errorf("e-mail body lacks %q:\n%s", part, m.Body)
		}
	}

	// The webhook posts.
	host, _ := os.Hostname()
	posts := hooks.posted()
	wantPosts := []map[string]any{
		{"state": "failing", "stage": "load", "error_kind": "warehouse_unreachable", "run_id": "run-1",
			"time": "2024-11-15T09:01:00Z", "failing_since": "2024-11-15T09:01:00Z", "failures": 1.0, "host": host,
			"message": "load batch b7: dial postgres://etl:xxxxx@wh:5432/dw: connection refused",
			"text":    "sandstone load failing: warehouse_unreachable"},
		{"state": "reminder", "run_id": "run-4", "time": "2024-11-15T10:01:00Z", "failures": 4.0,
			"text": "sandstone load still failing: warehouse_unreachable (4 failed runs since 2024-11-15T09:01:00Z)"},
		{"state": "recovered", "run_id": "run-6", "error_kind": "warehouse_unreachable", "failures": 5.0,
			"text": "sandstone load recovered after 5 failed runs"},
		{"state": "failing", "run_id": "run-8", "failures": 1.0, "failing_since": "2024-11-15T11:33:00Z"},
	}
	for i, w := range wantPosts {
		for k, v := range w {
			if posts[i][k] != v {
				t.Errorf("post %d: %s = %v, want %v", i, k, posts[i][k], v)
			}
		}
	}
	if ct := hooks.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("webhook Content-Type %q", ct)
	}

	st := n.State().Stages["load"]
	if !st.Failing || !st.FailingSince.Equal(t0.Add(153*time.Minute)) || st.LastAlertState != StateFailing ||
		st.Kind != errkind.WarehouseUnreachable || st.DeliveryError != "" || st.Failures != 1 {
		t.Errorf("state %+v", st)
	}
	sent := 0
	for _, l := range logs.lines(t) {
		if l["msg"] == "alert sent" {
			sent++
		}
	}
	if sent != 8 || len(logs.warnings(t)) != 0 {
		t.Errorf("%d alert sent lines (want 8), warnings %v", sent, logs.warnings(t))
	}
	assertNoSecrets(t, &logs)
}

func TestStagesAreIndependent(t *testing.T) {
	hooks := &hookReceiver{}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	n, c := newNotifier(t, Config{Webhook: hook.URL}, &logs)
	ctx := context.Background()
	n.Observe(ctx, "ingest", "r1", errkind.Wrap(errkind.SourceUnreachable, errors.New("refused")))
	n.Observe(ctx, "load", "r1", warehouseDown())
	c.add(time.Minute)
	n.Observe(ctx, "load", "r2", nil)
	n.Observe(ctx, "ingest", "r2", errkind.Wrap(errkind.SourceUnreachable, errors.New("refused")))

	var got []string
	for _, p := range hooks.posted() {
		got = append(got, fmt.Sprint(p["stage"], " ", p["state"], " ", p["error_kind"]))
	}
	want := "ingest failing source_unreachable|load failing warehouse_unreachable|load recovered warehouse_unreachable"
	if strings.Join(got, "|") != want {
		t.Errorf("posts %q, want %q", strings.Join(got, "|"), want)
	}
	s := n.State().Stages
	if !s["ingest"].Failing || s["ingest"].Failures != 2 || s["load"].Failing || !s["load"].RecoveredAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("state %+v", s)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	hooks := &hookReceiver{}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	first, c := newNotifier(t, Config{Webhook: hook.URL, Reminder: 30 * time.Minute}, &logs)
	first.Observe(context.Background(), "transform", "r1",
		errkind.Wrap(errkind.BadRowsRejected, errors.New("3 rows with NULL staff_id")))

	saved, err := json.Marshal(first.State())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"failing":true`, `"failing_since":"2024-11-15T09:00:00Z"`,
		`"last_alert":"2024-11-15T09:00:00Z"`, `"error_kind":"bad_rows_rejected"`, `"last_alert_state":"failing"`} {
		if !strings.Contains(string(saved), key) {
			t.Errorf("saved state %s lacks %s", saved, key)
		}
	}
	var restored State
	if err := json.Unmarshal(saved, &restored); err != nil {
		t.Fatal(err)
	}

	second, _ := newNotifier(t, Config{Webhook: hook.URL, Reminder: 30 * time.Minute}, &logs)
	second.now = c.now
	second.Restore(restored)
	c.add(10 * time.Minute)
	second.Observe(context.Background(), "transform", "r2", errkind.Wrap(errkind.BadRowsRejected, errors.New("3 rows")))
	if n := len(hooks.posted()); n != 1 {
		t.Fatalf("a restart repeated the start of the streak: %d posts", n)
	}
	c.add(20 * time.Minute)
	second.Observe(context.Background(), "transform", "r3", errkind.Wrap(errkind.BadRowsRejected, errors.New("3 rows")))
	c.add(time.Minute)
	second.Observe(context.Background(), "transform", "r4", nil)
	posts := hooks.posted()
	if len(posts) != 3 || posts[1]["state"] != StateReminder || posts[1]["failures"] != 3.0 || posts[2]["state"] != StateRecovered {
		t.Errorf("after restart: %v", posts)
	}
}

func TestDeadSMTPServerDoesNotStopThePipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	hooks := &hookReceiver{}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	n, _ := newNotifier(t, Config{SMTPAddr: dead, SMTPUsername: "alerts", SMTPPassword: smtpPassword,
		SMTPFrom: "sandstone@example.com", EmailTo: []string{"ops@example.com"}, Webhook: hook.URL}, &logs)

	n.Observe(context.Background(), "load", "r1", warehouseDown())

	if len(hooks.posted()) != 1 {
		t.Errorf("the webhook did not get the alert the mail server missed")
	}
	w := logs.warnings(t)
	if len(w) != 1 || w[0]["level"] != "WARN" || w[0]["channel"] != "email" || w[0]["stage"] != "load" ||
		!strings.Contains(fmt.Sprint(w[0]["error"]), "connection refused") {
		t.Errorf("delivery failure log: %v", w)
	}
	if st := n.State().Stages["load"]; !strings.HasPrefix(st.DeliveryError, "email: smtp "+dead) {
		t.Errorf("state delivery error %q", st.DeliveryError)
	}
	assertNoSecrets(t, &logs)
}

func TestHangingSMTPServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // accept, then never say a word
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		close(held)
		for c := range held {
			_ = c.Close()
		}
	})
	var logs logBuffer
	n, _ := newNotifier(t, Config{SMTPAddr: ln.Addr().String(), SMTPFrom: "sandstone@example.com",
		EmailTo: []string{"ops@example.com"}, Timeout: 200 * time.Millisecond}, &logs)

	n.Observe(context.Background(), "ingest", "r1", errkind.Wrap(errkind.SourceUnreachable, errors.New("x")))

	w := logs.warnings(t)
	if len(w) != 1 || !strings.Contains(fmt.Sprint(w[0]["error"]), "no answer within 200ms: smtp ") {
		t.Errorf("timeout log: %v", w)
	}
}

func TestSMTPSecurity(t *testing.T) {
	cert, pool := selfSigned(t)
	trust := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	cases := []struct {
		name      string
		tls       bool   // server offers STARTTLS (and AUTH only after it)
		user      string // server requires AUTH PLAIN as this user
		mode      string
		clientTLS *tls.Config
		password  string
		delivered bool
		overTLS   bool
		logged    string // in the delivery failure's error
		to        string // recipient, default ops@example.com
	}{
		{name: "plain server, auto", mode: StartTLSAuto, delivered: true},
		{name: "TLS server, auto", tls: true, mode: StartTLSAuto, clientTLS: trust, delivered: true, overTLS: true},
		{name: "TLS server, never", tls: true, mode: StartTLSNever, delivered: true},
		{name: "plain server, always", mode: StartTLSAlways, logged: "does not offer STARTTLS"},
		{name: "untrusted certificate", tls: true, mode: StartTLSAuto, logged: "certificate"},
		{name: "auth over TLS", tls: true, user: "alerts", password: smtpPassword, mode: StartTLSAlways,
			clientTLS: trust, delivered: true, overTLS: true},
		{name: "auth on loopback without TLS", user: "alerts", password: smtpPassword, mode: StartTLSAuto, delivered: true},
		{name: "no AUTH before TLS", tls: true, user: "alerts", password: smtpPassword, mode: StartTLSNever,
			logged: "auth as alerts"},
		{name: "recipient refused", user: "", mode: StartTLSAuto, to: "nobody@example.com", logged: "rcpt to nobody@example.com"},
		{name: "wrong password", tls: true, user: "alerts", password: smtpPassword + "-wrong", mode: StartTLSAuto,
			clientTLS: trust, logged: "535"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			box := &mailbox{user: c.user, pass: smtpPassword}
			var srvCert *tls.Certificate
			if c.tls {
				srvCert = cert
			}
			addr := smtpServer(t, box, srvCert)
			to := "ops@example.com"
			if c.to != "" {
				to = c.to
			}
			cfg := Config{SMTPAddr: addr, SMTPFrom: "sandstone@example.com", EmailTo: []string{to},
				SMTPStartTLS: c.mode, TLSConfig: c.clientTLS}
			if c.user != "" {
				cfg.SMTPUsername, cfg.SMTPPassword = c.user, c.password
			}
			var logs logBuffer
			n, _ := newNotifier(t, cfg, &logs)
			n.Observe(context.Background(), "load", "r1", warehouseDown())

			msgs := box.messages()
			if got := len(msgs) == 1; got != c.delivered {
				t.Fatalf("delivered %v, want %v; log:\n%s", got, c.delivered, logs.String())
			}
			if c.delivered {
				if msgs[0].TLS != c.overTLS || msgs[0].User != c.user {
					t.Errorf("TLS %v user %q", msgs[0].TLS, msgs[0].User)
				}
			} else if w := logs.warnings(t); len(w) != 1 || !strings.Contains(fmt.Sprint(w[0]["error"]), c.logged) {
				t.Errorf("want one warning with %q, got %v", c.logged, w)
			}
			out := logs.String()
			if strings.Contains(out, smtpPassword) || strings.Contains(out, dbPassword) {
				t.Errorf("a password was logged:\n%s", out)
			}
		})
	}
}

func TestNoHeaderInjection(t *testing.T) {
	box := &mailbox{}
	addr := smtpServer(t, box, nil)
	var logs logBuffer
	n, _ := newNotifier(t, Config{SMTPAddr: addr, SMTPFrom: "sandstone@example.com", EmailTo: []string{"ops@example.com"}}, &logs)
	n.Observe(context.Background(), "load\r\nBcc: evil@example.com", "r1", errors.New("x"))
	msgs := box.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages; log:\n%s", len(msgs), logs.String())
	}
	if msgs[0].Header.Get("Bcc") != "" || len(msgs[0].To) != 1 {
		t.Errorf("header injected: %v, to %v", msgs[0].Header, msgs[0].To)
	}
	if !strings.Contains(msgs[0].Subject, "Bcc: evil@example.com") {
		t.Errorf("stage name lost from the subject %q", msgs[0].Subject)
	}
}

func TestWebhookFailures(t *testing.T) {
	hooks := &hookReceiver{status: http.StatusInternalServerError}
	failing := webhookServer(t, hooks)
	redirect := webhookServer(t, &hookReceiver{status: http.StatusFound, location: "http://127.0.0.1:1/elsewhere"})
	gone := webhookServer(t, &hookReceiver{})
	gone.Close()
	cases := []struct {
		name, url, logged string
	}{
		{"status 500", failing.URL, "status 500"},
		{"redirect not followed", redirect.URL, "status 302"},
		{"unreachable", gone.URL, "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs logBuffer
			n, _ := newNotifier(t, Config{Webhook: c.url + "/hooks/" + hookToken + "?key=" + hookToken}, &logs)
			n.Observe(context.Background(), "ingest", "r1", warehouseDown())
			w := logs.warnings(t)
			if len(w) != 1 || w[0]["channel"] != "webhook" || !strings.Contains(fmt.Sprint(w[0]["error"]), c.logged) {
				t.Errorf("want one webhook warning with %q, got %v", c.logged, w)
			}
			if !strings.Contains(n.State().Stages["ingest"].DeliveryError, c.logged) {
				t.Errorf("state %+v", n.State().Stages["ingest"])
			}
			assertNoSecrets(t, &logs)
		})
	}
	if len(hooks.posted()) != 1 {
		t.Errorf("the failing receiver got %d posts", len(hooks.posted()))
	}
}

func TestDeliveryErrorClearedOnSuccess(t *testing.T) {
	hooks := &hookReceiver{status: http.StatusServiceUnavailable}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	n, _ := newNotifier(t, Config{Webhook: hook.URL}, &logs)
	n.Observe(context.Background(), "load", "r1", warehouseDown())
	if n.State().Stages["load"].DeliveryError == "" {
		t.Fatal("no delivery error kept")
	}
	hooks.mu.Lock()
	hooks.status = 0
	hooks.mu.Unlock()
	n.Observe(context.Background(), "load", "r2", nil)
	if st := n.State().Stages["load"]; st.DeliveryError != "" || st.LastAlertState != StateRecovered {
		t.Errorf("state %+v", st)
	}
}

func TestNoChannelStillTracksState(t *testing.T) {
	var logs logBuffer
	n, _ := newNotifier(t, Config{}, &logs)
	n.Observe(context.Background(), "load", "r1", warehouseDown())
	st := n.State().Stages["load"]
	if !st.Failing || st.Kind != errkind.WarehouseUnreachable || st.Error != "load batch b7: dial postgres://etl:xxxxx@wh:5432/dw: connection refused" {
		t.Errorf("state %+v", st)
	}
	if !strings.Contains(logs.String(), "no channel configured") {
		t.Errorf("log: %s", logs.String())
	}
	assertNoSecrets(t, &logs)
}

func TestNewDefaults(t *testing.T) {
	n, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.cfg.Reminder != DefaultReminder || n.cfg.Timeout != DefaultTimeout || n.cfg.SMTPStartTLS != StartTLSAuto || n.log == nil {
		t.Errorf("defaults not applied: %+v", n.cfg)
	}
	if _, err := New(Config{SMTPStartTLS: "sometimes"}, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}

// TestWarningRemindsAndLeavesTheStreak: a warning (rows rejected) is sent
// at once as state "warning"; those within the reminder interval after it
// are held back, and the next one sent counts them (a source with a bad
// row in every batch does not alert every cycle); warnings neither start
// a failure streak nor end one.
func TestWarningRemindsAndLeavesTheStreak(t *testing.T) {
	hooks := &hookReceiver{}
	hook := webhookServer(t, hooks)
	var logs logBuffer
	n, c := newNotifier(t, Config{Webhook: hook.URL, Reminder: time.Hour}, &logs)
	ctx := context.Background()
	n.Warn(ctx, "transform", "r1", errkind.BadRowsRejected, "2 rows rejected (sales_order bad_value 2)")
	for i := 0; i < 5; i++ { // every 10 minutes, inside the hour
		c.add(10 * time.Minute)
		n.Warn(ctx, "transform", "r1b", errkind.BadRowsRejected, "1 rows rejected (sales_order bad_value 1)")
	}
	if posts := hooks.posted(); len(posts) != 1 {
		t.Fatalf("%d posts within the reminder interval, want 1: %v", len(posts), posts)
	}
	c.add(10 * time.Minute)
	n.Warn(ctx, "transform", "r2", errkind.BadRowsRejected, "1 rows rejected (payment bad_value 1)")
	n.Observe(ctx, "transform", "r3", nil)
	posts := hooks.posted()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want the 2 warnings and no recovery: %v", len(posts), posts)
	}
	if msg := posts[1]["message"].(string); !strings.Contains(msg, "1 rows rejected (payment bad_value 1) (and 5 more such warnings since 2024-11-15T09:00:00Z, held back") {
		t.Errorf("the reminder does not count the warnings held back: %q", msg)
	}
	for i, p := range posts {
		if p["state"] != StateWarning || p["error_kind"] != "bad_rows_rejected" || !strings.Contains(p["text"].(string), "sandstone transform warning: bad_rows_rejected: ") {
			t.Errorf("post %d: %v", i, p)
		}
	}
	if st := n.State().Stages["transform"]; st.Failing || st.Failures != 0 {
		t.Errorf("a warning changed the stage's state: %+v", st)
	}
}

// TestSaveAndLoad: the state file run writes is what status and the next
// run read; a missing file is no state, a damaged one an error.
func TestSaveAndLoad(t *testing.T) {
	var logs logBuffer
	n, _ := newNotifier(t, Config{}, &logs)
	n.Observe(context.Background(), "load", "r1", warehouseDown())
	path := filepath.Join(t.TempDir(), "state", "alerts.json")
	if err := n.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := n.Save(""); err != nil {
		t.Errorf("an empty path: %v", err)
	}
	s, err := ReadState(path)
	if err != nil || s == nil || !s.Stages["load"].Failing {
		t.Fatalf("read back: %+v, %v", s, err)
	}
	again, _ := newNotifier(t, Config{}, &logs)
	if err := again.Load(path); err != nil || !again.State().Stages["load"].Failing {
		t.Errorf("load: %v, %+v", err, again.State())
	}
	if s, err := ReadState(filepath.Join(t.TempDir(), "none.json")); s != nil || err != nil {
		t.Errorf("a missing file: %+v, %v", s, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := again.Load(path); err == nil {
		t.Error("a damaged state file was read without an error")
	}
}
