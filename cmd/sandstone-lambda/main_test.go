package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/lambdatest"
	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
	"github.com/sandstone-data/sandstone/internal/dev/s3test"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
	"github.com/sandstone-data/sandstone/internal/ops/lambdafn"
	"github.com/sandstone-data/sandstone/internal/stage/warehouse"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func build(t *testing.T) (bootstrap, rie string) { return lambdatest.Build(t) }

func start(t *testing.T, bootstrap, rie string, env []string) lambdatest.Function {
	return lambdatest.Start(t, bootstrap, rie, lambdatest.Options{Env: env})
}

func invoke(t *testing.T, f lambdatest.Function, event []byte) (lambdafn.Response, string) {
	var r lambdafn.Response
	body := f.Invoke(t, event, &r)
	return r, body
}

func testdata(t *testing.T, name, bucket string) []byte {
	return lambdatest.Event(t, filepath.Join("..", ".."), name, bucket)
}

// TestBootstrapUnderEmulator runs the real bootstrap under the Lambda
// Runtime Interface Emulator, one function per stage, invoked over HTTP with
// real event JSON, from a seeded source to a loaded warehouse.
func TestBootstrapUnderEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	bootstrap, rie := build(t)
	s3 := s3test.Start(t)
	source, wh := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if _, err := synth.Seed(context.Background(), source, synth.SeedOptions{SalesOrders: 500, RandomSeed: 3}); err != nil {
		t.Fatal(err)
	}
	env := []string{
		config.EnvSource + "=" + source,
		config.EnvWarehouse + "=" + wh,
		config.EnvIngestBucket + "=" + s3.CreateBucket(t, "ingest"),
		config.EnvProcessedBucket + "=" + s3.CreateBucket(t, "processed"),
	}
	steps := []struct{ stage, event, bucket string }{
		{"ingest", "scheduler.json", ""},
		{"transform", "s3-put.json", "ingest"},
		{"load", "s3-put.json", "processed"},
	}
	for _, s := range steps {
		f := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"="+s.stage))
		resp, body := invoke(t, f, testdata(t, s.event, s.bucket))
		if resp.Stage != s.stage || len(resp.Batches) != 1 {
			t.Fatalf("%s: response %s\nlogs:\n%s", s.stage, body, f.Logs)
		}
		f.WaitFor(t, s.stage+" EMF metrics line", 1, func(l map[string]any) bool { return l["Stage"] == s.stage && l["_aws"] != nil })
		// A repeated event finds nothing left to do.
		if again, body := invoke(t, f, testdata(t, s.event, s.bucket)); len(again.Batches) != 0 {
			t.Fatalf("%s repeated: %s", s.stage, body)
		}
	}
	w, err := warehouse.Open(context.Background(), wh, "public")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	counts, err := w.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := pgtest.QueryInt(t, source, "SELECT count(*) FROM payment"); counts["fact_payment"] != want {
		t.Fatalf("fact_payment %d rows, source has %d payments", counts["fact_payment"], want)
	}
}

// TestAuditUnderEmulator runs the audit function's bootstrap under the
// emulator with the schedule's payload: after an ingest the source and the
// bucket agree; a row deleted from the source is drift, in the response
// and in the EMF line (DriftDeleted 1).
func TestAuditUnderEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	bootstrap, rie := build(t)
	s3 := s3test.Start(t)
	source := pgtest.NewDatabase(t)
	if _, err := synth.Seed(context.Background(), source, synth.SeedOptions{SalesOrders: 200, RandomSeed: 5}); err != nil {
		t.Fatal(err)
	}
	env := []string{config.EnvSource + "=" + source, config.EnvIngestBucket + "=" + s3.CreateBucket(t, "ingest")}
	ingest := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"=ingest"))
	if resp, body := invoke(t, ingest, testdata(t, "scheduler.json", "")); len(resp.Batches) != 1 {
		t.Fatalf("ingest: %s\nlogs:\n%s", body, ingest.Logs)
	}

	f := start(t, bootstrap, rie, append(env, lambdafn.EnvStage+"="+lambdafn.StageAudit))
	isAuditEMF := func(l map[string]any) bool { return l["Stage"] == lambdafn.StageAudit && l["_aws"] != nil }
	resp, body := invoke(t, f, testdata(t, "scheduler-audit.json", ""))
	if resp.Stage != lambdafn.StageAudit || resp.Audit == nil || resp.Audit.Drift || len(resp.Audit.Tables) != 11 {
		t.Fatalf("clean audit: %s\nlogs:\n%s", body, f.Logs)
	}
	emf := f.WaitFor(t, "the clean audit's EMF line", 1, isAuditEMF)
	if emf[0]["DriftMissing"] != 0.0 || emf[0]["DriftDeleted"] != 0.0 || emf[0]["AuditSucceeded"] != 1.0 {
		t.Fatalf("clean audit EMF line %v", emf[0])
	}

	pgtest.Exec(t, source, "DELETE FROM payment WHERE payment_id = (SELECT max(payment_id) FROM payment)")
	resp, body = invoke(t, f, testdata(t, "scheduler-audit.json", ""))
	if a := resp.Audit; a == nil || !a.Drift || a.Deleted != 1 || a.Missing != 0 || a.Tables["payment"]["deleted"] != 1 {
		t.Fatalf("audit after a deletion: %s\nlogs:\n%s", body, f.Logs)
	}
	emf = f.WaitFor(t, "the drift audit's EMF line", 2, isAuditEMF)
	if emf[1]["DriftDeleted"] != 1.0 || emf[1]["DriftMissing"] != 0.0 || emf[1]["AuditSucceeded"] != 1.0 || emf[1]["Failures"] != 0.0 {
		t.Fatalf("drift audit EMF line %v", emf[1])
	}
	warn := f.WaitFor(t, "the drift line", 1, func(l map[string]any) bool { return l["msg"] == lambdafn.MsgAuditDrift })
	if warn[0]["level"] != "WARN" || warn[0]["drift"] != true || !strings.Contains(fmt.Sprint(warn[0]["summary"]), "payment 1 deleted") {
		t.Fatalf("drift line %v", warn[0])
	}
	if strings.Contains(f.Logs.String(), `"level":"ERROR"`) {
		t.Fatalf("drift logged as a failure:\n%s", f.Logs)
	}
}
