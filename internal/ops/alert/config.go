package alert

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The environment variables ConfigFromEnv reads.
const (
	EnvSMTPAddr     = "SANDSTONE_SMTP_ADDR"
	EnvSMTPUsername = "SANDSTONE_SMTP_USERNAME"
	EnvSMTPPassword = "SANDSTONE_SMTP_PASSWORD" // #nosec G101 -- a variable name, not a credential
	EnvSMTPFrom     = "SANDSTONE_SMTP_FROM"
	EnvEmail        = "SANDSTONE_ALERT_EMAIL"
	EnvSMTPStartTLS = "SANDSTONE_SMTP_STARTTLS"
	EnvWebhook      = "SANDSTONE_ALERT_WEBHOOK"
	EnvReminder     = "SANDSTONE_ALERT_REMINDER"
	EnvTimeout      = "SANDSTONE_ALERT_TIMEOUT"
)

// The STARTTLS modes.
const (
	// StartTLSAuto upgrades the connection when the server offers STARTTLS.
	StartTLSAuto = "auto"
	// StartTLSAlways refuses to send unless the connection is upgraded.
	StartTLSAlways = "always"
	// StartTLSNever never upgrades.
	StartTLSNever = "never"
)

// Defaults.
const (
	DefaultReminder = time.Hour
	DefaultTimeout  = 10 * time.Second
)

// Config says where alerts go. The zero value sends none; New applies the
// defaults to zero durations and an empty STARTTLS mode.
type Config struct {
	// SMTPAddr is the mail server, host:port (port 587 or 25; STARTTLS).
	SMTPAddr string
	// SMTPUsername and SMTPPassword authenticate with AUTH PLAIN when
	// SMTPUsername is set. The password is never logged.
	SMTPUsername string
	SMTPPassword string `json:"-"`
	// SMTPFrom is the sender address.
	SMTPFrom string
	// EmailTo are the recipients of alert e-mails.
	EmailTo []string
	// SMTPStartTLS is StartTLSAuto, StartTLSAlways or StartTLSNever.
	SMTPStartTLS string
	// TLSConfig verifies the mail server for STARTTLS (nil: the system's
	// roots and the host of SMTPAddr).
	TLSConfig *tls.Config `json:"-"`
	// Webhook is a URL that gets each alert as a JSON POST. It may hold a
	// token, so only its scheme and host are ever logged.
	Webhook string `json:"-"`
	// Reminder is how often a reminder goes out while a stage keeps failing.
	Reminder time.Duration
	// Timeout bounds the delivery of one alert on all channels.
	Timeout time.Duration
}

// ConfigFromEnv reads the SANDSTONE_* alert variables, with defaults. The
// error names a variable that could not be parsed (its default is kept).
func ConfigFromEnv() (Config, error) {
	c := Config{
		SMTPAddr:     os.Getenv(EnvSMTPAddr),
		SMTPUsername: os.Getenv(EnvSMTPUsername),
		SMTPPassword: os.Getenv(EnvSMTPPassword),
		SMTPFrom:     os.Getenv(EnvSMTPFrom),
		EmailTo:      splitList(os.Getenv(EnvEmail)),
		SMTPStartTLS: StartTLSAuto,
		Webhook:      os.Getenv(EnvWebhook),
		Reminder:     DefaultReminder,
		Timeout:      DefaultTimeout,
	}
	if v := os.Getenv(EnvSMTPStartTLS); v != "" {
		c.SMTPStartTLS = strings.ToLower(strings.TrimSpace(v))
	}
	var errs []error
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{{EnvReminder, &c.Reminder}, {EnvTimeout, &c.Timeout}} {
		v := os.Getenv(d.env)
		if v == "" {
			continue
		}
		p, err := time.ParseDuration(v)
		if err != nil || p <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 30m", d.env, v))
			continue
		}
		*d.to = p
	}
	return c, errors.Join(errs...)
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// BindFlags defines the alert flags on fs with c's values as defaults
// (call ConfigFromEnv first so that flags override the environment). The
// SMTP password has no flag: a flag would show it in the process list, so
// it comes from $SANDSTONE_SMTP_PASSWORD only.
func BindFlags(fs *pflag.FlagSet, c *Config) {
	fs.StringVar(&c.SMTPAddr, "smtp-addr", c.SMTPAddr, "mail server for alerts, host:port ($"+EnvSMTPAddr+")")
	fs.StringVar(&c.SMTPUsername, "smtp-username", c.SMTPUsername,
		"SMTP AUTH PLAIN user; the password comes from $"+EnvSMTPPassword+" ($"+EnvSMTPUsername+")")
	fs.StringVar(&c.SMTPFrom, "smtp-from", c.SMTPFrom, "sender address of alert e-mails ($"+EnvSMTPFrom+")")
	fs.StringSliceVar(&c.EmailTo, "alert-email", c.EmailTo, "alert e-mail recipients, comma-separated ($"+EnvEmail+")")
	fs.StringVar(&c.SMTPStartTLS, "smtp-starttls", c.SMTPStartTLS, "STARTTLS: auto, always or never ($"+EnvSMTPStartTLS+")")
	fs.StringVar(&c.Webhook, "alert-webhook", c.Webhook, "URL that gets alerts as JSON POSTs ($"+EnvWebhook+")")
	// The webhook URL may hold a token: keep it out of --help.
	fs.Lookup("alert-webhook").DefValue = ""
	fs.DurationVar(&c.Reminder, "alert-reminder", c.Reminder, "interval of reminders while a stage keeps failing ($"+EnvReminder+")")
	fs.DurationVar(&c.Timeout, "alert-timeout", c.Timeout, "time limit for delivering one alert ($"+EnvTimeout+")")
}

// Email reports whether e-mail alerts are configured.
func (c Config) Email() bool { return len(c.EmailTo) > 0 }

// Validate checks the configuration; its errors never hold the password
// or the webhook's path.
func (c Config) Validate() error {
	var errs []error
	switch c.SMTPStartTLS {
	case "", StartTLSAuto, StartTLSAlways, StartTLSNever:
	default:
		errs = append(errs, fmt.Errorf("SMTP STARTTLS mode %q: want auto, always or never", c.SMTPStartTLS))
	}
	if c.Email() {
		if _, _, err := net.SplitHostPort(c.SMTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("alert e-mail needs the SMTP server as host:port (%s): %q", EnvSMTPAddr, c.SMTPAddr))
		}
		if _, err := mail.ParseAddress(c.SMTPFrom); err != nil {
			errs = append(errs, fmt.Errorf("alert e-mail needs a sender address (%s): %q", EnvSMTPFrom, c.SMTPFrom))
		}
		for _, to := range c.EmailTo {
			if _, err := mail.ParseAddress(to); err != nil {
				errs = append(errs, fmt.Errorf("alert e-mail recipient %q: %w", to, err))
			}
		}
	} else if c.SMTPAddr != "" {
		errs = append(errs, fmt.Errorf("%s is set but there are no recipients (%s)", EnvSMTPAddr, EnvEmail))
	}
	if c.SMTPPassword != "" && c.SMTPUsername == "" {
		errs = append(errs, fmt.Errorf("%s is set without %s", EnvSMTPPassword, EnvSMTPUsername))
	}
	if c.Webhook != "" {
		u, err := url.Parse(c.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("alert webhook (%s) must be an http(s) URL", EnvWebhook))
		}
	}
	if c.Reminder < 0 || c.Timeout < 0 {
		errs = append(errs, errors.New("alert reminder and timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// LogValue shows the configuration in logs without the password and with
// only the webhook's scheme and host.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("smtp_addr", c.SMTPAddr),
		slog.String("smtp_username", c.SMTPUsername),
		slog.Bool("smtp_auth", c.SMTPUsername != ""),
		slog.String("smtp_from", c.SMTPFrom),
		slog.Any("email_to", c.EmailTo),
		slog.String("smtp_starttls", c.SMTPStartTLS),
		slog.String("webhook", webhookDisplay(c.Webhook)),
		slog.Duration("reminder", c.Reminder),
		slog.Duration("timeout", c.Timeout),
	)
}

// webhookDisplay is a webhook URL reduced to scheme and host.
func webhookDisplay(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}
