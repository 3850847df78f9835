package alert

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// mailer sends alerts by e-mail over SMTP. It uses the standard library's
// net/smtp, whose PlainAuth refuses to send the password over an
// unencrypted connection except to localhost.
type mailer struct {
	addr, host         string
	username, password string
	from               *mail.Address
	to                 []*mail.Address
	startTLS           string
	tls                *tls.Config
}

// newMailer builds the mailer of a validated Config.
func newMailer(c Config) *mailer {
	host, _, _ := net.SplitHostPort(c.SMTPAddr)
	from, _ := mail.ParseAddress(c.SMTPFrom)
	m := &mailer{addr: c.SMTPAddr, host: host, username: c.SMTPUsername, password: c.SMTPPassword,
		from: from, startTLS: c.SMTPStartTLS, tls: c.TLSConfig}
	for _, s := range c.EmailTo {
		to, _ := mail.ParseAddress(s)
		m.to = append(m.to, to)
	}
	return m
}

func (m *mailer) channel() string { return "email" }

// send delivers a to every recipient in one SMTP transaction; ctx bounds
// the whole conversation.
func (m *mailer) send(ctx context.Context, a Alert) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("smtp %s: greeting: %w", m.addr, err)
	}
	defer func() { _ = c.Close() }()
	if err := m.converse(c, a); err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	return nil
}

// converse runs the SMTP commands after the greeting.
func (m *mailer) converse(c *smtp.Client, a Alert) error {
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if m.startTLS != StartTLSNever {
		ok, _ := c.Extension("STARTTLS")
		switch {
		case ok:
			if err := c.StartTLS(m.tlsConfig()); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
		case m.startTLS == StartTLSAlways:
			return fmt.Errorf("server does not offer STARTTLS, which is required")
		}
	}
	if m.username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
			return fmt.Errorf("auth as %s: %w", m.username, err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("mail from %s: %w", m.from.Address, err)
	}
	for _, to := range m.to {
		if err := c.Rcpt(to.Address); err != nil {
			return fmt.Errorf("rcpt to %s: %w", to.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(m.message(a)); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return c.Quit()
}

func (m *mailer) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if m.tls != nil {
		cfg = m.tls.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = m.host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// message is the RFC 5322 text of the alert e-mail: a plain-text body in
// quoted-printable, headers free of injected lines (the subject is
// MIME-encoded whenever it holds anything but printable ASCII).
func (m *mailer) message(a Alert) []byte {
	to := make([]string, len(m.to))
	for i, t := range m.to {
		to[i] = t.String()
	}
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", m.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", "["+a.State+"] "+a.Summary()))
	header("Date", a.Time.Format(time.RFC1123Z))
	header("Message-ID", "<"+rand.Text()+"@sandstone>")
	header("Auto-Submitted", "auto-generated")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")

	qp := quotedprintable.NewWriter(&b)
	line := func(k, v string) { _, _ = fmt.Fprintf(qp, "%-14s %s\r\n", k+":", v) }
	line("Stage", a.Stage)
	line("State", a.State)
	line("Error kind", string(a.ErrorKind))
	line("Run id", a.RunID)
	line("Time", a.Time.UTC().Format(time.RFC3339))
	line("Failing since", a.FailingSince.UTC().Format(time.RFC3339))
	line("Failed runs", fmt.Sprint(a.Failures))
	line("Host", a.Host)
	_, _ = fmt.Fprintf(qp, "\r\n%s\r\n", a.Message)
	_ = qp.Close()
	return b.Bytes()
}
