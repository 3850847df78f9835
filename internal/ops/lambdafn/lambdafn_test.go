package lambdafn

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/audit"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is a source with data, a warehouse and two S3 buckets on a real S3
// protocol server, described as a Lambda function's environment.
type env struct {
	vars      map[string]string
	warehouse string
	source    string
}

func newEnv(t *testing.T) env {
	s3 := s3test.Start(t)
	e := env{source: pgtest.NewDatabase(t), warehouse: pgtest.NewDatabase(t)}
	if _, err := synth.Seed(context.Background(), e.source, synth.SeedOptions{SalesOrders: 300, RandomSeed: 7}); err != nil {
		t.Fatal(err)
	}
	e.vars = map[string]string{
		config.EnvSource:          e.source,
		config.EnvWarehouse:       e.warehouse,
		config.EnvIngestBucket:    s3.CreateBucket(t, "ingest"),
		config.EnvProcessedBucket: s3.CreateBucket(t, "processed"),
		"AWS_ACCESS_KEY_ID":       "test",
		"AWS_SECRET_ACCESS_KEY":   "test",
		"AWS_REGION":              "us-east-1",
	}
	return e
}

func (e env) set(t *testing.T, stage string) {
	for k, v := range e.vars {
		t.Setenv(k, v)
	}
	t.Setenv(EnvStage, stage)
}

func event(t *testing.T, name, bucket string) json.RawMessage {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(strings.ReplaceAll(string(b), "BUCKET", bucket))
}

// TestHandlers runs the three stages in process, fed real event JSON, from
// a seeded source to a loaded warehouse; repeated events change nothing.
func TestHandlers(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	invoke := func(stage string, ev json.RawMessage) Response {
		e.set(t, stage)
		h, err := FromEnv(context.Background(), &logs)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			t.Fatalf("%s: %v\n%s", stage, err, logs.String())
		}
		return resp
	}
	for round := 0; round < 2; round++ {
		in := invoke("ingest", event(t, "scheduler.json", ""))
		tr := invoke("transform", event(t, "s3-put.json", "ingest"))
		ld := invoke("load", event(t, "s3-put.json", "processed"))
		if round == 0 && (len(in.Batches) != 1 || len(tr.Batches) != 1 || len(ld.Batches) != 1) {
			t.Fatalf("first round: ingest %+v, transform %+v, load %+v", in, tr, ld)
		}
		if round == 1 && (len(in.Batches)+len(tr.Batches)+len(ld.Batches) != 0) {
			t.Fatalf("repeated events did work again: %+v %+v %+v", in, tr, ld)
		}
	}
	w, err := warehouse.Open(context.Background(), e.warehouse, "public")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	counts, err := w.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := pgtest.QueryInt(t, e.source, "SELECT count(*) FROM sales_order"); counts["fact_sales_order"] != want {
		t.Fatalf("fact_sales_order %d, source %d", counts["fact_sales_order"], want)
	}
	out := logs.String()
	for _, want := range []string{`"_aws"`, `"Namespace":"Sandstone"`, `"type":"s3"`, `"objects":["ingest/manifests/000000/000000000001.json"]`,
		`"source":"aws.scheduler"`, `"BehindSourceSeconds":`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

func TestFailureIsLoggedOnceWithKind(t *testing.T) {
	e := newEnv(t)
	e.vars[config.EnvSource] = "postgres://u:hunter2secret@127.0.0.1:1/x?connect_timeout=2"
	e.set(t, "ingest")
	var logs bytes.Buffer
	h, err := FromEnv(context.Background(), &logs)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Handle(context.Background(), event(t, "scheduler.json", ""))
	if err == nil || !strings.Contains(err.Error(), "source_unreachable") {
		t.Fatalf("error %v", err)
	}
	out := logs.String()
	if strings.Count(out, `"level":"ERROR"`) != 1 || !strings.Contains(out, `"error_kind":"source_unreachable"`) {
		t.Fatalf("want one ERROR line with the kind:\n%s", out)
	}
	if strings.Contains(out, "hunter2secret") || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatal("password leaked")
	}
}

// auditLine is the audit's result line or its EMF line, as JSON.
type auditLine struct {
	Level          string                      `json:"level"`
	Msg            string                      `json:"msg"`
	Stage          string                      `json:"Stage"`
	Drift          *bool                       `json:"drift"`
	Summary        string                      `json:"summary"`
	ErrorKind      string                      `json:"error_kind"`
	DriftMissing   *float64                    `json:"DriftMissing"`
	DriftDeleted   *float64                    `json:"DriftDeleted"`
	AuditSucceeded *float64                    `json:"AuditSucceeded"`
	Failures       *float64                    `json:"Failures"`
	Tables         map[string]map[string]int64 `json:"tables"`
	AWS            json.RawMessage             `json:"_aws"`
}

func auditLines(t *testing.T, out string) (results, emf []auditLine) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch {
		case a.Stage == "audit" && a.AWS != nil:
			emf = append(emf, a)
		case a.Msg == MsgAuditClean || a.Msg == MsgAuditDrift:
			results = append(results, a)
		}
	}
	return results, emf
}

// TestAuditHandler runs the audit stage in process: a clean ingestion
// bucket audits clean; a row deleted from the source is drift, logged at
// WARN, measured in EMF and saved as a report; with SANDSTONE_AUDIT_REPAIR
// the audit records the deletion and the next audit is clean.
func TestAuditHandler(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	invoke := func(stage string, ev json.RawMessage) Response {
		t.Helper()
		logs.Reset()
		e.set(t, stage)
		h, err := FromEnv(context.Background(), &logs)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		resp, err := h.Handle(ctx, ev)
		if err != nil {
			t.Fatalf("%s: %v\n%s", stage, err, logs.String())
		}
		return resp
	}
	invoke("ingest", event(t, "scheduler.json", ""))
	invoke("transform", event(t, "s3-put.json", "ingest"))
	invoke("load", event(t, "s3-put.json", "processed"))

	// The environment names the processed bucket and the warehouse: the
	// audit checks the warehouse too.
	clean := invoke(StageAudit, event(t, "scheduler.json", ""))
	if clean.Stage != StageAudit || clean.Audit == nil || clean.Audit.Drift || len(clean.Batches) != 0 {
		t.Fatalf("clean audit: %+v", clean)
	}
	if len(clean.Audit.Warehouse) == 0 || clean.Audit.WarehouseDrift != 0 {
		t.Errorf("clean audit of the warehouse: %v", clean.Audit.Warehouse)
	}
	if len(clean.Audit.Tables) != 11+10 || clean.Audit.Tables["payment"]["deleted"] != 0 || clean.Audit.Tables["fact_payment"]["stale"] != 0 { // source and warehouse tables
		t.Errorf("clean audit tables: %v", clean.Audit.Tables)
	}
	results, emf := auditLines(t, logs.String())
	if len(results) != 1 || results[0].Level != "INFO" || *results[0].Drift || len(emf) != 1 ||
		*emf[0].DriftMissing != 0 || *emf[0].DriftDeleted != 0 || *emf[0].AuditSucceeded != 1 || *emf[0].Failures != 0 {
		t.Fatalf("clean audit logs:\n%s", logs.String())
	}

	gone := pgtest.QueryInt(t, e.source, "SELECT min(payment_id) FROM payment")
	pgtest.Exec(t, e.source, "DELETE FROM payment WHERE payment_id = $1", gone)
	drift := invoke(StageAudit, event(t, "scheduler.json", ""))
	if a := drift.Audit; a == nil || !a.Drift || a.Deleted != 1 || a.Missing != 0 || a.Tables["payment"]["deleted"] != 1 || a.Repaired != nil || len(drift.Batches) != 0 {
		t.Fatalf("audit after a deletion: %+v %+v", drift, drift.Audit)
	}
	results, emf = auditLines(t, logs.String())
	if len(results) != 1 || results[0].Level != "WARN" || !*results[0].Drift || !strings.Contains(results[0].Summary, "payment 1 deleted") {
		t.Fatalf("drift result line:\n%s", logs.String())
	}
	if len(emf) != 1 || *emf[0].DriftDeleted != 1 || *emf[0].DriftMissing != 0 || *emf[0].AuditSucceeded != 1 || emf[0].Tables["payment"]["deleted"] != 1 {
		t.Fatalf("drift EMF line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("drift is not a failure:\n%s", logs.String())
	}
	b, err := lake.Open(context.Background(), e.vars[config.EnvIngestBucket])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	if saved, err := audit.Latest(context.Background(), b); err != nil || saved == nil || !saved.Drift || saved.Tables["payment"].Deleted != 1 {
		t.Fatalf("saved report %+v, %v", saved, err)
	}

	e.vars[EnvAuditRepair] = "true"
	repaired := invoke(StageAudit, event(t, "scheduler.json", ""))
	if a := repaired.Audit; a == nil || !a.Repair || a.Repaired == nil || a.Repaired.Tombstones["payment"] != 1 || len(repaired.Batches) != 1 {
		t.Fatalf("repair: %+v %+v", repaired, repaired.Audit)
	}
	if again := invoke(StageAudit, event(t, "scheduler.json", "")); again.Audit.Drift || again.Audit.Repaired != nil {
		t.Fatalf("after the repair: %+v", again.Audit)
	}

	e.vars[EnvAuditRepair] = "sometimes"
	e.set(t, StageAudit)
	if _, err := FromEnv(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), EnvAuditRepair) {
		t.Fatalf("a bad %s: %v", EnvAuditRepair, err)
	}
}

// TestAuditFailure: an audit that cannot reach the source logs one ERROR
// line with its kind and an EMF line with AuditSucceeded 0 and no drift.
func TestAuditFailure(t *testing.T) {
	e := newEnv(t)
	e.vars[config.EnvSource] = "postgres://u:hunter2secret@127.0.0.1:1/x?connect_timeout=2"
	e.set(t, StageAudit)
	var logs bytes.Buffer
	h, err := FromEnv(context.Background(), &logs)
	if err != nil {
		t.Fatal(err)
	}
	// An empty bucket has no state to compare with: the audit still reads
	// the source first, and fails there.
	resp, err := h.Handle(context.Background(), event(t, "scheduler.json", ""))
	if err == nil || !strings.Contains(err.Error(), "source_unreachable") || resp.Audit != nil {
		t.Fatalf("error %v, response %+v", err, resp)
	}
	out := logs.String()
	if strings.Count(out, `"level":"ERROR"`) != 1 || !strings.Contains(out, `"error_kind":"source_unreachable"`) || strings.Contains(out, "hunter2secret") {
		t.Fatalf("want one redacted ERROR line with the kind:\n%s", out)
	}
	_, emf := auditLines(t, out)
	if len(emf) != 1 || *emf[0].AuditSucceeded != 0 || *emf[0].Failures != 1 || emf[0].DriftMissing != nil || emf[0].DriftDeleted != nil || emf[0].ErrorKind != "source_unreachable" {
		t.Fatalf("failure EMF line:\n%s", out)
	}
}

func TestBadStage(t *testing.T) {
	t.Setenv(EnvStage, "compact")
	if _, err := FromEnv(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), "unknown stage") {
		t.Fatalf("error %v", err)
	}
}

// secretsServer speaks Secrets Manager's JSON protocol for GetSecretValue.
func secretsServer(t *testing.T, secrets map[string]string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
			http.Error(w, "unexpected target", http.StatusBadRequest)
			return
		}
		v, ok := secrets[in.SecretId]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "n", "SecretString": v})
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
}

func TestSecrets(t *testing.T) {
	secretsServer(t, map[string]string{
		"arn:src": `{"url":"postgres://src@db/totesys"}`,
		"arn:wh":  `{"host":"wh.example","port":5433,"username":"loader","password":"p@ss","dbname":"dw"}`,
		"arn:bad": `not json`,
		"arn:nil": `{"password":"x"}`,
	})
	t.Setenv(EnvStage, "load")
	t.Setenv(EnvSourceSecretARN, "arn:src")
	t.Setenv(EnvWarehouseSecretARN, "arn:wh")
	h, err := FromEnv(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if h.Config.SourceURL != "postgres://src@db/totesys" {
		t.Errorf("source %s", h.Config.SourceURL)
	}
	if h.Config.WarehouseURL != "postgres://loader:p%40ss@wh.example:5433/dw?sslmode=require" {
		t.Errorf("warehouse %s", h.Config.WarehouseURL)
	}
	for _, arn := range []string{"arn:bad", "arn:nil", "arn:missing"} {
		t.Setenv(EnvWarehouseSecretARN, arn)
		if _, err := FromEnv(context.Background(), io.Discard); err == nil {
			t.Errorf("%s: no error", arn)
		}
	}
}

// TestCaptureFromEnv: the ingest function reads the capture settings as
// the CLI does, and refuses a bad one as config_invalid.
func TestCaptureFromEnv(t *testing.T) {
	t.Setenv(EnvStage, "ingest")
	t.Setenv(config.EnvCapture, "wal")
	t.Setenv(config.EnvSlot, "totesys_prod")
	t.Setenv(config.EnvPublication, "totesys")
	h, err := FromEnv(context.Background(), io.Discard)
	if err != nil || h.Config.Capture != config.CaptureWAL || h.Config.Slot != "totesys_prod" || h.Config.Publication != "totesys" {
		t.Fatalf("%+v, %v", h, err)
	}
	t.Setenv(config.EnvCapture, "cdc")
	if _, err := FromEnv(context.Background(), io.Discard); errkind.Of(err) != errkind.ConfigInvalid || !strings.Contains(err.Error(), config.EnvCapture) {
		t.Fatalf("a bad %s: %v", config.EnvCapture, err)
	}
}

// TestIngestSlotLag: the ingest function in wal capture writes its slot's
// lag as an EMF line after its run.
func TestIngestSlotLag(t *testing.T) {
	e := newEnv(t)
	slot := config.DefaultSlot(e.source)
	t.Cleanup(func() { pgtest.DropSlot(t, e.source, slot) })
	e.set(t, "ingest")
	t.Setenv(config.EnvCapture, config.CaptureWAL)
	var logs bytes.Buffer
	h, err := FromEnv(context.Background(), &logs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(context.Background(), event(t, "scheduler.json", "")); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	for _, want := range []string{`"SlotRetainedBytes":`, `"SlotUnconfirmedBytes":`, `"slot":"` + slot + `"`, `"wal_status":"reserved"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}
