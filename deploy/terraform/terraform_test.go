// Package terraform_test checks the AWS deployment in this directory
// without AWS or providers: it parses the Terraform with hashicorp/hcl,
// evaluates it symbolically (module_test.go) and checks the wiring
// (checks_test.go). Mutation cases prove that each check can fail.
package terraform_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

func mainFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := loadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestWiring(t *testing.T) {
	m, err := parseModule(mainFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(m) {
		t.Error(p)
	}
	// The checks looked at what they claim to: four functions, an error
	// alarm per function and kind, duration and throttle alarms per
	// function, the heartbeats of ingest, transform and load, the queue,
	// freshness (too slow, and missing), the audit's drift and staleness;
	// one Glue table per star table; ingest's schedule, the two sweeps and
	// the audit's.
	if n := len(m.instances("aws_scheduler_schedule")); n != 4 {
		t.Errorf("%d schedules, want 4", n)
	}
	if n := len(m.instances("aws_lambda_function")); n != 4 {
		t.Errorf("%d functions, want 4", n)
	}
	if n, want := len(m.instances("aws_cloudwatch_metric_alarm")), 4*len(errkind.All)+4+4+3+3+2; n != want {
		t.Errorf("%d alarms, want %d", n, want)
	}
	if n := len(m.instances("aws_glue_catalog_table")); n != 11 {
		t.Errorf("%d Glue tables, want 11", n)
	}
}

// TestSymbolicEvaluation pins down how references evaluate, which every
// check relies on.
func TestSymbolicEvaluation(t *testing.T) {
	m, err := parseModule(mainFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	var ingest *node
	for _, n := range m.instances("aws_lambda_function") {
		if strings.HasSuffix(n.addr, `["ingest"]`) {
			ingest = n
		}
	}
	if ingest == nil {
		t.Fatal("no ingest function instance")
	}
	for attr, want := range map[string]string{
		"function_name": "sandstone-ingest",
		"role":          `${aws_iam_role.stage["ingest"].arn}`,
		"runtime":       "provided.al2023",
	} {
		if got := ingest.str(attr); got != want {
			t.Errorf("%s = %q, want %q", attr, got, want)
		}
	}
	env := ingest.block("environment").strMap("variables")
	if got, want := env[envIngestBucket], "s3://${aws_s3_bucket.ingestion.bucket}?region=eu-west-2"; got != want {
		t.Errorf("%s = %q, want %q", envIngestBucket, got, want)
	}
	if got, _ := ingest.num("timeout"); got != 300 {
		t.Errorf("timeout = %v, want the default 300", got)
	}
}

// mutation breaks the real configuration in one place.
type mutation struct {
	name string
	file string
	old  string // a regular expression; its first match is replaced
	new  string
	want []string // every one must appear in some problem
}

var mutations = []mutation{
	{"notification without prefix filter", "events.tf", `filter_prefix       = local.manifest_prefix`, `filter_prefix       = ""`,
		[]string{"filter_prefix", "manifests only"}},
	{"notification without suffix filter", "events.tf", `filter_suffix       = local.manifest_suffix`, `filter_suffix       = ".parquet"`,
		[]string{"filter_suffix"}},
	{"ingestion manifests start load", "events.tf", `lambda_function_arn = aws_lambda_function.stage\["transform"\].arn`, `lambda_function_arn = aws_lambda_function.stage["load"].arn`,
		[]string{"must start the transform function", "no S3 notification from aws_s3_bucket.ingestion starts the transform function"}},
	{"no permission for S3", "events.tf", `principal      = "s3.amazonaws.com"`, `principal      = "sns.amazonaws.com"`,
		[]string{"no aws_lambda_permission lets aws_s3_bucket.ingestion invoke the transform function"}},
	{"schedule starts transform", "events.tf", `arn      = aws_lambda_function.stage\["ingest"\].arn`, `arn      = aws_lambda_function.stage["transform"].arn`,
		[]string{`aws_scheduler_schedule.ingest and aws_scheduler_schedule.sweep["transform"] both start the transform function`, "no aws_scheduler_schedule starts the ingest function"}},
	{"schedule starts the queue", "events.tf", `arn      = aws_lambda_function.stage\["ingest"\].arn`, `arn      = aws_sqs_queue.dlq.arn`,
		[]string{"only the ingest, transform, load and audit functions run on a schedule"}},
	{"sweep on its own schedule", "events.tf", `(resource "aws_scheduler_schedule" "sweep" \{(?s:.*?))schedule_expression = var.schedule_expression`, `${1}schedule_expression = "rate(1 day)"`,
		[]string{`aws_scheduler_schedule.sweep["load"]: runs on "rate(1 day)", not on the pipeline's schedule_expression "rate(10 minutes)"`}},
	{"no heartbeat for transform and load", "monitoring.tf", `for_each = local.ticked_stages`, `for_each = toset(["ingest"])`,
		[]string{`aws_lambda_function.stage["transform"]: no alarm when it stops being invoked`, `aws_lambda_function.stage["load"]: no alarm when it stops being invoked`}},
	{"heartbeat content without invocations", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "not_running" \{(?s:.*?))treat_missing_data  = "missing"`, `${1}treat_missing_data  = "notBreaching"`,
		[]string{"the heartbeat must treat missing data as missing and e-mail on INSUFFICIENT_DATA"}},
	{"heartbeat alarming from creation", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "not_running" \{(?s:.*?))treat_missing_data  = "missing"`, `${1}treat_missing_data  = "breaching"`,
		[]string{`aws_cloudwatch_metric_alarm.not_running["ingest"]: the heartbeat must treat missing data as missing`}},
	{"heartbeat that never e-mails", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "not_running" \{(?s:.*?))insufficient_data_actions = \[aws_sns_topic.alarms.arn\]`, `${1}insufficient_data_actions = []`,
		[]string{`aws_cloudwatch_metric_alarm.not_running["load"]: the heartbeat must treat missing data as missing and e-mail on INSUFFICIENT_DATA`}},
	{"heartbeat with a fixed 30 minutes", "monitoring.tf", `period              = local.stale_period_seconds`, `period              = 900`,
		[]string{"the heartbeat looks at 2700 s; the schedule rate(10 minutes) ticks every 600 s"}},
	{"heartbeat on one empty period", "monitoring.tf", `datapoints_to_alarm = local.stale_periods`, `datapoints_to_alarm = 1`,
		[]string{"the heartbeat fires on 1 of 3 periods"}},
	{"freshness missing alarm removed", "monitoring.tf", `metric_name = "BehindSourceSeconds"`, `metric_name = "Seconds"`,
		[]string{"BehindSourceSeconds may go missing while ingest keeps landing rows, and no alarm fires"}},
	{"freshness missing on one period", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "freshness_missing" \{(?s:.*?))datapoints_to_alarm = 2`, `${1}datapoints_to_alarm = 1`,
		[]string{"must fire on 2 of 2 periods"}},
	{"freshness missing on any landing", "monitoring.tf", `AND FILL\(loaded, 0\) == 0`, `OR FILL(loaded, 0) == 0`,
		[]string{"want the returned expression IF(FILL(landed, 0) > 0 AND FILL(loaded, 0) == 0, 1, 0)"}},
	{"bucket overwrites allowed", "s3.tf", `(?s)    condition \{\n      test     = "Null"\n      variable = "s3:if-none-match".*?\n    \}\n`, ``,
		[]string{"aws_s3_bucket.ingestion: its policy does not deny s3:PutObject", "aws_s3_bucket.processed: its policy does not deny s3:PutObject"}},
	{"multipart parts refused", "s3.tf", `(?s)    condition \{\n      test     = "Bool"\n      variable = "s3:ObjectCreationOperation".*?\n    \}\n`, ``,
		[]string{"aws_s3_bucket.ingestion: its policy does not deny s3:PutObject"}},
	{"a prefix exempt from write-once", "s3.tf", `resources = \["\$\{each.value.arn\}/\*"\]\n    principals \{\n      type        = "\*"\n      identifiers = \["\*"\]\n    \}\n    condition \{\n      test     = "Null"`, "resources = [\"$${each.value.arn}/manifests/*\"]\n    principals {\n      type        = \"*\"\n      identifiers = [\"*\"]\n    }\n    condition {\n      test     = \"Null\"",
		[]string{"aws_s3_bucket.ingestion: its policy does not deny s3:PutObject"}},
	{"versions deletable", "s3.tf", `actions   = \["s3:DeleteObject", "s3:DeleteObjectVersion"\]`, `actions   = ["s3:DeleteObject"]`,
		[]string{"aws_s3_bucket.ingestion: its policy does not deny s3:DeleteObjectVersion", "aws_s3_bucket.processed: its policy does not deny s3:DeleteObjectVersion"}},
	{"objects deletable", "s3.tf", `actions   = \["s3:DeleteObject", "s3:DeleteObjectVersion"\]`, `actions   = ["s3:DeleteObjectVersion"]`,
		[]string{"aws_s3_bucket.ingestion: its policy does not deny s3:DeleteObject on"}},
	{"no bucket policy on processed", "s3.tf", `policy = data.aws_iam_policy_document.bucket\[each.key\].json`, `policy = each.key == "processed" ? jsonencode({ Statement = [] }) : data.aws_iam_policy_document.bucket[each.key].json`,
		[]string{"aws_s3_bucket.processed: no bucket policy"}},
	{"processed policy without its rules", "s3.tf", `policy = data.aws_iam_policy_document.bucket\[each.key\].json`, `policy = each.key == "processed" ? jsonencode({ Statement = [{ Effect = "Deny", Principal = "*", Action = "s3:GetObject", Resource = "*" }] }) : data.aws_iam_policy_document.bucket[each.key].json`,
		[]string{"aws_s3_bucket.processed: its policy does not deny plain HTTP", "aws_s3_bucket.processed: its policy does not deny s3:DeleteObjectVersion"}},
	{"zip relative to the working directory", "main.tf", `"\$\{path.module\}/../../bin/lambda/bootstrap.zip"`, `"../../bin/lambda/bootstrap.zip"`,
		[]string{`aws_lambda_function.stage["ingest"]: filename "../../bin/lambda/bootstrap.zip" is relative to the working directory`}},
	{"schedule input not JSON", "events.tf", `"stage": "ingest",`, `"stage": ingest,`,
		[]string{"target input", "is not JSON"}},
	{"scheduler may invoke every function", "iam.tf", `resources = \[for s in local.ticked_stages : aws_lambda_function.stage\[s\].arn\]`, `resources = ["*"]`,
		[]string{"it needs only lambda:InvokeFunction on ingest, load, transform"}},
	{"scheduler may invoke the audit", "iam.tf", `resources = \[for s in local.ticked_stages : aws_lambda_function.stage\[s\].arn\]`, `resources = [for s in keys(local.stages) : aws_lambda_function.stage[s].arn]`,
		[]string{`aws_iam_role.scheduler: the schedule's role may lambda:InvokeFunction on ${aws_lambda_function.stage["audit"].arn}`}},
	{"scheduler may not invoke load", "iam.tf", `resources = \[for s in local.ticked_stages : aws_lambda_function.stage\[s\].arn\]`, `resources = [aws_lambda_function.stage["ingest"].arn, aws_lambda_function.stage["transform"].arn]`,
		[]string{"aws_iam_role.scheduler: the schedule's role may not invoke load"}},
	{"ingest reads any object anywhere", "iam.tf", `resources = \["\$\{aws_s3_bucket.ingestion.arn\}/\*"\]`, `resources = ["*"]`,
		[]string{`s3:GetObject on resource "*"`, "does not allow s3:GetObject on objects of aws_s3_bucket.ingestion"}},
	{"ingest may delete", "iam.tf", `actions   = \["s3:PutObject", "s3:AbortMultipartUpload"\]`, `actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"]`,
		[]string{"s3:DeleteObject would let it delete objects", "data.aws_iam_policy_document.ingest allows s3:DeleteObject"}},
	{"ingest has s3:*", "iam.tf", `actions   = \["s3:ListBucket"\]`, `actions   = ["s3:*"]`,
		[]string{`wildcard action "s3:*"`}},
	{"ingest writes the whole bucket", "iam.tf", `resources = \[for p in local.ingest_write_prefixes : "\$\{aws_s3_bucket.ingestion.arn\}/\$\{p\}\*"\]`, `resources = ["$${aws_s3_bucket.ingestion.arn}/*"]`,
		[]string{"s3:PutObject on ${aws_s3_bucket.ingestion.arn}/* is not the ingest function's", "does not allow s3:PutObject under manifests/"}},
	{"ingest misses a table prefix", "main.tf", `"address", `, ``,
		[]string{"does not allow s3:PutObject under address/"}},
	{"load reads the ingestion bucket", "iam.tf", `(sid       = "ReadProcessed"\s+actions   = \["s3:GetObject"\]\s+resources = \[)"\$\{aws_s3_bucket.processed.arn\}/\*"`, `${1}"$${aws_s3_bucket.ingestion.arn}/*"`,
		[]string{"s3:GetObject on ${aws_s3_bucket.ingestion.arn}/* is not the load function's"}},
	{"transform writes the other log group", "iam.tf", `aws_cloudwatch_log_group.stage\["transform"\].arn`, `aws_cloudwatch_log_group.stage["ingest"].arn`,
		[]string{`logs:PutLogEvents on ${aws_cloudwatch_log_group.stage["ingest"].arn}:* is not the transform function's`}},
	{"ingest reads the warehouse secret", "iam.tf", `resources = \[aws_secretsmanager_secret.source.arn\]`, `resources = [aws_secretsmanager_secret.warehouse.arn]`,
		[]string{"secretsmanager:GetSecretValue on ${aws_secretsmanager_secret.warehouse.arn} is not the ingest function's"}},
	{"transform is given a secret", "main.tf", `SANDSTONE_PROCESSED_BUCKET = local.processed_bucket_url`, "SANDSTONE_PROCESSED_BUCKET = local.processed_bucket_url\n        SANDSTONE_SOURCE_SECRET_ARN = aws_secretsmanager_secret.source.arn",
		[]string{"the transform function is given SANDSTONE_SOURCE_SECRET_ARN"}},
	{"failures go to SNS", "lambda.tf", `destination = aws_sqs_queue.dlq.arn`, `destination = aws_sns_topic.alarms.arn`,
		[]string{"no dead-letter queue"}},
	{"no alarm on the queue", "monitoring.tf", `metric_name         = "ApproximateNumberOfMessagesVisible"`, `metric_name         = "NumberOfMessagesSent"`,
		[]string{"no alarm on the depth of dead-letter queue"}},
	{"metric filter on warnings", "monitoring.tf", `pattern        = "\{ \$\.level = \\"ERROR\\"`, `pattern        = "{ $.level = \"WARN\"`,
		[]string{`no metric filter on aws_cloudwatch_log_group.stage["ingest"]`}},
	{"an error kind without alarm", "main.tf", `(?m)^\s*bad_rows_rejected\s*=.*\n`, ``,
		[]string{`aws_lambda_function.stage["load"]: no alarm on ERROR lines of kind bad_rows_rejected`}},
	{"alarm that does not name the function", "monitoring.tf", `alarm_description   = "\$\{local.function_names\[each.value.stage\]\} logged`, `alarm_description   = "Sandstone logged`,
		[]string{"alarm_description must name the function sandstone-ingest"}},
	{"alarm without e-mail", "monitoring.tf", `alarm_actions       = \[aws_sns_topic.alarms.arn\]`, `alarm_actions       = []`,
		[]string{"alarm_actions do not notify the e-mail SNS topic"}},
	{"no e-mail subscription", "monitoring.tf", `protocol  = "email"`, `protocol  = "sqs"`,
		[]string{"no SNS topic has an e-mail subscription"}},
	{"duration alarm past the timeout", "monitoring.tf", `\* 1000 \* var.duration_alarm_ratio`, `* 1000 * 2`,
		[]string{"duration alarm threshold"}},
	{"no throttle alarm", "monitoring.tf", `metric_name         = "Throttles"`, `metric_name         = "Errors"`,
		[]string{"no alarm on throttles"}},
	{"freshness alarm too lax", "monitoring.tf", `threshold           = var.freshness_threshold_seconds`, `threshold           = 7200`,
		[]string{"freshness alarm fires above 7200 s"}},
	{"function logs elsewhere", "lambda.tf", `log_group  = aws_cloudwatch_log_group.stage\[each.key\].name`, `log_group  = "/aws/lambda/elsewhere"`,
		[]string{"no log group of its own"}},
	{"two functions share a log group", "lambda.tf", `log_group  = aws_cloudwatch_log_group.stage\[each.key\].name`, `log_group  = aws_cloudwatch_log_group.stage["load"].name`,
		[]string{`aws_lambda_function.stage["ingest"] shares its log group with aws_lambda_function.stage["load"]`}},
	{"log group without retention", "lambda.tf", `retention_in_days = var.log_retention_days`, ``,
		[]string{"no retention_in_days"}},
	{"concurrency not reserved", "lambda.tf", `reserved_concurrent_executions = local.reserved_concurrency\[each.key\]`, `reserved_concurrent_executions = 5`,
		[]string{`aws_lambda_function.stage["ingest"]: reserved_concurrent_executions 5, want 1 (reserved_concurrency)`}},
	{"every function reserved", "lambda.tf", `reserved_concurrent_executions = local.reserved_concurrency\[each.key\]`, `reserved_concurrent_executions = 1`,
		[]string{`aws_lambda_function.stage["load"]: reserved_concurrent_executions 1, but reserved_concurrency leaves load unreserved`}},
	{"schedule enabled before the secrets", "events.tf", `(resource "aws_scheduler_schedule" "ingest" \{(?s:.*?))state = local.schedule_state\n`, `${1}`,
		[]string{"aws_scheduler_schedule.ingest: state ENABLED, want DISABLED"}},
	{"audit schedule enabled before the secrets", "events.tf", `(resource "aws_scheduler_schedule" "audit" \{(?s:.*?))state = local.schedule_state`, `${1}state = "ENABLED"`,
		[]string{"aws_scheduler_schedule.audit[0]: state ENABLED, want DISABLED"}},
	{"async retries at Lambda's default", "lambda.tf", `maximum_retry_attempts       = var.async_retry_attempts\n`, ``,
		[]string{"maximum_retry_attempts is not set"}},
	{"transform in the VPC", "lambda.tf", `for_each = contains\(local.vpc_stages, each.key\) \? \[each.key\] : \[\]`, `for_each = [each.key]`,
		[]string{`aws_lambda_function.stage["transform"]: in a VPC, but it reaches no database or vpc_subnet_ids is empty`}},
	{"network interfaces without a VPC", "iam.tf", `source_policy_documents = contains\(local.vpc_stages, "ingest"\) \? \[data.aws_iam_policy_document.vpc_access.json\] : \[\]`, `source_policy_documents = [data.aws_iam_policy_document.vpc_access.json]`,
		[]string{`(ingest): ec2:CreateNetworkInterface on resource "*"`}},
	{"x86 function", "lambda.tf", `architectures    = \["arm64"\]`, `architectures    = ["x86_64"]`,
		[]string{"want [arm64]"}},
	{"variable without description", "variables.tf", `description = "Days CloudWatch Logs keeps each function's log lines."`, ``,
		[]string{"variable log_retention_days has no description"}},
	{"versioning suspended", "s3.tf", `status = "Enabled"`, `status = "Suspended"`,
		[]string{"aws_s3_bucket.ingestion: versioning is not enabled"}},
	{"ACLs allowed", "s3.tf", `BucketOwnerEnforced`, `ObjectWriter`,
		[]string{"object ownership is not BucketOwnerEnforced"}},
	{"public policies allowed", "s3.tf", `block_public_policy     = true`, `block_public_policy     = false`,
		[]string{"public access is not fully blocked"}},
	{"no encryption", "s3.tf", `sse_algorithm = "AES256"`, `sse_algorithm = "none"`,
		[]string{"no default server-side encryption"}},
	{"audit schedule starts ingest", "events.tf", `arn      = aws_lambda_function.stage\["audit"\].arn`, `arn      = aws_lambda_function.stage["ingest"].arn`,
		[]string{"no aws_scheduler_schedule starts the audit function", "it needs only lambda:InvokeFunction on ingest"}},
	{"audit schedule input not JSON", "events.tf", `"stage": "audit",`, `"stage": audit,`,
		[]string{"aws_scheduler_schedule.audit[0]: target input"}},
	{"audit scheduler may invoke every function", "iam.tf", `resources = \[aws_lambda_function.stage\["audit"\].arn\]`, `resources = ["*"]`,
		[]string{"it needs only lambda:InvokeFunction on audit"}},
	{"audit scheduler uses ingest's role", "events.tf", `role_arn = aws_iam_role.audit_scheduler\[0\].arn`, `role_arn = aws_iam_role.scheduler.arn`,
		[]string{"aws_iam_role.scheduler: the audit's schedule must have a role of its own", "aws_iam_role.scheduler: the schedule's role may not invoke audit"}},
	{"audit writes manifests without repair", "iam.tf", `resources = \["\$\{aws_s3_bucket.ingestion.arn\}/\$\{local.audit_report_prefix\}\*"\]`,
		`resources = ["$${aws_s3_bucket.ingestion.arn}/$${local.audit_report_prefix}*", "$${aws_s3_bucket.ingestion.arn}/manifests/*"]`,
		[]string{"s3:PutObject on ${aws_s3_bucket.ingestion.arn}/manifests/* is not the audit function's"}},
	{"audit writes the whole bucket", "iam.tf", `resources = \["\$\{aws_s3_bucket.ingestion.arn\}/\$\{local.audit_report_prefix\}\*"\]`, `resources = ["$${aws_s3_bucket.ingestion.arn}/*"]`,
		[]string{"s3:PutObject on ${aws_s3_bucket.ingestion.arn}/* is not the audit function's", "(audit): does not allow s3:PutObject under audits/"}},
	{"audit writes its reports elsewhere", "main.tf", `audit_report_prefix = "audits/"`, `audit_report_prefix = "reports/"`,
		[]string{"s3:PutObject on ${aws_s3_bucket.ingestion.arn}/reports/* is not the audit function's", "(audit): does not allow s3:PutObject under audits/"}},
	{"repair grant without repair", "iam.tf", `var.audit_repair \? \[data.aws_iam_policy_document.audit_repair.json\] : \[\]`, `[data.aws_iam_policy_document.audit_repair.json]`,
		[]string{"s3:PutObject on ${aws_s3_bucket.ingestion.arn}/manifests/* is not the audit function's", "s3:PutObject on ${aws_s3_bucket.ingestion.arn}/payment/* is not the audit function's"}},
	{"repair without its grant", "main.tf", `SANDSTONE_AUDIT_REPAIR      = var.audit_repair \? "true" : "false"`, `SANDSTONE_AUDIT_REPAIR      = "true"`,
		[]string{"(audit): does not allow s3:PutObject under manifests/", "(audit): does not allow s3:PutObject under payment/"}},
	{"repair flag not a boolean", "main.tf", `SANDSTONE_AUDIT_REPAIR      = var.audit_repair \? "true" : "false"`, `SANDSTONE_AUDIT_REPAIR      = "yes"`,
		[]string{`SANDSTONE_AUDIT_REPAIR = "yes", want "true" or "false"`}},
	{"warehouse grant without the check", "iam.tf", `var.audit_warehouse_check \? \[data.aws_iam_policy_document.audit_warehouse.json\] : \[\]`, `[data.aws_iam_policy_document.audit_warehouse.json]`,
		[]string{"secretsmanager:GetSecretValue on ${aws_secretsmanager_secret.warehouse.arn} is not the audit function's", "s3:GetObject on ${aws_s3_bucket.processed.arn}/* is not the audit function's"}},
	{"audit with its own lookback", "main.tf", `SANDSTONE_LOOKBACK          = var.ingest_lookback(\s+SANDSTONE_AUDIT_REPAIR)`, `SANDSTONE_LOOKBACK          = "1h"${1}`,
		[]string{`aws_lambda_function.stage["audit"]: SANDSTONE_LOOKBACK = "1h", but ingest's is "10m"`}},
	{"audit reads the source without its secret", "iam.tf", `(sid       = "ReadSourceSecret"\s+actions   = \["secretsmanager:GetSecretValue"\]\s+resources = \[)aws_secretsmanager_secret.source.arn(\]\s+\}\s+statement \{\s+sid       = "WriteOwnLogs"\s+actions   = \["logs:CreateLogStream", "logs:PutLogEvents"\]\s+resources = \["\$\{aws_cloudwatch_log_group.stage\["audit"\])`,
		`${1}aws_secretsmanager_secret.warehouse.arn${2}`,
		[]string{"(audit): does not allow secretsmanager:GetSecretValue on its secret SANDSTONE_SOURCE_SECRET_ARN"}},
	{"drift alarm on the wrong metric", "monitoring.tf", `metric_name = "DriftDeleted"`, `metric_name = "Rows"`,
		[]string{"no drift alarm on Sandstone DriftMissing + DriftDeleted"}},
	{"drift alarm without deletions", "monitoring.tf", `expression  = "missing \+ deleted"`, `expression  = "missing"`,
		[]string{"no drift alarm"}},
	{"drift alarm on another stage", "monitoring.tf", `(metric_name = "DriftMissing"\s+dimensions  = \{ Stage = )"audit"`, `${1}"ingest"`,
		[]string{"no drift alarm"}},
	{"drift alarm without e-mail", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "audit_drift" \{(?s:.*?))alarm_actions       = \[aws_sns_topic.alarms.arn\]`, `${1}alarm_actions       = []`,
		[]string{"aws_cloudwatch_metric_alarm.audit_drift: alarm_actions do not notify the e-mail SNS topic"}},
	{"drift alarm that says not what to do", "monitoring.tf", "run `sandstone audit --repair`", "repair it",
		[]string{"the drift alarm's description must say what to do (sandstone audit --repair)"}},
	{"drift alarm on missing data", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "audit_drift" \{(?s:.*?))treat_missing_data  = "ignore"`, `${1}treat_missing_data  = "breaching"`,
		[]string{"aws_cloudwatch_metric_alarm.audit_drift: treat_missing_data breaching"}},
	{"drift alarm only on a lot of drift", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "audit_drift" \{(?s:.*?))threshold           = 0`, `${1}threshold           = 10`,
		[]string{"the drift alarm must fire on any drift"}},
	{"no audit staleness alarm", "monitoring.tf", `metric_name         = "AuditSucceeded"`, `metric_name         = "Seconds"`,
		[]string{"no alarm on audits that stop succeeding"}},
	{"audit staleness alarm shorter than the schedule", "monitoring.tf", `evaluation_periods  = local.audit_stale_hours`, `evaluation_periods  = 12`,
		[]string{"the staleness alarm looks at 43200 s; the schedule rate(1 day) runs every 86400 s"}},
	{"audit staleness alarm on one empty hour", "monitoring.tf", `datapoints_to_alarm = local.audit_stale_hours`, `datapoints_to_alarm = 1`,
		[]string{"the staleness alarm fires on 1 of 49 hours"}},
	{"audit staleness alarm content with no audit", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "audit_not_succeeding" \{(?s:.*?))treat_missing_data  = "missing"`, `${1}treat_missing_data  = "notBreaching"`,
		[]string{"the staleness alarm must treat missing data as missing and e-mail on INSUFFICIENT_DATA"}},
	{"audit staleness alarm from creation", "monitoring.tf", `(resource "aws_cloudwatch_metric_alarm" "audit_not_succeeding" \{(?s:.*?))treat_missing_data  = "missing"`, `${1}treat_missing_data  = "breaching"`,
		[]string{"the staleness alarm must treat missing data as missing"}},
	{"no audit error alarms", "monitoring.tf", `for_each = local.error_alarms`, `for_each = { for k, v in local.error_alarms : k => v if v.stage != "audit" }`,
		[]string{`aws_lambda_function.stage["audit"]: no alarm on ERROR lines of kind source_unreachable`}},
	{"Glue column with the wrong type", "main.tf", `\["unit_price", "decimal\(10,2\)"\]`, `["unit_price", "double"]`,
		[]string{`aws_glue_catalog_table.star["fact_sales_order"]: columns`}},
	{"Glue table missing", "main.tf", `(?s)    fact_payment = \[.*?\n    \]\n`, ``,
		[]string{"no Glue table for star table fact_payment"}},
}

// extras are whole files added to the real configuration.
var extras = []struct {
	name string
	src  string
	want []string
}{
	{"administrator policy on ingest", `
resource "aws_iam_role_policy_attachment" "admin" {
  role       = aws_iam_role.stage["ingest"].name
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}`, []string{"managed policy arn:aws:iam::aws:policy/AdministratorAccess attached to aws_iam_role.stage[\"ingest\"]"}},
	{"inline s3:* on load", `
resource "aws_iam_role_policy" "extra" {
  role = aws_iam_role.stage["load"].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:*", Resource = "*" }]
  })
}`, []string{`(load): wildcard action "s3:*"`}},
	{"load writes the processed bucket", `
resource "aws_iam_role_policy" "extra" {
  role = aws_iam_role.stage["load"].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:PutObject"], Resource = ["${aws_s3_bucket.processed.arn}/state/*"] }]
  })
}`, []string{"s3:PutObject on ${aws_s3_bucket.processed.arn}/state/* is not the load function's"}},
	{"a second load function", `
resource "aws_lambda_function" "extra" {
  function_name = "sandstone-load-2"
  role          = aws_iam_role.stage["load"].arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  environment {
    variables = { SANDSTONE_STAGE = "load" }
  }
}`, []string{"two functions for stage load"}},
	{"a secret value in state", `
resource "aws_secretsmanager_secret_version" "source" {
  secret_id     = aws_secretsmanager_secret.source.id
  secret_string = jsonencode({ url = "postgres://u:p@h/db" })
}`, []string{"a secret value in Terraform"}},
	{"a dynamic policy", `
data "aws_iam_policy_document" "extra" {
  dynamic "statement" {
    for_each = ["a"]
    content {
      actions   = ["s3:GetObject"]
      resources = ["*"]
    }
  }
}`, []string{"dynamic blocks cannot be checked"}},
}

func problemsContain(ps problems, want string) bool {
	return slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, want) })
}

func TestChecksCatchBreakage(t *testing.T) {
	for _, mu := range mutations {
		t.Run(mu.name, func(t *testing.T) {
			files := mainFiles(t)
			re := regexp.MustCompile(mu.old)
			loc := re.FindSubmatchIndex(files[mu.file])
			if loc == nil {
				t.Fatalf("mutation does not apply: %q not in %s", mu.old, mu.file)
			}
			src := files[mu.file]
			broken := append(append(slices.Clone(src[:loc[0]]), re.Expand(nil, []byte(mu.new), src, loc)...), src[loc[1]:]...)
			files[mu.file] = broken
			expectProblems(t, files, mu.want)
		})
	}
	for _, ex := range extras {
		t.Run(ex.name, func(t *testing.T) {
			files := mainFiles(t)
			files["zz_extra.tf"] = []byte(ex.src)
			expectProblems(t, files, ex.want)
		})
	}
}

func expectProblems(t *testing.T, files map[string][]byte, want []string) {
	t.Helper()
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	ps := check(m)
	for _, w := range want {
		if !problemsContain(ps, w) {
			t.Errorf("no problem mentions %q; got:\n%s", w, strings.Join(ps, "\n"))
		}
	}
}

func TestBrokenHCLIsReported(t *testing.T) {
	for name, src := range map[string]string{
		"syntax":          `resource "aws_s3_bucket" "x" {`,
		"unknown local":   "resource \"aws_s3_bucket\" \"x\" {\n  for_each = local.nothing\n}\n",
		"variable twice":  "variable \"a\" {}\nvariable \"a\" {}\n",
		"no labels":       "resource \"aws_s3_bucket\" {}\n",
		"unknown default": "variable \"a\" {\n  default = local.b\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseModule(map[string][]byte{"broken.tf": []byte(src)}); err == nil {
				t.Error("parseModule accepted broken HCL")
			}
		})
	}
}

// unformatted lists the files that differ from their canonical HCL form.
func unformatted(files map[string][]byte) []string {
	var out []string
	for name, src := range files {
		if !bytes.Equal(hclwrite.Format(src), src) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestFormatted(t *testing.T) {
	for _, dir := range []string{".", "bootstrap"} {
		files, err := loadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range unformatted(files) {
			t.Errorf("%s is not formatted: run terraform fmt -recursive deploy/terraform", filepath.Join(dir, name))
		}
	}
	bad := map[string][]byte{"ok.tf": []byte("a = 1\n"), "bad.tf": []byte("a   =  1\nb= 2\n")}
	if got := unformatted(bad); !slices.Equal(got, []string{"bad.tf"}) {
		t.Errorf("unformatted(...) = %v, want [bad.tf]", got)
	}
}

func TestTerraformFmt(t *testing.T) {
	bin, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not on PATH")
	}
	cmd := exec.Command(bin, "fmt", "-check", "-recursive", "-diff", ".") // #nosec G204 -- fixed arguments
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+os.DevNull, "CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check -recursive: %v\n%s", err, out)
	}
}

// TestBootstrap checks the one-off configuration that makes the state
// bucket and the roles GitHub Actions assumes: documented variables, and
// roles only this repository's main branch (plan) or its protected
// environment (deploy) can assume.
func TestBootstrap(t *testing.T) {
	files, err := loadDir("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	checkDescriptions(m, &p)
	subs := map[string]string{}
	for _, role := range m.instances("aws_iam_role") {
		var sub, aud []string
		for _, s := range m.statements(role.value("assume_role_policy"), &p) {
			if len(s.principals["Federated"]) == 0 {
				continue
			}
			for _, c := range s.conditions {
				if c.test != "StringEquals" {
					p.add("%s: condition %s on %s must be StringEquals", role.addr, c.test, c.variable)
				}
				switch c.variable {
				case "token.actions.githubusercontent.com:sub":
					sub = c.values
				case "token.actions.githubusercontent.com:aud":
					aud = c.values
				}
			}
		}
		if !slices.Equal(aud, []string{"sts.amazonaws.com"}) {
			p.add("%s: audience %v, want [sts.amazonaws.com]", role.addr, aud)
		}
		if len(sub) != 1 || strings.Contains(sub[0], "*") {
			p.add("%s: subject %v must name one repository and ref or environment", role.addr, sub)
			continue
		}
		subs[role.str("name")] = sub[0]
	}
	for name, want := range map[string]string{
		"sandstone-github-plan":   "repo:${var.github_repository}:ref:refs/heads/main",
		"sandstone-github-deploy": "repo:${var.github_repository}:environment:production",
	} {
		if subs[name] != want {
			p.add("role %s: subject %q, want %q", name, subs[name], want)
		}
	}
	for _, e := range m.errs {
		p.add("cannot evaluate %s", e)
	}
	for _, x := range p {
		t.Error(x)
	}
}

// withDefault sets variable name's default in variables.tf to value (HCL).
func withDefault(t *testing.T, files map[string][]byte, name, value string) {
	t.Helper()
	re := regexp.MustCompile(`(?s)(variable "` + name + `" \{.*?\n  default     = )[^\n]*`)
	if !re.Match(files["variables.tf"]) {
		t.Fatalf("no default of variable %s", name)
	}
	files["variables.tf"] = re.ReplaceAll(files["variables.tf"], []byte("${1}"+strings.ReplaceAll(value, "$", "$$")))
}

// auditPuts lists the object resources the audit's role may s3:PutObject.
func auditPuts(t *testing.T, m *module) []string {
	t.Helper()
	var role *node
	for _, r := range m.instances("aws_iam_role") {
		if strings.HasSuffix(r.addr, `stage["audit"]`) {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no audit role")
	}
	var p problems
	var out []string
	for _, s := range rolePolicies(m, role, &p) {
		if s.effect == "Allow" && slices.Contains(s.actions, "s3:PutObject") {
			out = append(out, s.resources...)
		}
	}
	if len(p) > 0 {
		t.Fatal(p)
	}
	slices.Sort(out)
	return out
}

// TestAuditVariants: the audit's settings give a configuration the checks
// accept, and each changes what it should: repair adds ingest's prefixes to
// the role, the warehouse check the processed bucket, the warehouse secret
// and an alarm; no schedule drops the schedule, its role and the staleness
// alarm; the staleness alarm follows the schedule's interval.
func TestAuditVariants(t *testing.T) {
	const bucket = "${aws_s3_bucket.ingestion.arn}/"
	for _, v := range []struct {
		name     string
		defaults map[string]string
		check    func(t *testing.T, m *module)
	}{
		{"defaults", nil, func(t *testing.T, m *module) {
			if got := auditPuts(t, m); !slices.Equal(got, []string{bucket + "audits/*"}) {
				t.Errorf("the audit may put %v, want only audits/*", got)
			}
			if n := len(m.instances("aws_scheduler_schedule")); n != 4 {
				t.Errorf("%d schedules, want ingest's, the two sweeps and the audit's", n)
			}
		}},
		{"repair", map[string]string{"audit_repair": "true"}, func(t *testing.T, m *module) {
			got := auditPuts(t, m)
			for _, want := range []string{"audits/*", "manifests/*", "state/*", "sales_order/*", "payment/*"} {
				if !slices.Contains(got, bucket+want) {
					t.Errorf("with repair the audit may not put %s: %v", want, got)
				}
			}
			if len(got) != 1+2+11 {
				t.Errorf("with repair the audit may put %v", got)
			}
		}},
		{"warehouse check", map[string]string{"audit_warehouse_check": "true"}, func(t *testing.T, m *module) {
			env := map[string]string{}
			for _, f := range m.instances("aws_lambda_function") {
				if strings.HasSuffix(f.addr, `["audit"]`) {
					env = f.block("environment").strMap("variables")
				}
			}
			if env[envProcessedBucket] == "" || env[envWarehouseSecret] == "" || env["SANDSTONE_WAREHOUSE_SCHEMA"] == "" {
				t.Errorf("the audit's environment lacks the warehouse: %v", env)
			}
			if got := auditPuts(t, m); !slices.Equal(got, []string{bucket + "audits/*"}) {
				t.Errorf("the warehouse check lets the audit put %v", got)
			}
		}},
		{"repair and warehouse check", map[string]string{"audit_repair": "true", "audit_warehouse_check": "true"}, nil},
		{"no schedule", map[string]string{"audit_schedule_expression": `""`}, func(t *testing.T, m *module) {
			if n := len(m.instances("aws_scheduler_schedule")); n != 3 {
				t.Errorf("%d schedules, want ingest's and the two sweeps only", n)
			}
			for _, a := range alarmsOf(m) {
				if a.metric == "AuditSucceeded" {
					t.Errorf("%s: a staleness alarm without a schedule", a.node.addr)
				}
			}
			if len(m.instances("aws_lambda_function")) != 4 {
				t.Error("no audit function without a schedule")
			}
		}},
		{"every 12 hours", map[string]string{"audit_schedule_expression": `"rate(12 hours)"`}, func(t *testing.T, m *module) {
			if got := m.locals["audit_stale_hours"]; asString(got) != "25" {
				t.Errorf("stale after %s hours, want 25", asString(got))
			}
		}},
		{"cron", map[string]string{"audit_schedule_expression": `"cron(0 3 * * ? *)"`}, func(t *testing.T, m *module) {
			if got := m.locals["audit_stale_hours"]; asString(got) != "49" {
				t.Errorf("stale after %s hours, want 49", asString(got))
			}
		}},
		{"every 5 days", map[string]string{"audit_schedule_expression": `"rate(5 days)"`}, func(t *testing.T, m *module) {
			if got := m.locals["audit_stale_hours"]; asString(got) != "168" {
				t.Errorf("stale after %s hours, want CloudWatch's limit of 168", asString(got))
			}
		}},
		{"every 7 days", map[string]string{"audit_schedule_expression": `"rate(7 days)"`}, nil},
	} {
		t.Run(v.name, func(t *testing.T) {
			files := mainFiles(t)
			for name, value := range v.defaults {
				withDefault(t, files, name, value)
			}
			m, err := parseModule(files)
			if err != nil {
				t.Fatal(err)
			}
			ps := check(m)
			if v.name == "every 7 days" {
				// CloudWatch looks back 7 days at most: a weekly audit
				// cannot be watched, and the checks say so.
				if !problemsContain(ps, "the schedule rate(7 days) runs every 604800 s") {
					t.Errorf("no problem with a weekly schedule:\n%s", strings.Join(ps, "\n"))
				}
				ps = slices.DeleteFunc(ps, func(p string) bool { return strings.Contains(p, "rate(7 days)") })
			}
			for _, p := range ps {
				t.Error(p)
			}
			if v.check != nil {
				v.check(t, m)
			}
		})
	}
}

// TestAuditScheduleValidation evaluates the variable's validation condition
// for expressions EventBridge Scheduler takes, "" and mistakes.
func TestAuditScheduleValidation(t *testing.T) {
	f, diags := hclparse.NewParser().ParseHCL(mainFiles(t)["variables.tf"], "variables.tf")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var cond hcl.Expression
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "variable" && b.Labels[0] == "audit_schedule_expression" {
			for _, v := range b.Body.Blocks {
				if v.Type == "validation" {
					cond = v.Body.Attributes["condition"].Expr
				}
			}
		}
	}
	if cond == nil {
		t.Fatal("audit_schedule_expression has no validation")
	}
	for expr, ok := range map[string]bool{
		"rate(1 day)": true, "rate(12 hours)": true, "rate(90 minutes)": true, "cron(0 3 * * ? *)": true, "": true,
		"rate(0 days)": false, "rate(1 week)": false, "daily": false, "cron(0 3 * * ?)": false, "at(2026-01-01T00:00:00)": false, "0": false,
	} {
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{"audit_schedule_expression": cty.StringVal(expr)})},
			Functions: functions(),
		}
		v, diags := cond.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("%q: %s", expr, diags)
		}
		if v.True() != ok {
			t.Errorf("%q: valid %v, want %v", expr, v.True(), ok)
		}
	}
}

// heartbeatWindow is the window of the not-running alarm of stage, in s.
func heartbeatWindow(t *testing.T, m *module, stage string) float64 {
	t.Helper()
	for _, a := range alarmsOf(m) {
		if a.metric == "Invocations" && a.dims["FunctionName"] == `${aws_lambda_function.stage["`+stage+`"].function_name}` {
			return a.window
		}
	}
	t.Fatalf("no heartbeat of %s", stage)
	return 0
}

// TestScheduleVariants: the heartbeats of ingest, transform and load
// follow schedule_expression (three ticks, in periods of at most an hour),
// a cron() takes schedule_interval_minutes, and the checks catch a
// heartbeat whose window stays put when the schedule changes.
func TestScheduleVariants(t *testing.T) {
	for _, v := range []struct {
		name     string
		defaults map[string]string
		window   float64
		broken   string // an edit of main.tf that must be reported
	}{
		{"default", nil, 1800, ""},
		{"every minute", map[string]string{"schedule_expression": `"rate(1 minute)"`}, 180, ""},
		{"hourly", map[string]string{"schedule_expression": `"rate(1 hour)"`}, 3 * 3600, ""},
		{"every 6 hours", map[string]string{"schedule_expression": `"rate(6 hours)"`}, 3 * 6 * 3600, ""},
		{"cron", map[string]string{"schedule_expression": `"cron(0/15 * * * ? *)"`, "schedule_interval_minutes": "15"}, 3 * 900, ""},
		{"fixed periods", map[string]string{"schedule_expression": `"rate(2 hours)"`}, 0,
			`stale_periods             = 3`},
	} {
		t.Run(v.name, func(t *testing.T) {
			files := mainFiles(t)
			for name, value := range v.defaults {
				withDefault(t, files, name, value)
			}
			if v.broken != "" {
				re := regexp.MustCompile(`stale_periods             = ceil\(3 \* local.schedule_interval_seconds / local.stale_period_seconds\)`)
				if !re.Match(files["main.tf"]) {
					t.Fatal("mutation does not apply")
				}
				files["main.tf"] = re.ReplaceAll(files["main.tf"], []byte(v.broken))
			}
			m, err := parseModule(files)
			if err != nil {
				t.Fatal(err)
			}
			ps := check(m)
			if v.broken != "" {
				if !problemsContain(ps, "the heartbeat looks at 10800 s; the schedule rate(2 hours) ticks every 7200 s") {
					t.Errorf("a heartbeat that ignores the schedule is not reported:\n%s", strings.Join(ps, "\n"))
				}
				return
			}
			for _, p := range ps {
				t.Error(p)
			}
			for _, stage := range []string{"ingest", "transform", "load"} {
				if got := heartbeatWindow(t, m, stage); got != v.window {
					t.Errorf("%s: heartbeat window %v s, want %v s", stage, got, v.window)
				}
			}
		})
	}
}

// TestBucketPolicyForTeardown: force_destroy_buckets lifts the rule that
// refuses deletes (the teardown must empty the buckets) and nothing else.
func TestBucketPolicyForTeardown(t *testing.T) {
	files := mainFiles(t)
	withDefault(t, files, "force_destroy_buckets", "true")
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(m) {
		t.Error(p)
	}
	// And the check catches a policy that still refuses deletes then.
	files["s3.tf"] = regexp.MustCompile(`var.force_destroy_buckets \? \[\] : `).ReplaceAll(files["s3.tf"], nil)
	if m, err = parseModule(files); err != nil {
		t.Fatal(err)
	}
	if ps := check(m); !problemsContain(ps, "force_destroy_buckets is set, but its policy still denies deletes") {
		t.Errorf("not reported:\n%s", strings.Join(ps, "\n"))
	}
}

// validation is the condition of variable name's validation blocks in
// variables.tf (all of them must hold), as a function of the variables
// they read (the others at their defaults).
func validation(t *testing.T, name string) func(vars map[string]cty.Value) bool {
	t.Helper()
	files := mainFiles(t)
	f, diags := hclparse.NewParser().ParseHCL(files["variables.tf"], "variables.tf")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	var conds []hcl.Expression
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "variable" && b.Labels[0] == name {
			for _, v := range b.Body.Blocks {
				if v.Type == "validation" {
					conds = append(conds, v.Body.Attributes["condition"].Expr)
				}
			}
		}
	}
	if len(conds) == 0 {
		t.Fatalf("variable %s has no validation", name)
	}
	return func(vars map[string]cty.Value) bool {
		all := map[string]cty.Value{}
		for n, v := range m.variables {
			all[n] = v.value
		}
		for n, v := range vars {
			all[n] = v
		}
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(all)}, Functions: functions()}
		for _, cond := range conds {
			v, diags := cond.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("%s %v: %s", name, vars, diags)
			}
			if !v.True() {
				return false
			}
		}
		return true
	}
}

// TestValidations evaluates each variable's validation for values AWS
// takes and values it refuses.
func TestValidations(t *testing.T) {
	n := func(f float64) cty.Value { return cty.NumberFloatVal(f) }
	str := cty.StringVal
	null := cty.NullVal(cty.Number)
	for name, cases := range map[string][]struct {
		vars map[string]cty.Value
		ok   bool
	}{
		"async_retry_attempts": {
			{map[string]cty.Value{"async_retry_attempts": n(0)}, true}, {map[string]cty.Value{"async_retry_attempts": n(2)}, true},
			{map[string]cty.Value{"async_retry_attempts": n(3)}, false}, {map[string]cty.Value{"async_retry_attempts": n(-1)}, false},
			{map[string]cty.Value{"async_retry_attempts": n(1.5)}, false},
		},
		"async_max_event_age_seconds": {
			{map[string]cty.Value{"async_max_event_age_seconds": n(60)}, true}, {map[string]cty.Value{"async_max_event_age_seconds": n(21600)}, true},
			{map[string]cty.Value{"async_max_event_age_seconds": n(59)}, false}, {map[string]cty.Value{"async_max_event_age_seconds": n(21601)}, false},
			{map[string]cty.Value{"async_max_event_age_seconds": n(90.5)}, false},
		},
		"secret_recovery_window_days": {
			{map[string]cty.Value{"secret_recovery_window_days": n(0)}, true}, {map[string]cty.Value{"secret_recovery_window_days": n(7)}, true},
			{map[string]cty.Value{"secret_recovery_window_days": n(30)}, true}, {map[string]cty.Value{"secret_recovery_window_days": n(3)}, false},
			{map[string]cty.Value{"secret_recovery_window_days": n(31)}, false}, {map[string]cty.Value{"secret_recovery_window_days": n(7.5)}, false},
		},
		"freshness_threshold_seconds": {
			{map[string]cty.Value{"freshness_threshold_seconds": n(1800)}, true}, {map[string]cty.Value{"freshness_threshold_seconds": n(60)}, false},
		},
		"schedule_interval_minutes": {
			{map[string]cty.Value{"schedule_interval_minutes": null}, true}, {map[string]cty.Value{"schedule_interval_minutes": n(15)}, true},
			{map[string]cty.Value{"schedule_interval_minutes": n(0)}, false}, {map[string]cty.Value{"schedule_interval_minutes": n(1441)}, false},
		},
		"schedule_expression": {
			{map[string]cty.Value{"schedule_expression": str("rate(10 minutes)")}, true},
			{map[string]cty.Value{"schedule_expression": str("rate(1 minute)")}, true},
			{map[string]cty.Value{"schedule_expression": str("rate(1440 minutes)")}, true},
			{map[string]cty.Value{"schedule_expression": str("rate(24 hours)")}, true},
			{map[string]cty.Value{"schedule_expression": str("cron(0/5 * * * ? *)"), "schedule_interval_minutes": n(5)}, true},
			{map[string]cty.Value{"schedule_expression": str("cron(0/5 * * * ? *)")}, false},
			{map[string]cty.Value{"schedule_expression": str("rate(1441 minutes)")}, false},
			{map[string]cty.Value{"schedule_expression": str("rate(25 hours)")}, false},
			{map[string]cty.Value{"schedule_expression": str("rate(1 day)")}, false},
			{map[string]cty.Value{"schedule_expression": str("rate(0 minutes)")}, false},
			{map[string]cty.Value{"schedule_expression": str("every 10 minutes")}, false},
		},
	} {
		valid := validation(t, name)
		for _, c := range cases {
			if got := valid(c.vars); got != c.ok {
				t.Errorf("%s %v: valid %v, want %v", name, c.vars, got, c.ok)
			}
		}
	}
}

// stateKeys is the state bucket's objects under one key prefix.
var stateKeys = regexp.MustCompile(`^\$\{aws_s3_bucket\.state\.arn\}/[a-z0-9-]+/\*$`)

// planReads are calls terraform plan makes to refresh the main
// configuration's resources: the plan role must allow each.
var planReads = []string{
	"s3:GetBucketPolicy", "s3:GetBucketVersioning", "s3:GetLifecycleConfiguration", "s3:GetEncryptionConfiguration",
	"lambda:GetFunction", "lambda:GetFunctionEventInvokeConfig", "lambda:GetPolicy",
	"iam:GetRole", "iam:GetRolePolicy", "logs:DescribeLogGroups", "logs:DescribeMetricFilters",
	"cloudwatch:DescribeAlarms", "sns:GetTopicAttributes", "sqs:GetQueueAttributes", "scheduler:GetSchedule",
	"secretsmanager:DescribeSecret", "glue:GetTable", "ec2:DescribeVpcEndpoints",
}

// dataReads are calls that read data rather than configuration.
var dataReads = regexp.MustCompile(`^(s3:GetObject.*|secretsmanager:GetSecretValue|logs:(GetLogEvents|FilterLogEvents|StartQuery|GetQueryResults|StartLiveTail)|sqs:ReceiveMessage|dynamodb:.*|ssm:GetParameter.*|athena:GetQueryResults|kinesis:GetRecords)$`)

// checkPlanRole: the plan role holds no managed policy (ReadOnlyAccess
// would read data), allows only read calls (Get, List, Describe) that read
// no data, and every call planReads lists; a denial of every object read
// outside the state, and of the data reads of logs, secrets and queues,
// backs that up.
func checkPlanRole(m *module) problems {
	var p problems
	var stmts []statement
	for _, rp := range m.instances("aws_iam_role_policy") {
		if rp.str("role") == "${aws_iam_role.plan.id}" {
			stmts = append(stmts, m.statements(rp.value("policy"), &p)...)
		}
	}
	for _, att := range m.instances("aws_iam_role_policy_attachment") {
		if att.str("role") == "${aws_iam_role.plan.name}" {
			p.add("plan role: managed policy %s attached; scope it to what a plan reads", att.str("policy_arn"))
		}
	}
	allowed := func(action string) bool {
		return slices.ContainsFunc(stmts, func(s statement) bool {
			return s.effect == "Allow" && slices.ContainsFunc(s.actions, func(a string) bool { return glob(a, action) })
		})
	}
	for _, s := range stmts {
		// The state and its lock files: read and written by every plan.
		onState := len(s.resources) > 0 && !slices.ContainsFunc(s.resources, func(r string) bool { return !strings.HasPrefix(r, "${aws_s3_bucket.state.arn}") })
		if s.effect != "Allow" || onState {
			continue
		}
		for _, a := range s.actions {
			_, call, _ := strings.Cut(a, ":")
			if !regexp.MustCompile(`^(Get|List|Describe)`).MatchString(call) || dataReads.MatchString(a) || glob(a, "s3:GetObject") {
				p.add("plan role: allows %s, which is not a read of configuration", a)
			}
		}
	}
	for _, a := range planReads {
		if !allowed(a) {
			p.add("plan role: does not allow %s, which terraform plan calls", a)
		}
	}
	deniedOutsideState := false
	denied := map[string]bool{}
	for _, s := range stmts {
		if s.effect != "Deny" {
			continue
		}
		if slices.Contains(s.actions, "s3:GetObject") && slices.Contains(s.actions, "s3:GetObjectVersion") && len(s.resources) == 0 &&
			len(s.notResources) == 1 && stateKeys.MatchString(s.notResources[0]) {
			deniedOutsideState = true
		}
		if slices.Equal(s.resources, []string{"*"}) {
			for _, a := range s.actions {
				denied[a] = true
			}
		}
	}
	if !deniedOutsideState {
		p.add("plan role: ReadOnlyAccess reads every object in the account; deny s3:GetObject and s3:GetObjectVersion outside the state")
	}
	for _, a := range []string{"logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartQuery", "secretsmanager:GetSecretValue", "sqs:ReceiveMessage", "dynamodb:Scan", "ssm:GetParameter"} {
		if !denied[a] {
			p.add("plan role: %s is not denied", a)
		}
	}
	return p
}

func TestPlanRoleReadsNoData(t *testing.T) {
	files, err := loadDir("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range checkPlanRole(m) {
		t.Error(x)
	}
	for name, c := range map[string]struct{ old, new, want string }{
		"objects readable":           {`not_resources = \[[^\]]*\]`, `not_resources = ["${aws_s3_bucket.state.arn}/*", "arn:aws:s3:::*"]`, "reads every object in the account"},
		"log lines readable":         {`      "logs:GetLogEvents",\n`, ``, "logs:GetLogEvents is not denied"},
		"no narrowing at all":        {`policy = data.aws_iam_policy_document.plan_no_data.json`, `policy = data.aws_iam_policy_document.state.json`, "reads every object in the account"},
		"read-only access back":      {`resource "aws_iam_role_policy" "plan_read" \{`, "resource \"aws_iam_role_policy_attachment\" \"plan_read_only\" {\n  role       = aws_iam_role.plan.name\n  policy_arn = \"arn:aws:iam::aws:policy/ReadOnlyAccess\"\n}\n\nresource \"aws_iam_role_policy\" \"plan_read\" {", "managed policy arn:aws:iam::aws:policy/ReadOnlyAccess attached"},
		"objects through a wildcard": {`"s3:GetBucket\*", `, `"s3:Get*", `, "allows s3:Get*, which is not a read of configuration"},
		"a write":                    {`"lambda:GetFunction", `, `"lambda:UpdateFunctionCode", `, "allows lambda:UpdateFunctionCode"},
		"a read missing":             {`"scheduler:GetSchedule", `, ``, "does not allow scheduler:GetSchedule"},
	} {
		broken := map[string][]byte{}
		for k, v := range files {
			broken[k] = v
		}
		re := regexp.MustCompile(c.old)
		if !re.Match(broken["main.tf"]) {
			t.Fatalf("%s: mutation does not apply", name)
		}
		broken["main.tf"] = re.ReplaceAll(broken["main.tf"], []byte(strings.ReplaceAll(c.new, "$", "$$")))
		m, err := parseModule(broken)
		if err != nil {
			t.Fatal(err)
		}
		if ps := checkPlanRole(m); !problemsContain(ps, c.want) {
			t.Errorf("%s: no problem mentions %q; got %v", name, c.want, ps)
		}
	}
}
