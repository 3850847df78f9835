package alert

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvSMTPAddr, "mail.example.com:587")
	t.Setenv(EnvSMTPUsername, "alerts")
	t.Setenv(EnvSMTPPassword, smtpPassword)
	t.Setenv(EnvSMTPFrom, "sandstone@example.com")
	t.Setenv(EnvEmail, " ops@example.com, data@example.com ,")
	t.Setenv(EnvSMTPStartTLS, "Always")
	t.Setenv(EnvWebhook, "https://hooks.example.com/"+hookToken)
	t.Setenv(EnvReminder, "15m")
	t.Setenv(EnvTimeout, "3s")
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{SMTPAddr: "mail.example.com:587", SMTPUsername: "alerts", SMTPPassword: smtpPassword,
		SMTPFrom: "sandstone@example.com", EmailTo: []string{"ops@example.com", "data@example.com"},
		SMTPStartTLS: StartTLSAlways, Webhook: "https://hooks.example.com/" + hookToken,
		Reminder: 15 * time.Minute, Timeout: 3 * time.Second}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestConfigFromEnvDefaultsAndErrors(t *testing.T) {
	for _, e := range []string{EnvSMTPAddr, EnvEmail, EnvSMTPStartTLS, EnvWebhook} {
		t.Setenv(e, "")
	}
	t.Setenv(EnvReminder, "")
	t.Setenv(EnvTimeout, "")
	c, err := ConfigFromEnv()
	if err != nil || c.Reminder != DefaultReminder || c.Timeout != DefaultTimeout || c.SMTPStartTLS != StartTLSAuto || c.Email() {
		t.Errorf("defaults: %+v, %v", c, err)
	}

	t.Setenv(EnvReminder, "soon")
	t.Setenv(EnvTimeout, "-1s")
	c, err = ConfigFromEnv()
	if err == nil || !strings.Contains(err.Error(), EnvReminder) || !strings.Contains(err.Error(), EnvTimeout) {
		t.Errorf("bad durations: %v", err)
	}
	if c.Reminder != DefaultReminder || c.Timeout != DefaultTimeout {
		t.Errorf("defaults not kept: %+v", c)
	}
}

func TestBindFlags(t *testing.T) {
	c := Config{SMTPStartTLS: StartTLSAuto, Reminder: DefaultReminder, Timeout: DefaultTimeout,
		SMTPPassword: smtpPassword, Webhook: "https://hooks.example.com/" + hookToken}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	BindFlags(fs, &c)
	err := fs.Parse([]string{"--smtp-addr", "mail:587", "--smtp-username", "u", "--smtp-from", "s@example.com",
		"--alert-email", "a@example.com,b@example.com", "--smtp-starttls", "never",
		"--alert-reminder", "20m", "--alert-timeout", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{SMTPAddr: "mail:587", SMTPUsername: "u", SMTPFrom: "s@example.com", SMTPPassword: smtpPassword,
		EmailTo: []string{"a@example.com", "b@example.com"}, SMTPStartTLS: StartTLSNever,
		Webhook: "https://hooks.example.com/" + hookToken, Reminder: 20 * time.Minute, Timeout: 2 * time.Second}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if fs.Lookup("smtp-password") != nil {
		t.Error("the SMTP password has a flag")
	}
	if help := fs.FlagUsages(); strings.Contains(help, hookToken) || strings.Contains(help, smtpPassword) {
		t.Errorf("--help shows a secret:\n%s", help)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{SMTPAddr: "mail:587", SMTPFrom: "s@example.com", EmailTo: []string{"o@example.com"}}
	cases := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"starttls mode", func(c *Config) { c.SMTPStartTLS = "sometimes" }, "want auto, always or never"},
		{"no port", func(c *Config) { c.SMTPAddr = "mail" }, EnvSMTPAddr},
		{"no sender", func(c *Config) { c.SMTPFrom = "" }, EnvSMTPFrom},
		{"bad recipient", func(c *Config) { c.EmailTo = append(c.EmailTo, "not an address") }, "not an address"},
		{"server without recipients", func(c *Config) { c.EmailTo = nil }, EnvEmail},
		{"password without user", func(c *Config) { c.SMTPPassword = smtpPassword }, EnvSMTPUsername},
		{"webhook scheme", func(c *Config) { c.Webhook = "ftp://h/" + hookToken }, EnvWebhook},
		{"webhook not a URL", func(c *Config) { c.Webhook = "http://%zz/" + hookToken }, EnvWebhook},
		{"negative reminder", func(c *Config) { c.Reminder = -time.Minute }, "negative"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want an error with %q", err, c.want)
			}
			if strings.Contains(err.Error(), smtpPassword) || strings.Contains(err.Error(), hookToken) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestConfigLogValue(t *testing.T) {
	var buf bytes.Buffer
	c := Config{SMTPAddr: "mail:587", SMTPUsername: "alerts", SMTPPassword: smtpPassword,
		Webhook: "https://hooks.example.com/services/" + hookToken}
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("alerts", "config", c)
	out := buf.String()
	if strings.Contains(out, smtpPassword) || strings.Contains(out, hookToken) {
		t.Errorf("config logged a secret: %s", out)
	}
	if !strings.Contains(out, `"webhook":"https://hooks.example.com"`) || !strings.Contains(out, `"smtp_addr":"mail:587"`) {
		t.Errorf("config log lacks settings: %s", out)
	}
	if webhookDisplay("") != "" || webhookDisplay("::nope") != "(invalid URL)" {
		t.Error("webhookDisplay edge cases")
	}
}
