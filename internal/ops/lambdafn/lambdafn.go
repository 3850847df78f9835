// Package lambdafn serves Sandstone's stages as AWS Lambda functions: one
// bootstrap binary, the stage chosen by SANDSTONE_STAGE: ingest, transform,
// load, or audit (a scheduled sandstone audit, audit.go).
//
// Events (an EventBridge Scheduler tick for ingest, S3 notifications of new
// manifests for transform and load) are only hints: every invocation does
// all the pending work of its stage, so lost, repeated or reordered events
// change nothing. Work that cannot finish before the function's deadline
// stops at a batch boundary and is left for the next invocation.
package lambdafn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
	"github.com/sandstone-data/sandstone/internal/ops/metrics/emf"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

// The environment variables a function reads besides config's.
const (
	EnvStage              = "SANDSTONE_STAGE"
	EnvSourceSecretARN    = "SANDSTONE_SOURCE_SECRET_ARN"
	EnvWarehouseSecretARN = "SANDSTONE_WAREHOUSE_SECRET_ARN"
	// EnvAuditRepair, "true" on the audit function, makes it land what it
	// finds missing and record what it finds deleted (sandstone audit
	// --repair). Default false: the audit only reports. It is read with
	// the rest of the configuration (config.Config.AuditRepair).
	EnvAuditRepair = config.EnvAuditRepair
)

// StageAudit is the stage of the audit function.
const StageAudit = "audit"

// Response is what an invocation returns.
type Response struct {
	Stage   string           `json:"stage"`
	RunID   string           `json:"run_id,omitempty"`
	Batches []string         `json:"batches"`
	Rows    map[string]int64 `json:"rows"`
	Note    string           `json:"note,omitempty"`
	// Audit is the audit stage's finding; Batches and Rows are then what a
	// repair landed.
	Audit *AuditResponse `json:"audit,omitempty"`
}

// Handler serves one stage.
type Handler struct {
	Stage  string
	Config config.Config
	Logger *slog.Logger
	EMF    *emf.Writer
	// Margin is kept free before the function's deadline (at most a
	// quarter of the time an invocation has, see stageDeadline): the stages
	// start no batch that would not end before it, at the pace of their
	// longest batch so far, and the audit stops at it.
	Margin time.Duration
	// Warehouse is true when the audit function's environment names the
	// processed bucket and the warehouse as well.
	Warehouse bool
}

// SecretGetter reads a secret's value (Secrets Manager's GetSecretValue).
type SecretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// FromEnv builds the handler from the environment, reading the database
// URLs from Secrets Manager when a secret ARN is set. Logs and metric lines
// go to out.
func FromEnv(ctx context.Context, out io.Writer) (*Handler, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, err)
	}
	h := &Handler{
		Stage:  os.Getenv(EnvStage),
		Config: cfg,
		Logger: logging.New(out, "json", slog.LevelInfo),
		EMF:    emf.New(out),
		Margin: 15 * time.Second,
	}
	if h.Stage == StageAudit {
		h.Warehouse = os.Getenv(config.EnvProcessedBucket) != "" &&
			(os.Getenv(config.EnvWarehouse) != "" || os.Getenv(EnvWarehouseSecretARN) != "")
	} else if _, err := (&pipeline.Pipeline{}).Stage(h.Stage); err != nil {
		return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("%s: unknown stage %q (want ingest, transform, load or %s)", EnvStage, h.Stage, StageAudit))
	}
	var sm SecretGetter
	for _, s := range []struct {
		env string
		dst *string
	}{{EnvSourceSecretARN, &h.Config.SourceURL}, {EnvWarehouseSecretARN, &h.Config.WarehouseURL}} {
		arn := os.Getenv(s.env)
		if arn == "" {
			continue
		}
		if sm == nil {
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("aws config: %w", err))
			}
			sm = secretsmanager.NewFromConfig(cfg)
		}
		u, err := SecretURL(ctx, sm, arn)
		if err != nil {
			return nil, err
		}
		*s.dst = u
	}
	return h, nil
}

// SecretURL reads a database URL from a secret holding either {"url": ...}
// or the RDS layout {"host", "port", "username", "password", "dbname"}.
func SecretURL(ctx context.Context, sm SecretGetter, arn string) (string, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("read secret %s: %w", arn, err))
	}
	var v struct {
		URL      string          `json:"url"`
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		Username string          `json:"username"`
		Password string          `json:"password"`
		DBName   string          `json:"dbname"`
	}
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &v) != nil {
		return "", errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("secret %s: not a JSON object", arn))
	}
	if v.URL != "" {
		return v.URL, nil
	}
	if v.Host == "" || v.Username == "" {
		return "", errkind.Wrap(errkind.ConfigInvalid, fmt.Errorf("secret %s: needs url, or host and username", arn))
	}
	port := "5432"
	if p, err := strconv.Unquote(string(v.Port)); err == nil {
		port = p
	} else if len(v.Port) > 0 {
		port = string(v.Port)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(v.Username, v.Password),
		Host: v.Host + ":" + port, Path: "/" + v.DBName, RawQuery: "sslmode=require"}
	return u.String(), nil
}

// Handle serves one invocation.
func (h *Handler) Handle(ctx context.Context, event json.RawMessage) (Response, error) {
	h.Logger.Info("invoked", logging.KeyStage, h.Stage, "event", describe(event))
	if h.Stage == StageAudit {
		return h.audit(ctx)
	}
	// Only the buckets this stage uses: the function is given no others.
	p, err := pipeline.OpenStage(ctx, h.Config, h.Logger, h.Stage)
	if err != nil {
		return Response{Stage: h.Stage}, h.fail("", err)
	}
	defer func() { _ = p.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		p.Deadline = stageDeadline(dl, time.Now(), h.Margin)
	}
	stage, err := p.Stage(h.Stage)
	if err != nil {
		return Response{Stage: h.Stage}, h.fail("", err)
	}
	runner := &pipeline.Runner{Logger: h.Logger, Observers: []pipeline.Observer{emfObserver{h.EMF}}}
	rep, err := runner.Run(ctx, stage)
	h.slotLag(ctx)
	resp := Response{Stage: h.Stage, RunID: rep.RunID, Batches: rep.Batches, Rows: rep.Rows, Note: rep.Note}
	if resp.Batches == nil {
		resp.Batches = []string{}
	}
	if err != nil {
		return resp, failed(h.Stage, err)
	}
	return resp, nil
}

// fail logs the failure's one ERROR line and its metrics (for a failure
// before the stage runs), and returns an error whose text carries no
// secret.
func (h *Handler) fail(runID string, err error) error {
	logging.Failure(h.Logger, h.Stage, runID, err)
	_ = h.EMF.Record(emf.StageRun{Stage: h.Stage, RunID: runID, Err: err})
	return failed(h.Stage, err)
}

// failed is the error an invocation returns: its text carries no secret.
func failed(stage string, err error) error {
	return errors.New(config.Redact(fmt.Sprintf("%s failed (%s): %v", stage, errkind.Of(err), err)))
}

// emfObserver writes each stage run's metrics as an EMF line.
type emfObserver struct{ w *emf.Writer }

func (o emfObserver) StageDone(_ context.Context, r pipeline.Report) {
	run := emf.StageRun{Stage: r.Stage, RunID: r.RunID, Duration: r.Duration,
		Rows: r.Rows, Bytes: r.Bytes, Freshness: r.Freshness}
	run.BehindSource = warehouse.BehindSource(pipeline.CaughtUp([]pipeline.Report{r}, false), time.Now()) // set by load
	_ = o.w.Record(run)
}

func (o emfObserver) StageFailed(_ context.Context, stage, runID string, err error) {
	_ = o.w.Record(emf.StageRun{Stage: stage, RunID: runID, Err: err})
}

// describe says what an event is, for the log: the manifest keys of an S3
// notification, or the source of a scheduler event.
func describe(event json.RawMessage) any {
	var s3 events.S3Event
	if json.Unmarshal(event, &s3) == nil && len(s3.Records) > 0 {
		keys := make([]string, 0, len(s3.Records))
		for _, r := range s3.Records {
			keys = append(keys, r.S3.Bucket.Name+"/"+r.S3.Object.Key)
		}
		return map[string]any{"type": "s3", "objects": keys}
	}
	var eb struct {
		Source     string `json:"source"`
		DetailType string `json:"detail-type"`
	}
	if json.Unmarshal(event, &eb) == nil && eb.Source != "" {
		return map[string]any{"type": "eventbridge", "source": eb.Source, "detail_type": eb.DetailType}
	}
	return map[string]any{"type": "other", "bytes": len(event)}
}

// stageDeadline is when a stage invoked at now, with the function's
// deadline dl, stops taking batches: margin before dl, but no more than a
// quarter of the invocation's time, so that a short timeout (10 s) still
// leaves time for a batch.
func stageDeadline(dl, now time.Time, margin time.Duration) time.Time {
	return dl.Add(-min(margin, dl.Sub(now)/4))
}
