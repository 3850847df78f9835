// Package alert tells people when a stage of the pipeline fails, by e-mail
// (SMTP with STARTTLS and AUTH PLAIN) and to a webhook (a JSON POST),
// without alert storms: per stage, one alert when a failure streak starts,
// a reminder every Config.Reminder while it lasts, and one "recovered"
// message when it ends. Delivery failures are logged, never returned: an
// alert that cannot go out must not stop the pipeline.
package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// The states an alert announces.
const (
	StateFailing   = "failing"
	StateReminder  = "reminder"
	StateRecovered = "recovered"
	// StateWarning is a message about something a person should look at
	// that did not fail the stage (rows rejected): the first at once, then
	// at most one every Config.Reminder while they go on.
	StateWarning = "warning"
)

// Alert is one message about a stage, as posted to the webhook (JSON) and
// written in the e-mail.
type Alert struct {
	// State is StateFailing, StateReminder or StateRecovered.
	State string `json:"state"`
	Stage string `json:"stage"`
	// ErrorKind is the kind of the (last) failure of the streak.
	ErrorKind errkind.Kind `json:"error_kind"`
	// Message is the failure's error text, redacted; for a recovery, a
	// summary of the streak.
	Message string `json:"message"`
	RunID   string `json:"run_id"`
	// Time is when the stage run was observed.
	Time time.Time `json:"time"`
	Host string    `json:"host"`
	// FailingSince is when the streak began; Failures counts its failed runs.
	FailingSince time.Time `json:"failing_since"`
	Failures     int       `json:"failures"`
	// Text is a one-line summary, which chat webhooks (Slack, Mattermost)
	// show as is.
	Text string `json:"text"`
}

// Summary is the alert's subject line.
func (a Alert) Summary() string {
	switch a.State {
	case StateFailing:
		return fmt.Sprintf("sandstone %s failing: %s", a.Stage, a.ErrorKind)
	case StateReminder:
		return fmt.Sprintf("sandstone %s still failing: %s (%d failed runs since %s)",
			a.Stage, a.ErrorKind, a.Failures, a.FailingSince.UTC().Format(time.RFC3339))
	case StateWarning:
		return fmt.Sprintf("sandstone %s warning: %s", a.Stage, a.ErrorKind)
	default:
		return fmt.Sprintf("sandstone %s recovered after %d failed runs", a.Stage, a.Failures)
	}
}

// StageState is the alert state of one stage.
type StageState struct {
	// Failing is true during a failure streak; the other fields then
	// describe it (after recovery: the last streak).
	Failing      bool         `json:"failing"`
	FailingSince time.Time    `json:"failing_since,omitzero"`
	Failures     int          `json:"failures,omitempty"`
	Kind         errkind.Kind `json:"error_kind,omitempty"`
	// Error is the last failure's error text, redacted.
	Error string `json:"error,omitempty"`
	RunID string `json:"run_id,omitempty"`
	// LastAlert is when the last alert was sent, LastAlertState what it said.
	LastAlert      time.Time `json:"last_alert,omitzero"`
	LastAlertState string    `json:"last_alert_state,omitempty"`
	// DeliveryError says why the last alert failed to reach a channel.
	DeliveryError string    `json:"delivery_error,omitempty"`
	RecoveredAt   time.Time `json:"recovered_at,omitzero"`
	// LastWarning is when the last warning was sent; WarningsHeld counts
	// those held back since, inside the reminder interval.
	LastWarning  time.Time `json:"last_warning,omitzero"`
	WarningsHeld int       `json:"warnings_held,omitempty"`
}

// State is the alert state of every stage seen, JSON-serialisable so the
// runner can save it and `sandstone status` can show it.
type State struct {
	Stages map[string]StageState `json:"stages"`
}

// sender delivers an alert on one channel.
type sender interface {
	channel() string
	send(ctx context.Context, a Alert) error
}

// Notifier tracks each stage's failure streak and sends the alerts. Its
// methods are safe for concurrent use.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	senders []sender
	host    string
	now     func() time.Time

	mu     sync.Mutex
	stages map[string]*StageState
}

// New returns a Notifier for cfg that logs to logger (nil: slog.Default()).
// With no channel configured it still tracks the state.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert config: %w", err)
	}
	if cfg.SMTPStartTLS == "" {
		cfg.SMTPStartTLS = StartTLSAuto
	}
	if cfg.Reminder == 0 {
		cfg.Reminder = DefaultReminder
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if logger == nil {
		logger = slog.Default()
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	n := &Notifier{cfg: cfg, log: logger, host: host, now: time.Now, stages: map[string]*StageState{}}
	if cfg.Email() {
		n.senders = append(n.senders, newMailer(cfg))
	}
	if cfg.Webhook != "" {
		n.senders = append(n.senders, newWebhook(cfg.Webhook))
	}
	return n, nil
}

// Observe takes the outcome of one stage run (err nil: success) and sends
// the alert it calls for, if any, waiting at most Config.Timeout. Delivery
// failures are logged at WARN and kept in the state, never returned.
func (n *Notifier) Observe(ctx context.Context, stage, runID string, err error) {
	a, ok := n.transition(stage, runID, err)
	if !ok {
		return
	}
	derr := n.deliver(ctx, a)
	n.mu.Lock()
	defer n.mu.Unlock()
	if st := n.stages[stage]; st != nil {
		st.DeliveryError = ""
		if derr != nil {
			st.DeliveryError = derr.Error()
		}
	}
}

// Warn sends a warning about a stage run that succeeded but left
// something for a person to look at (kind, and message saying what): no
// streak starts, and the stage's failure state is untouched. As failures
// do, warnings remind rather than repeat: after one is sent, those that
// follow within Config.Reminder are held back and counted, and the next
// one sent says how many. Delivery failures are logged, never returned.
func (n *Notifier) Warn(ctx context.Context, stage, runID string, kind errkind.Kind, message string) {
	if a, ok := n.warning(stage, runID, kind, message); ok {
		_ = n.deliver(ctx, a)
	}
}

// warning updates the stage's warning state and returns the warning to
// send, if one is due.
func (n *Notifier) warning(stage, runID string, kind errkind.Kind, message string) (Alert, bool) {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.stage(stage)
	if !st.LastWarning.IsZero() && now.Sub(st.LastWarning) < n.cfg.Reminder {
		st.WarningsHeld++
		n.log.Info("warning held back: one was sent less than the reminder interval ago",
			"stage", stage, "run_id", runID, "error_kind", string(kind), "last_warning", st.LastWarning.UTC().Format(time.RFC3339))
		return Alert{}, false
	}
	a := Alert{State: StateWarning, Stage: stage, RunID: runID, ErrorKind: kind, Time: now, Host: n.host,
		Message: config.Redact(message)}
	if st.WarningsHeld > 0 {
		a.Message += fmt.Sprintf(" (and %d more such warnings since %s, held back: at most one every %s)",
			st.WarningsHeld, st.LastWarning.UTC().Format(time.RFC3339), n.cfg.Reminder)
	}
	st.LastWarning, st.WarningsHeld = now, 0
	a.Text = a.Summary() + ": " + a.Message
	return a, true
}

// stage is the state of stage, new when it has none yet; n.mu is held.
func (n *Notifier) stage(stage string) *StageState {
	st := n.stages[stage]
	if st == nil {
		st = &StageState{}
		n.stages[stage] = st
	}
	return st
}

// transition updates the stage's state and returns the alert to send.
func (n *Notifier) transition(stage, runID string, err error) (Alert, bool) {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.stage(stage)
	a := Alert{Stage: stage, RunID: runID, Time: now, Host: n.host}
	switch {
	case err != nil && !st.Failing:
		*st = StageState{Failing: true, FailingSince: now}
		a.State = StateFailing
	case err != nil && now.Sub(st.LastAlert) >= n.cfg.Reminder:
		a.State = StateReminder
	case err != nil: // inside the reminder interval
	case st.Failing:
		st.Failing, st.RecoveredAt = false, now
		a.State = StateRecovered
	default:
		return Alert{}, false
	}
	if err != nil {
		st.Failures++
		st.Kind = errkind.Of(err)
		st.Error = config.Redact(err.Error())
		st.RunID = runID
		a.Message = st.Error
	}
	if a.State == "" {
		return Alert{}, false
	}
	st.LastAlert, st.LastAlertState = now, a.State
	a.ErrorKind, a.FailingSince, a.Failures = st.Kind, st.FailingSince, st.Failures
	if a.State == StateRecovered {
		a.Message = fmt.Sprintf("%s recovered after %d failed runs since %s; last error (%s): %s",
			stage, st.Failures, st.FailingSince.UTC().Format(time.RFC3339), st.Kind, st.Error)
	}
	a.Text = a.Summary()
	return a, true
}

// deliver sends a on every channel at once, within the timeout, and logs
// the outcome per channel.
func (n *Notifier) deliver(ctx context.Context, a Alert) error {
	if len(n.senders) == 0 {
		n.log.Info("alert not sent: no channel configured", "stage", a.Stage, "alert_state", a.State)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	errs := make([]error, len(n.senders))
	var wg sync.WaitGroup
	for i, s := range n.senders {
		wg.Go(func() {
			err := s.send(ctx, a)
			switch {
			case err == nil:
			case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
				err = fmt.Errorf("no answer within %s: %w", n.cfg.Timeout, err)
			case ctx.Err() != nil:
				err = fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.channel(), err)
				n.log.Warn("alert delivery failed", "stage", a.Stage, "run_id", a.RunID,
					"alert_state", a.State, "channel", s.channel(), "error", config.Redact(err.Error()))
				return
			}
			n.log.Info("alert sent", "stage", a.Stage, "run_id", a.RunID,
				"alert_state", a.State, "channel", s.channel())
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// State returns a copy of every stage's alert state.
func (n *Notifier) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := State{Stages: make(map[string]StageState, len(n.stages))}
	for k, v := range n.stages {
		s.Stages[k] = *v
	}
	return s
}

// Load restores the state saved at path by Save, if there is one.
func (n *Notifier) Load(path string) error {
	s, err := ReadState(path)
	if err == nil && s != nil {
		n.Restore(*s)
	}
	return err
}

// Save writes the alert state to path (atomically: a new file renamed over
// the old), for the next process and for `sandstone status`. An empty path
// saves nothing.
func (n *Notifier) Save(path string) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(n.State(), "", "  ")
	if err != nil {
		return fmt.Errorf("alert state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("alert state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("alert state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("alert state: %w", err)
	}
	return nil
}

// ReadState reads the state Save wrote at path; nil, nil when there is no
// such file.
func ReadState(path string) (*State, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's own state file
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("alert state %s: %w", path, err)
	}
	return &s, nil
}

// Restore replaces the alert state with s (saved by an earlier process),
// so a restart neither repeats the start of a streak nor forgets it.
func (n *Notifier) Restore(s State) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stages = make(map[string]*StageState, len(s.Stages))
	for k, v := range s.Stages {
		n.stages[k] = &v
	}
}
