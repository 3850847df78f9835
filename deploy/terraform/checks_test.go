package terraform_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// The environment through which a function finds its buckets and secret.
const (
	envStage           = "SANDSTONE_STAGE"
	envIngestBucket    = "SANDSTONE_INGEST_BUCKET"
	envProcessedBucket = "SANDSTONE_PROCESSED_BUCKET"
	envSourceSecret    = "SANDSTONE_SOURCE_SECRET_ARN"
	envWarehouseSecret = "SANDSTONE_WAREHOUSE_SECRET_ARN"
	envLookback        = "SANDSTONE_LOOKBACK"
	envAuditRepair     = "SANDSTONE_AUDIT_REPAIR"
)

// auditReportPrefix is where the audit saves its reports in the ingestion
// bucket (internal/ops/audit.ReportPrefix).
const auditReportPrefix = "audits/"

// access is what one stage may touch: the buckets it lists and reads, the
// bucket it writes and the key prefixes it must be able to write there, and
// its secrets, each named by the environment variable that tells the
// function where it is.
type access struct {
	read          []string
	write         string
	writePrefixes []string
	// onlyPrefixes: s3:PutObject on writePrefixes alone, not on any other
	// named prefix of the bucket.
	onlyPrefixes bool
	secrets      []string
}

func stageAccess() map[string]access {
	ingestPrefixes := []string{lake.ManifestPrefix, lake.StatePrefix}
	for _, t := range totesys.Tables {
		ingestPrefixes = append(ingestPrefixes, t.Name+"/")
	}
	transformPrefixes := []string{lake.ManifestPrefix, lake.StatePrefix}
	for _, t := range star.Tables {
		transformPrefixes = append(transformPrefixes, t.Name+"/")
	}
	return map[string]access{
		"ingest":    {read: []string{envIngestBucket}, write: envIngestBucket, writePrefixes: ingestPrefixes, secrets: []string{envSourceSecret}},
		"transform": {read: []string{envIngestBucket, envProcessedBucket}, write: envProcessedBucket, writePrefixes: transformPrefixes},
		"load":      {read: []string{envProcessedBucket}, secrets: []string{envWarehouseSecret}},
		"audit": {read: []string{envIngestBucket}, write: envIngestBucket, writePrefixes: []string{auditReportPrefix},
			onlyPrefixes: true, secrets: []string{envSourceSecret}},
	}
}

// accessOf is what the function of stage may touch given its environment:
// the audit creates objects under audits/ only, and where ingest does only
// when SANDSTONE_AUDIT_REPAIR is true; it reads the processed bucket and
// the warehouse secret only when its environment names them (the
// warehouse check).
func accessOf(stage string, env map[string]string) (access, bool) {
	a, ok := stageAccess()[stage]
	if stage != "audit" {
		return a, ok
	}
	if env[envAuditRepair] == "true" {
		a.writePrefixes = append(slices.Clone(a.writePrefixes), stageAccess()["ingest"].writePrefixes...)
	}
	if env[envProcessedBucket] != "" || env[envWarehouseSecret] != "" {
		a.read = append(slices.Clone(a.read), envProcessedBucket)
		a.secrets = append(slices.Clone(a.secrets), envWarehouseSecret)
	}
	return a, true
}

// scheduled are the stages EventBridge Scheduler starts: ingest, the
// sweeps of transform and load on the same schedule, and the audit.
var scheduled = []string{"ingest", "transform", "load", "audit"}

// Each bucket is written by one stage, and its manifests start the next.
var (
	bucketWriter   = map[string]string{envIngestBucket: "ingest", envProcessedBucket: "transform"}
	bucketNotifies = map[string]string{envIngestBucket: "transform", envProcessedBucket: "load"}
)

// problems collects what is wrong with a configuration.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// lambdaFn is one Lambda function as the checks see it.
type lambdaFn struct {
	stage   string
	access  access
	node    *node
	names   []string // its function_name, and the symbolic reference to it
	arn     string
	env     map[string]string
	buckets map[string]string // env var -> bucket resource address
	timeout float64
}

func (f *lambdaFn) named(s string) bool {
	return s != "" && (slices.Contains(f.names, s) || s == f.arn)
}

// alarm is one CloudWatch metric alarm.
type alarm struct {
	node        *node
	name        string
	namespace   string
	metric      string
	dims        map[string]string
	threshold   float64
	comparison  string
	description string
	actions     []string
	// queries are its metric_query blocks (metric math), if any.
	queries      []metricQuery
	treatMissing string
	// insufficient are its insufficient_data_actions.
	insufficient []string
	// window is period × evaluation_periods in seconds, datapoints the
	// datapoints_to_alarm (evaluation_periods when unset).
	window, evaluations, datapoints float64
}

// metricQuery is one metric_query of an alarm: an expression, or a metric.
type metricQuery struct {
	id, expression    string
	namespace, metric string
	stat              string
	period            float64
	dims              map[string]string
	returnData        bool
}

// statement is one IAM policy statement.
type statement struct {
	effect                  string
	actions, notActions     []string
	resources, notResources []string
	principals              map[string][]string
	conditions              []condition
}

// condition is one condition of a policy statement.
type condition struct {
	test, variable string
	values         []string
}

// check runs every wiring check on the main configuration.
func check(m *module) problems {
	var p problems
	checkDescriptions(m, &p)
	fns := checkFunctions(m, &p)
	alarms := alarmsOf(m)
	for _, stage := range sortedStages(fns) {
		f := fns[stage]
		checkLogging(m, f, alarms, &p)
		dlq := checkDeadLetter(m, f, alarms, &p)
		checkRole(m, f, dlq, &p)
		checkLambdaAlarms(f, alarms, &p)
	}
	checkVPC(m, fns, &p)
	checkNotifications(m, fns, &p)
	checkSchedule(m, fns, &p)
	checkHeartbeats(m, fns, alarms, &p)
	checkBucketPolicies(m, fns, &p)
	checkZipPath(fns, &p)
	checkAudit(m, fns, alarms, &p)
	checkBuckets(m, fns, &p)
	checkAlarmActions(m, alarms, &p)
	checkFreshness(m, alarms, &p)
	checkNoDeletes(m, &p)
	checkSecrets(m, &p)
	checkGlue(m, fns, &p)
	for _, e := range m.errs {
		p.add("cannot evaluate %s", e)
	}
	return p
}

func sortedStages(fns map[string]*lambdaFn) []string {
	out := make([]string, 0, len(fns))
	for s := range fns {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// checkDescriptions: every variable and output says what it is.
func checkDescriptions(m *module, p *problems) {
	for name, v := range m.variables {
		if strings.TrimSpace(v.description) == "" {
			p.add("variable %s has no description", name)
		}
	}
	for name, b := range m.outputs {
		if _, ok := b.Body.Attributes["description"]; !ok {
			p.add("output %s has no description", name)
		}
	}
}

var bucketURL = regexp.MustCompile(`^s3://\$\{(aws_s3_bucket\.[^}]+)\.(?:bucket|id)\}\?region=.+$`)

// checkFunctions finds one function per stage, built as the bootstrap needs,
// and the buckets and secret its environment names.
func checkFunctions(m *module, p *problems) map[string]*lambdaFn {
	want := stageAccess()
	fns := map[string]*lambdaFn{}
	for _, n := range m.instances("aws_lambda_function") {
		env := n.block("environment").strMap("variables")
		stage := env[envStage]
		a, known := accessOf(stage, env)
		switch {
		case stage == "":
			p.add("%s: no %s in its environment", n.addr, envStage)
			continue
		case !known:
			p.add("%s: unknown stage %q", n.addr, stage)
			continue
		case fns[stage] != nil:
			p.add("two functions for stage %s: %s and %s", stage, fns[stage].node.addr, n.addr)
			continue
		}
		f := &lambdaFn{stage: stage, access: a, node: n, arn: n.ref("arn"), env: env, buckets: map[string]string{},
			names: []string{n.str("function_name"), n.ref("function_name")}}
		fns[stage] = f
		if got := n.str("runtime"); got != "provided.al2023" {
			p.add("%s: runtime %q, want provided.al2023", n.addr, got)
		}
		if got := n.strs("architectures"); !slices.Equal(got, []string{"arm64"}) {
			p.add("%s: architectures %v, want [arm64]", n.addr, got)
		}
		got, reserved := n.num("reserved_concurrent_executions")
		switch want, wanted := reservedConcurrency(m, stage); {
		case wanted && got != want:
			p.add("%s: reserved_concurrent_executions %v, want %v (reserved_concurrency)", n.addr, got, want)
		case !wanted && reserved:
			p.add("%s: reserved_concurrent_executions %v, but reserved_concurrency leaves %s unreserved (each reservation counts against the account's quota)", n.addr, got, stage)
		}
		var ok bool
		if f.timeout, ok = n.num("timeout"); !ok || f.timeout <= 0 || f.timeout > 900 {
			p.add("%s: timeout must be 1-900 seconds", n.addr)
		}
		if _, ok := n.num("memory_size"); !ok {
			p.add("%s: memory_size must be set", n.addr)
		}
		for _, env := range append(slices.Clone(a.read), a.write) {
			if env == "" || f.buckets[env] != "" {
				continue
			}
			match := bucketURL.FindStringSubmatch(f.env[env])
			if match == nil {
				p.add("%s: %s = %q does not name a bucket of this configuration (s3://BUCKET?region=...)", n.addr, env, f.env[env])
				continue
			}
			f.buckets[env] = match[1]
		}
		for _, env := range []string{envSourceSecret, envWarehouseSecret} {
			if !slices.Contains(a.secrets, env) && f.env[env] != "" {
				p.add("%s: the %s function is given %s, which it does not need", n.addr, stage, env)
			}
		}
		for _, secret := range a.secrets {
			if !regexp.MustCompile(`^\$\{aws_secretsmanager_secret\.[^}]+\.arn\}$`).MatchString(f.env[secret]) {
				p.add("%s: %s = %q is not a secret of this configuration", n.addr, secret, f.env[secret])
			}
		}
		if stage == "audit" && f.env[envAuditRepair] != "true" && f.env[envAuditRepair] != "false" {
			p.add("%s: %s = %q, want \"true\" or \"false\"", n.addr, envAuditRepair, f.env[envAuditRepair])
		}
	}
	for stage := range want {
		if fns[stage] == nil {
			p.add("no function for stage %s", stage)
		}
	}
	// The audit decides what is pending with ingest's lookback.
	if in, au := fns["ingest"], fns["audit"]; in != nil && au != nil && au.env[envLookback] != in.env[envLookback] {
		p.add("%s: %s = %q, but ingest's is %q: the audit would call pending rows missing, or miss some", au.node.addr, envLookback, au.env[envLookback], in.env[envLookback])
	}
	return fns
}

// reservedConcurrency is what variable reserved_concurrency reserves for
// stage, and whether it reserves any.
func reservedConcurrency(m *module, stage string) (float64, bool) {
	v := m.variables["reserved_concurrency"]
	if v == nil || v.value.IsNull() || !v.value.CanIterateElements() {
		return 0, false
	}
	e, ok := v.value.AsValueMap()[stage]
	if !ok {
		return 0, false
	}
	return asNumber(e)
}

// vpcConfig is the function's vpc_config (written out or as a dynamic
// block): its subnets and security groups, and whether it has one.
func vpcConfig(n *node) (subnets, groups []string, ok bool) {
	body := dynblock.Expand(n.body, n.ctx)
	content, _, diags := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "vpc_config"}}})
	for _, b := range content.Blocks {
		c, _, d := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "subnet_ids"}, {Name: "security_group_ids"}}})
		diags = append(diags, d...)
		for name, out := range map[string]*[]string{"subnet_ids": &subnets, "security_group_ids": &groups} {
			if a, found := c.Attributes[name]; found {
				v, d := a.Expr.Value(n.ctx)
				diags = append(diags, d...)
				*out = asStrings(v)
			}
		}
		ok = true
	}
	if diags.HasErrors() {
		*n.errs = append(*n.errs, fmt.Sprintf("%s: vpc_config: %s", n.addr, diags.Error()))
	}
	return subnets, groups, ok
}

// eniActions are what Lambda does with the role of a function in a VPC
// (AWSLambdaVPCAccessExecutionRole): EC2 authorizes them on "*" only.
var eniActions = []string{
	"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
	"ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}

// dbStages are the stages that reach a database: with vpc_subnet_ids they
// run in the VPC; transform never does.
var dbStages = []string{"ingest", "load", "audit"}

// checkVPC: with vpc_subnet_ids, each function that reaches a database runs
// in those subnets with vpc_security_group_ids, transform outside; without,
// none runs in a VPC.
func checkVPC(m *module, fns map[string]*lambdaFn, p *problems) {
	var subnets, groups []string
	if v := m.variables["vpc_subnet_ids"]; v != nil {
		subnets = asStrings(v.value)
	}
	if v := m.variables["vpc_security_group_ids"]; v != nil {
		groups = asStrings(v.value)
	}
	for _, stage := range sortedStages(fns) {
		f := fns[stage]
		s, g, in := vpcConfig(f.node)
		switch {
		case len(subnets) > 0 && slices.Contains(dbStages, stage) && (!in || !slices.Equal(s, subnets) || !slices.Equal(g, groups)):
			p.add("%s: vpc_config %v %v, want subnets %v and security groups %v (vpc_subnet_ids): it reaches a database", f.node.addr, s, g, subnets, groups)
		case (len(subnets) == 0 || !slices.Contains(dbStages, stage)) && in:
			p.add("%s: in a VPC, but it reaches no database or vpc_subnet_ids is empty", f.node.addr)
		}
	}
}

// logGroupOf is the log group the function writes to.
func logGroupOf(m *module, f *lambdaFn) *node {
	name := f.node.block("logging_config").str("log_group")
	if name == "" {
		name = "/aws/lambda/" + f.node.str("function_name")
	}
	for _, lg := range m.instances("aws_cloudwatch_log_group") {
		if name == lg.ref("name") || name == lg.str("name") {
			return lg
		}
	}
	return nil
}

// checkLogging: the function has its log group, with retention, a metric
// filter counting its ERROR lines by kind, and an alarm for every kind.
func checkLogging(m *module, f *lambdaFn, alarms []*alarm, p *problems) {
	lg := logGroupOf(m, f)
	if lg == nil {
		p.add("%s: no log group of its own", f.node.addr)
		return
	}
	for _, other := range m.instances("aws_lambda_function") {
		if other != f.node && other.str("function_name") != "" && logGroupOf(m, &lambdaFn{node: other}) == lg {
			p.add("%s shares its log group with %s", f.node.addr, other.addr)
		}
	}
	if days, ok := lg.num("retention_in_days"); !ok || days <= 0 {
		p.add("%s: no retention_in_days", lg.addr)
	}
	var namespace, metric, dim string
	for _, mf := range m.instances("aws_cloudwatch_log_metric_filter") {
		group := mf.str("log_group_name")
		if group != lg.ref("name") && group != lg.str("name") {
			continue
		}
		if !strings.Contains(strings.ReplaceAll(mf.str("pattern"), " ", ""), `$.level="ERROR"`) {
			continue
		}
		mt := mf.block("metric_transformation")
		for k, v := range mt.strMap("dimensions") {
			if v == "$.error_kind" {
				namespace, metric, dim = mt.str("namespace"), mt.str("name"), k
			}
		}
	}
	if metric == "" {
		p.add("%s: no metric filter on %s counting ERROR lines ({ $.level = \"ERROR\" }) by $.error_kind", f.node.addr, lg.addr)
		return
	}
	for _, kind := range errkind.All {
		var found *alarm
		for _, a := range alarms {
			if a.namespace == namespace && a.metric == metric && a.dims[dim] == string(kind) {
				found = a
			}
		}
		if found == nil {
			p.add("%s: no alarm on ERROR lines of kind %s", f.node.addr, kind)
			continue
		}
		if !strings.Contains(found.description, f.node.str("function_name")) || !strings.Contains(found.description, string(kind)) {
			p.add("%s: alarm_description must name the function %s and the error kind %s", found.node.addr, f.node.str("function_name"), kind)
		}
		if !strings.HasPrefix(found.comparison, "GreaterThan") {
			p.add("%s: comparison_operator %s does not fire on errors", found.node.addr, found.comparison)
		}
	}
}

// checkLambdaAlarms: alarms on the function's duration and throttles.
func checkLambdaAlarms(f *lambdaFn, alarms []*alarm, p *problems) {
	var duration, throttles bool
	for _, a := range alarms {
		if a.namespace != "AWS/Lambda" || !f.named(a.dims["FunctionName"]) {
			continue
		}
		switch a.metric {
		case "Duration":
			duration = true
			if limit := f.timeout * 1000; a.threshold <= 0 || a.threshold >= limit || !strings.HasPrefix(a.comparison, "GreaterThan") {
				p.add("%s: duration alarm threshold %v ms must be below the %v ms timeout", a.node.addr, a.threshold, limit)
			}
		case "Throttles":
			throttles = true
		}
	}
	if !duration {
		p.add("%s: no alarm on duration near the timeout", f.node.addr)
	}
	if !throttles {
		p.add("%s: no alarm on throttles", f.node.addr)
	}
}

// checkDeadLetter: failed asynchronous invocations go to an SQS queue that
// has an alarm on its depth. It returns the queue's ARN reference.
func checkDeadLetter(m *module, f *lambdaFn, alarms []*alarm, p *problems) string {
	for _, c := range m.instances("aws_lambda_function_event_invoke_config") {
		if !f.named(c.str("function_name")) {
			continue
		}
		if _, ok := c.num("maximum_retry_attempts"); !ok {
			p.add("%s: maximum_retry_attempts is not set: Lambda retries a failed event twice by default", c.addr)
		}
		dest := c.block("destination_config").block("on_failure").str("destination")
		for _, q := range m.instances("aws_sqs_queue") {
			if dest != q.ref("arn") {
				continue
			}
			watched := false
			for _, a := range alarms {
				qn := a.dims["QueueName"]
				if a.namespace == "AWS/SQS" && a.metric == "ApproximateNumberOfMessagesVisible" && qn != "" && (qn == q.ref("name") || qn == q.str("name")) {
					watched = true
				}
			}
			if !watched {
				p.add("%s: no alarm on the depth of dead-letter queue %s", f.node.addr, q.addr)
			}
			return dest
		}
	}
	p.add("%s: no dead-letter queue (aws_lambda_function_event_invoke_config with on_failure to an SQS queue)", f.node.addr)
	return ""
}

// grant is one action the function may have on the resources match accepts.
type grant struct {
	action   string
	what     string
	match    func(string) bool
	required bool
}

func exact(ref string) func(string) bool { return func(r string) bool { return r == ref } }

// within accepts any object key of the bucket.
func within(bucketARN string) func(string) bool {
	return func(r string) bool { return strings.HasPrefix(r, bucketARN+"/") }
}

// prefixed accepts the objects under one named key prefix of the bucket
// ("BUCKET/manifests/*"), not the whole bucket.
func prefixed(bucketARN string) func(string) bool {
	return func(r string) bool {
		rest, ok := strings.CutPrefix(r, bucketARN+"/")
		return ok && len(rest) > 2 && strings.HasSuffix(rest, "/*") && !strings.Contains(strings.TrimSuffix(rest, "*"), "*")
	}
}

// checkRole: the function's role may be assumed by Lambda and its policies
// name only the function's own buckets, prefixes, secret, log group and
// dead-letter queue; and they allow what the function needs.
func checkRole(m *module, f *lambdaFn, dlq string, p *problems) {
	role := roleOf(m, f.node.str("role"))
	if role == nil {
		p.add("%s: role is not an aws_iam_role of this configuration", f.node.addr)
		return
	}
	if !trusts(m.statements(role.value("assume_role_policy"), p), "lambda.amazonaws.com") {
		p.add("%s: Lambda may not assume %s", f.node.addr, role.addr)
	}
	a := f.access
	var grants []grant
	for _, env := range a.read {
		if b := f.buckets[env]; b != "" {
			arn := "${" + b + ".arn}"
			grants = append(grants,
				grant{"s3:ListBucket", "bucket " + b, exact(arn), true},
				grant{"s3:GetObject", "objects of " + b, within(arn), true})
		}
	}
	var writeARN string
	if b := f.buckets[a.write]; b != "" {
		writeARN = "${" + b + ".arn}"
		match := prefixed(writeARN)
		if a.onlyPrefixes {
			match = func(r string) bool {
				return slices.ContainsFunc(a.writePrefixes, func(p string) bool { return r == writeARN+"/"+p+"*" })
			}
		}
		grants = append(grants,
			grant{"s3:PutObject", "key prefixes of " + b, match, true},
			grant{"s3:AbortMultipartUpload", "key prefixes of " + b, match, false})
	}
	for _, secret := range a.secrets {
		if f.env[secret] != "" {
			grants = append(grants, grant{"secretsmanager:GetSecretValue", "its secret " + secret, exact(f.env[secret]), true})
		}
	}
	if lg := logGroupOf(m, f); lg != nil {
		logs := func(r string) bool { return r == lg.ref("arn")+":*" || r == lg.ref("arn") }
		grants = append(grants,
			grant{"logs:CreateLogStream", "its log group", logs, true},
			grant{"logs:PutLogEvents", "its log group", logs, true})
	}
	if dlq != "" {
		grants = append(grants, grant{"sqs:SendMessage", "the dead-letter queue", exact(dlq), true})
	}
	_, _, inVPC := vpcConfig(f.node)
	if inVPC {
		for _, act := range eniActions {
			grants = append(grants, grant{act, "its network interfaces (in a VPC)", exact("*"), true})
		}
	}

	stmts := rolePolicies(m, role, p)
	have := map[int]bool{}
	var puts []string
	for _, s := range stmts {
		if s.effect != "Allow" {
			continue
		}
		if len(s.notActions)+len(s.notResources) > 0 {
			p.add("%s: NotAction/NotResource grant more than they name", role.addr)
		}
		for _, act := range s.actions {
			if strings.Contains(act, "*") {
				p.add("%s (%s): wildcard action %q", role.addr, f.stage, act)
				continue
			}
			if strings.HasPrefix(strings.ToLower(act), "s3:delete") {
				p.add("%s (%s): %s would let it delete objects, but the buckets are write-once", role.addr, f.stage, act)
				continue
			}
			for _, res := range s.resources {
				if res == "*" && (!inVPC || !slices.Contains(eniActions, act)) {
					p.add("%s (%s): %s on resource \"*\"", role.addr, f.stage, act)
					continue
				}
				ok := false
				for i, g := range grants {
					if strings.EqualFold(g.action, act) && g.match(res) {
						ok, have[i] = true, true
					}
				}
				if !ok {
					p.add("%s (%s): %s on %s is not the %s function's to have", role.addr, f.stage, act, res, f.stage)
				}
				if strings.EqualFold(act, "s3:PutObject") && writeARN != "" {
					puts = append(puts, strings.TrimPrefix(res, writeARN+"/"))
				}
			}
		}
	}
	for i, g := range grants {
		if g.required && !have[i] {
			p.add("%s (%s): does not allow %s on %s, which the function needs", role.addr, f.stage, g.action, g.what)
		}
	}
	for _, prefix := range a.writePrefixes {
		if writeARN != "" && !slices.Contains(puts, prefix+"*") {
			p.add("%s (%s): does not allow s3:PutObject under %s, where the function writes", role.addr, f.stage, prefix)
		}
	}
}

func roleOf(m *module, ref string) *node {
	for _, r := range m.instances("aws_iam_role") {
		if ref == r.ref("arn") {
			return r
		}
	}
	return nil
}

// rolePolicies are the statements of every policy of the role; managed
// policies are refused, since they name resources that are not the
// function's own.
func rolePolicies(m *module, role *node, p *problems) []statement {
	refs := []string{role.ref("id"), role.ref("name"), role.str("name")}
	var stmts []statement
	for _, rp := range m.instances("aws_iam_role_policy") {
		if r := rp.str("role"); r != "" && slices.Contains(refs, r) {
			stmts = append(stmts, m.statements(rp.value("policy"), p)...)
		}
	}
	for _, ip := range role.blocks("inline_policy") {
		stmts = append(stmts, m.statements(ip.value("policy"), p)...)
	}
	for _, att := range m.instances("aws_iam_role_policy_attachment") {
		if r := att.str("role"); r != "" && slices.Contains(refs, r) {
			p.add("%s: managed policy %s attached to %s", att.addr, att.str("policy_arn"), role.addr)
		}
	}
	if role.has("managed_policy_arns") {
		p.add("%s: managed_policy_arns attaches managed policies", role.addr)
	}
	return stmts
}

// trusts reports whether the statements let the service assume the role.
func trusts(stmts []statement, service string) bool {
	for _, s := range stmts {
		if s.effect == "Allow" && slices.Contains(s.actions, "sts:AssumeRole") && slices.Contains(s.principals["Service"], service) {
			return true
		}
	}
	return false
}

// statements reads a policy: a reference to an aws_iam_policy_document data
// source, or JSON (jsonencode or a heredoc).
func (m *module) statements(policy cty.Value, p *problems) []statement {
	text := asString(policy)
	if doc := m.dataInstance(text); doc != nil {
		if !strings.HasPrefix(doc.addr, "data.aws_iam_policy_document.") {
			p.add("policy %s is not an aws_iam_policy_document", text)
			return nil
		}
		return m.documentStatements(doc, p)
	}
	var doc struct {
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		p.add("cannot read policy %q: %v", text, err)
		return nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(doc.Statement, &raws); err != nil {
		raws = []json.RawMessage{doc.Statement}
	}
	var out []statement
	for _, raw := range raws {
		var s struct {
			Effect                                   string
			Action, NotAction, Resource, NotResource json.RawMessage
			Principal                                json.RawMessage
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			p.add("cannot read policy statement %s: %v", raw, err)
			continue
		}
		st := statement{effect: s.Effect, actions: oneOrMany(s.Action), notActions: oneOrMany(s.NotAction),
			resources: oneOrMany(s.Resource), notResources: oneOrMany(s.NotResource), principals: map[string][]string{}}
		var principals map[string]json.RawMessage
		if json.Unmarshal(s.Principal, &principals) == nil {
			for k, v := range principals {
				st.principals[k] = oneOrMany(v)
			}
		} else if len(s.Principal) > 0 {
			st.principals["*"] = oneOrMany(s.Principal)
		}
		out = append(out, st)
	}
	return out
}

func oneOrMany(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

func (m *module) documentStatements(doc *node, p *problems) []statement {
	var out []statement
	for _, src := range append(doc.strs("source_policy_documents"), doc.strs("override_policy_documents")...) {
		out = append(out, m.statements(cty.StringVal(src), p)...)
	}
	if len(doc.blocks("dynamic")) > 0 {
		p.add("%s: dynamic blocks cannot be checked; write the statements out", doc.addr)
	}
	for _, b := range doc.blocks("statement") {
		s := statement{effect: b.str("effect"), actions: b.strs("actions"), notActions: b.strs("not_actions"),
			resources: b.strs("resources"), notResources: b.strs("not_resources"), principals: map[string][]string{}}
		if s.effect == "" {
			s.effect = "Allow"
		}
		for _, pr := range b.blocks("principals") {
			s.principals[pr.str("type")] = append(s.principals[pr.str("type")], pr.strs("identifiers")...)
		}
		for _, c := range b.blocks("condition") {
			s.conditions = append(s.conditions, condition{c.str("test"), c.str("variable"), c.strs("values")})
		}
		out = append(out, s)
	}
	return out
}

func alarmsOf(m *module) []*alarm {
	var out []*alarm
	for _, n := range m.instances("aws_cloudwatch_metric_alarm") {
		t, _ := n.num("threshold")
		a := &alarm{node: n, name: n.str("alarm_name"), namespace: n.str("namespace"), metric: n.str("metric_name"),
			dims: n.strMap("dimensions"), threshold: t, comparison: n.str("comparison_operator"),
			description: n.str("alarm_description"), actions: n.strs("alarm_actions"), treatMissing: n.str("treat_missing_data"),
			insufficient: n.strs("insufficient_data_actions")}
		period, _ := n.num("period")
		evals, _ := n.num("evaluation_periods")
		a.window, a.evaluations, a.datapoints = period*evals, evals, evals
		if d, ok := n.num("datapoints_to_alarm"); ok {
			a.datapoints = d
		}
		for _, q := range n.blocks("metric_query") {
			mq := q.block("metric")
			period, _ := mq.num("period")
			a.queries = append(a.queries, metricQuery{id: q.str("id"), expression: q.str("expression"), returnData: q.boolean("return_data"),
				namespace: mq.str("namespace"), metric: mq.str("metric_name"), dims: mq.strMap("dimensions"),
				stat: mq.str("stat"), period: period})
		}
		out = append(out, a)
	}
	return out
}

// checkNotifications: new manifests in each bucket start the next stage,
// and S3 may invoke it.
func checkNotifications(m *module, fns map[string]*lambdaFn, p *problems) {
	type expected struct {
		bucket string // resource address
		target *lambdaFn
		seen   bool
	}
	var want []*expected
	for env, writer := range bucketNotifies {
		w, t := fns[bucketWriter[env]], fns[writer]
		if w == nil || t == nil || w.buckets[env] == "" {
			continue
		}
		want = append(want, &expected{bucket: w.buckets[env], target: t})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].bucket < want[j].bucket })
	for _, n := range m.instances("aws_s3_bucket_notification") {
		var e *expected
		for _, w := range want {
			if b := n.str("bucket"); b == "${"+w.bucket+".id}" || b == "${"+w.bucket+".bucket}" {
				e = w
			}
		}
		if e == nil {
			if len(n.blocks("lambda_function")) > 0 {
				p.add("%s: notifies a function about a bucket no stage writes", n.addr)
			}
			continue
		}
		for _, lf := range n.blocks("lambda_function") {
			target := lf.str("lambda_function_arn")
			if target != e.target.arn {
				p.add("%s: manifests of %s must start the %s function, not %s", n.addr, e.bucket, e.target.stage, target)
				continue
			}
			e.seen = true
			if got := lf.str("filter_prefix"); got != lake.ManifestPrefix {
				p.add("%s: filter_prefix %q, want %q (manifests only)", n.addr, got, lake.ManifestPrefix)
			}
			if got := lf.str("filter_suffix"); got != ".json" {
				p.add("%s: filter_suffix %q, want \".json\" (manifests only)", n.addr, got)
			}
			if events := lf.strs("events"); !slices.Contains(events, "s3:ObjectCreated:*") && !slices.Contains(events, "s3:ObjectCreated:Put") {
				p.add("%s: events %v do not include object creation", n.addr, events)
			}
		}
	}
	for _, e := range want {
		if !e.seen {
			p.add("no S3 notification from %s starts the %s function", e.bucket, e.target.stage)
			continue
		}
		permitted := false
		for _, perm := range m.instances("aws_lambda_permission") {
			if e.target.named(perm.str("function_name")) && perm.str("principal") == "s3.amazonaws.com" &&
				perm.str("source_arn") == "${"+e.bucket+".arn}" && perm.str("action") == "lambda:InvokeFunction" {
				permitted = true
			}
		}
		if !permitted {
			p.add("no aws_lambda_permission lets %s invoke the %s function", e.bucket, e.target.stage)
		}
	}
}

// checkSchedule: EventBridge Scheduler starts ingest, transform and load
// (the sweeps) on the pipeline's schedule, and the audit unless
// audit_schedule_expression is "", each from one schedule, and nothing
// else; a schedule's role may invoke only the functions its schedules start,
// and the audit's schedule has a role of its own.
func checkSchedule(m *module, fns map[string]*lambdaFn, p *problems) {
	startedBy := map[string]string{}
	type roleUse struct {
		node   *node
		stages []string
	}
	roles := map[string]*roleUse{}
	var order []string
	for _, s := range m.instances("aws_scheduler_schedule") {
		t := s.block("target")
		var f *lambdaFn
		for _, stage := range scheduled {
			if fn := fns[stage]; fn != nil && t.str("arn") == fn.arn {
				f = fn
			}
		}
		if f == nil {
			p.add("%s: starts %s; only the ingest, transform, load and audit functions run on a schedule", s.addr, t.str("arn"))
			continue
		}
		if other := startedBy[f.stage]; other != "" {
			p.add("%s and %s both start the %s function", other, s.addr, f.stage)
		}
		startedBy[f.stage] = s.addr
		expr := s.str("schedule_expression")
		switch {
		case expr == "":
			p.add("%s: no schedule_expression", s.addr)
		case f.stage != "audit" && expr != pipelineSchedule(m):
			p.add("%s: runs on %q, not on the pipeline's schedule_expression %q", s.addr, expr, pipelineSchedule(m))
		}
		state := s.str("state")
		if state == "" {
			state = "ENABLED" // the provider's default
		}
		if want := scheduleState(m); state != want {
			p.add("%s: state %s, want %s: a schedule runs only once the secrets are set (secrets_set), or every tick fails on an empty secret", s.addr, state, want)
		}
		if in := t.str("input"); t.has("input") && !json.Valid([]byte(in)) {
			p.add("%s: target input %q is not JSON", s.addr, in)
		}
		role := roleOf(m, t.str("role_arn"))
		if role == nil {
			p.add("%s: target role_arn is not an aws_iam_role of this configuration", s.addr)
			continue
		}
		if roles[role.addr] == nil {
			roles[role.addr] = &roleUse{node: role}
			order = append(order, role.addr)
		}
		roles[role.addr].stages = append(roles[role.addr].stages, f.stage)
	}
	for _, addr := range order {
		use := roles[addr]
		role := use.node
		slices.Sort(use.stages)
		use.stages = slices.Compact(use.stages)
		if slices.Contains(use.stages, "audit") && len(use.stages) > 1 {
			p.add("%s: the audit's schedule must have a role of its own, not one shared with %v", role.addr, use.stages)
		}
		if !trusts(m.statements(role.value("assume_role_policy"), p), "scheduler.amazonaws.com") {
			p.add("EventBridge Scheduler may not assume %s", role.addr)
		}
		invokes := map[string]bool{}
		for _, st := range rolePolicies(m, role, p) {
			if st.effect != "Allow" {
				continue
			}
			for _, act := range st.actions {
				for _, res := range st.resources {
					var target string
					for _, stage := range use.stages {
						if f := fns[stage]; act == "lambda:InvokeFunction" && (res == f.arn || res == f.arn+":*") {
							target = stage
						}
					}
					if target == "" {
						p.add("%s: the schedule's role may %s on %s; it needs only lambda:InvokeFunction on %s", role.addr, act, res, strings.Join(use.stages, ", "))
						continue
					}
					invokes[target] = true
				}
			}
		}
		for _, stage := range use.stages {
			if !invokes[stage] {
				p.add("%s: the schedule's role may not invoke %s", role.addr, stage)
			}
		}
	}
	for _, stage := range scheduled {
		if stage == "audit" && auditSchedule(m) == "" {
			continue
		}
		if fns[stage] != nil && startedBy[stage] == "" {
			p.add("no aws_scheduler_schedule starts the %s function", stage)
		}
	}
}

// scheduleState is what state the schedules must have: DISABLED until
// variable secrets_set says the secrets hold their values.
func scheduleState(m *module) string {
	if v := m.variables["secrets_set"]; v != nil && v.value.Type() == cty.Bool && v.value.True() {
		return "ENABLED"
	}
	return "DISABLED"
}

// pipelineSchedule is schedule_expression's value.
func pipelineSchedule(m *module) string {
	if v := m.variables["schedule_expression"]; v != nil {
		return asString(v.value)
	}
	return ""
}

// pipelineInterval is the seconds between ticks of the pipeline's
// schedule: a rate()'s, or schedule_interval_minutes for a cron().
func pipelineInterval(m *module) float64 {
	if match := rateExpression.FindStringSubmatch(pipelineSchedule(m)); match != nil {
		return scheduleInterval(pipelineSchedule(m))
	}
	if v := m.variables["schedule_interval_minutes"]; v != nil {
		if n, ok := asNumber(v.value); ok {
			return n * 60
		}
	}
	return 0
}

// quietUntilFirstRun reports whether a heartbeat alarm keeps quiet until
// its metric first has data, and fires when the data stop: missing data is
// missing (a new alarm stays in INSUFFICIENT_DATA, which sends nothing, and
// goes back to it when every datapoint of its window is missing), and the
// transition to INSUFFICIENT_DATA e-mails. Breaching would alarm from the
// alarm's creation, before any run was due.
func quietUntilFirstRun(m *module, a *alarm) bool {
	return a.treatMissing == "missing" && slices.ContainsFunc(a.insufficient, func(t string) bool { return slices.Contains(emailTopics(m), t) })
}

// emailTopics are the SNS topics with an e-mail subscription.
func emailTopics(m *module) []string {
	var topics []string
	for _, s := range m.instances("aws_sns_topic_subscription") {
		if s.str("protocol") == "email" && s.str("endpoint") != "" {
			topics = append(topics, s.str("topic_arn"))
		}
	}
	return topics
}

// checkHeartbeats: every stage the schedule starts has an alarm on its
// invocations (AWS/Lambda Invocations < 1) that keeps quiet until the
// first invocation (quietUntilFirstRun) and fires only when every period
// of its window had none; the window
// follows the schedule: at least two ticks (a late tick is not an alarm)
// and at most four, in periods CloudWatch accepts.
func checkHeartbeats(m *module, fns map[string]*lambdaFn, alarms []*alarm, p *problems) {
	interval := pipelineInterval(m)
	if interval <= 0 {
		p.add("the pipeline's schedule %q has no interval: a rate(), or a cron() with schedule_interval_minutes", pipelineSchedule(m))
		return
	}
	for _, stage := range []string{"ingest", "transform", "load"} {
		f := fns[stage]
		if f == nil {
			continue
		}
		var hb *alarm
		for _, a := range alarms {
			if a.namespace == "AWS/Lambda" && a.metric == "Invocations" && f.named(a.dims["FunctionName"]) {
				hb = a
			}
		}
		if hb == nil {
			p.add("%s: no alarm when it stops being invoked (AWS/Lambda Invocations)", f.node.addr)
			continue
		}
		period, _ := hb.node.num("period")
		switch {
		case hb.comparison != "LessThanThreshold" || hb.threshold != 1:
			p.add("%s: the heartbeat must fire below 1 invocation, not %s %v", hb.node.addr, hb.comparison, hb.threshold)
		case !quietUntilFirstRun(m, hb):
			p.add("%s: the heartbeat must treat missing data as missing and e-mail on INSUFFICIENT_DATA (quiet until the first invocation, firing when invocations stop)", hb.node.addr)
		case hb.datapoints != hb.evaluations:
			p.add("%s: the heartbeat fires on %v of %v periods without an invocation; want all of them", hb.node.addr, hb.datapoints, hb.evaluations)
		case hb.window < 2*interval || hb.window > 4*interval:
			p.add("%s: the heartbeat looks at %v s; the schedule %s ticks every %v s (want 2 to 4 ticks)", hb.node.addr, hb.window, pipelineSchedule(m), interval)
		case period < 60 || period > 3600 || int(period)%60 != 0 || hb.window > 7*86400:
			p.add("%s: period %v s × %v: CloudWatch takes whole minutes up to an hour, and at most 7 days", hb.node.addr, period, hb.evaluations)
		}
		if !strings.Contains(hb.description, f.node.str("function_name")) {
			p.add("%s: the heartbeat's description must name %s", hb.node.addr, f.node.str("function_name"))
		}
	}
}

// checkBucketPolicies: each bucket's policy refuses, for every principal,
// plain HTTP, an object-creating write without If-None-Match (so that
// nothing is overwritten), and any delete of an object or a version, except
// when force_destroy_buckets lifts the last rule for a teardown. No key
// prefix is exempt, since the pipeline rewrites no key.
func checkBucketPolicies(m *module, fns map[string]*lambdaFn, p *problems) {
	teardown := false
	if v := m.variables["force_destroy_buckets"]; v != nil && v.value.Type() == cty.Bool && v.value.True() {
		teardown = true
	}
	seen := map[string]bool{}
	for _, f := range fns {
		for _, b := range f.buckets {
			seen[b] = true
		}
	}
	for _, b := range slices.Sorted(maps.Keys(seen)) {
		arn, objects := "${"+b+".arn}", "${"+b+".arn}/*"
		var stmts []statement
		for _, bp := range m.instances("aws_s3_bucket_policy") {
			if ref := bp.str("bucket"); ref == "${"+b+".id}" || ref == "${"+b+".bucket}" {
				stmts = append(stmts, m.statements(bp.value("policy"), p)...)
			}
		}
		if len(stmts) == 0 {
			p.add("%s: no bucket policy", b)
			continue
		}
		everyone := func(s statement) bool {
			return s.effect == "Deny" && slices.Equal(s.principals["*"], []string{"*"})
		}
		has := func(s statement, c condition) bool {
			return slices.ContainsFunc(s.conditions, func(x condition) bool {
				return x.test == c.test && x.variable == c.variable && slices.Equal(x.values, c.values)
			})
		}
		var tls, put, del, ver bool
		for _, s := range stmts {
			if s.effect == "Allow" {
				p.add("%s: its policy allows %v; it should only deny", b, s.actions)
			}
			if !everyone(s) {
				continue
			}
			if slices.Contains(s.actions, "s3:*") && slices.Contains(s.resources, arn) && slices.Contains(s.resources, objects) &&
				has(s, condition{"Bool", "aws:SecureTransport", []string{"false"}}) {
				tls = true
			}
			if slices.Contains(s.actions, "s3:PutObject") && slices.Equal(s.resources, []string{objects}) && len(s.conditions) == 2 &&
				has(s, condition{"Null", "s3:if-none-match", []string{"true"}}) &&
				has(s, condition{"Bool", "s3:ObjectCreationOperation", []string{"true"}}) {
				put = true
			}
			if slices.Equal(s.resources, []string{objects}) && len(s.conditions) == 0 {
				del = del || slices.Contains(s.actions, "s3:DeleteObject")
				ver = ver || slices.Contains(s.actions, "s3:DeleteObjectVersion")
			}
		}
		if !tls {
			p.add("%s: its policy does not deny plain HTTP (aws:SecureTransport false)", b)
		}
		if !put {
			p.add("%s: its policy does not deny s3:PutObject on %s without if-none-match (Null s3:if-none-match, s3:ObjectCreationOperation true, nothing else)", b, objects)
		}
		switch {
		case teardown && (del || ver):
			p.add("%s: force_destroy_buckets is set, but its policy still denies deletes: the teardown could not empty it", b)
		case !teardown && !ver:
			p.add("%s: its policy does not deny s3:DeleteObjectVersion on %s", b, objects)
		case !teardown && !del:
			p.add("%s: its policy does not deny s3:DeleteObject on %s", b, objects)
		}
	}
}

// checkZipPath: the functions' zip is found from this directory
// (path.module), not from wherever terraform runs.
func checkZipPath(fns map[string]*lambdaFn, p *problems) {
	for _, stage := range sortedStages(fns) {
		f := fns[stage]
		if name := f.node.str("filename"); !strings.HasPrefix(name, "${path.module}/") {
			p.add("%s: filename %q is relative to the working directory; want one under path.module", f.node.addr, name)
		}
	}
}

// auditSchedule is audit_schedule_expression's value ("" for no schedule).
func auditSchedule(m *module) string {
	if v := m.variables["audit_schedule_expression"]; v != nil {
		return asString(v.value)
	}
	return ""
}

var rateExpression = regexp.MustCompile(`^rate\(([0-9]+) (minute|hour|day)s?\)$`)

// scheduleInterval is the seconds between runs of a schedule expression;
// a cron expression counts as daily.
func scheduleInterval(expr string) float64 {
	match := rateExpression.FindStringSubmatch(expr)
	if match == nil {
		return 86400
	}
	var n float64
	_, _ = fmt.Sscan(match[1], &n)
	return n * map[string]float64{"minute": 60, "hour": 3600, "day": 86400}[match[2]]
}

// queryMetric is the metric a metric_query of a names by id, or nil.
func (a *alarm) queryMetric(id string) *metricQuery {
	for i, q := range a.queries {
		if q.id == id && q.metric != "" {
			return &a.queries[i]
		}
	}
	return nil
}

// sums reports whether the alarm's returned expression adds up exactly the
// audit metrics named, each in namespace Sandstone with Stage = audit.
func (a *alarm) sums(metrics ...string) bool {
	for _, q := range a.queries {
		if !q.returnData || q.expression == "" {
			continue
		}
		var got []string
		for _, term := range strings.Split(q.expression, "+") {
			mq := a.queryMetric(strings.TrimSpace(term))
			if mq == nil || mq.namespace != "Sandstone" || mq.dims["Stage"] != "audit" || len(mq.dims) != 1 {
				return false
			}
			got = append(got, mq.metric)
		}
		sort.Strings(got)
		want := slices.Sorted(slices.Values(metrics))
		return slices.Equal(got, want)
	}
	return false
}

// checkAudit: an alarm fires on the audit's drift (DriftMissing +
// DriftDeleted > 0, Stage = audit), stays put between audits and says what
// to do; with the warehouse check, one on DriftWarehouse; with a schedule,
// one fires when no audit succeeds for longer than the schedule's interval.
func checkAudit(m *module, fns map[string]*lambdaFn, alarms []*alarm, p *problems) {
	f := fns["audit"]
	if f == nil {
		return
	}
	var drift *alarm
	for _, a := range alarms {
		if a.sums("DriftMissing", "DriftDeleted") {
			drift = a
		}
	}
	if drift == nil {
		p.add("no drift alarm on Sandstone DriftMissing + DriftDeleted (Stage = audit) in one metric-math expression")
	} else {
		if !(drift.comparison == "GreaterThanThreshold" && drift.threshold == 0) && !(drift.comparison == "GreaterThanOrEqualToThreshold" && drift.threshold == 1) {
			p.add("%s: the drift alarm must fire on any drift (> 0), not %s %v", drift.node.addr, drift.comparison, drift.threshold)
		}
		if drift.treatMissing == "breaching" {
			p.add("%s: treat_missing_data breaching: the hours between audits would be drift", drift.node.addr)
		}
		for _, want := range []string{"sandstone audit --repair", "SANDSTONE_AUDIT_REPAIR", f.node.str("function_name")} {
			if !strings.Contains(drift.description, want) {
				p.add("%s: the drift alarm's description must say what to do (%s)", drift.node.addr, want)
			}
		}
	}
	if slices.Contains(f.access.secrets, envWarehouseSecret) {
		found := false
		for _, a := range alarms {
			found = found || (a.namespace == "Sandstone" && a.metric == "DriftWarehouse" && a.dims["Stage"] == "audit" && strings.HasPrefix(a.comparison, "GreaterThan"))
		}
		if !found {
			p.add("%s: checks the warehouse, but no alarm on Sandstone DriftWarehouse (Stage = audit)", f.node.addr)
		}
	}
	expr := auditSchedule(m)
	if expr == "" {
		return
	}
	var stale *alarm
	for _, a := range alarms {
		if a.namespace == "Sandstone" && a.metric == "AuditSucceeded" && a.dims["Stage"] == "audit" {
			stale = a
		}
	}
	if stale == nil {
		p.add("%s: no alarm on audits that stop succeeding (Sandstone AuditSucceeded, Stage = audit)", f.node.addr)
		return
	}
	interval := scheduleInterval(expr)
	switch {
	case stale.comparison != "LessThanThreshold" || stale.threshold != 1:
		p.add("%s: the staleness alarm must fire below 1 successful audit, not %s %v", stale.node.addr, stale.comparison, stale.threshold)
	case !quietUntilFirstRun(m, stale):
		p.add("%s: the staleness alarm must treat missing data as missing and e-mail on INSUFFICIENT_DATA (quiet until the first audit, firing when audits stop)", stale.node.addr)
	case stale.window < interval+3600 || stale.window > 7*86400:
		p.add("%s: the staleness alarm looks at %v s; the schedule %s runs every %v s (want more, and at most 7 days)", stale.node.addr, stale.window, expr, interval)
	case stale.datapoints != stale.evaluations:
		p.add("%s: the staleness alarm fires on %v of %v hours without a successful audit; want all of them", stale.node.addr, stale.datapoints, stale.evaluations)
	}
}

// checkBuckets: both buckets block public access, encrypt, version and
// enforce bucket-owner ownership.
func checkBuckets(m *module, fns map[string]*lambdaFn, p *problems) {
	seen := map[string]bool{}
	for _, f := range fns {
		for _, b := range f.buckets {
			seen[b] = true
		}
	}
	var buckets []string
	for b := range seen {
		buckets = append(buckets, b)
	}
	sort.Strings(buckets)
	for _, b := range buckets {
		refs := []string{"${" + b + ".id}", "${" + b + ".bucket}"}
		of := func(typ string) []*node {
			var out []*node
			for _, n := range m.instances(typ) {
				if slices.Contains(refs, n.str("bucket")) {
					out = append(out, n)
				}
			}
			return out
		}
		ok := false
		for _, n := range of("aws_s3_bucket_public_access_block") {
			ok = ok || (n.boolean("block_public_acls") && n.boolean("block_public_policy") && n.boolean("ignore_public_acls") && n.boolean("restrict_public_buckets"))
		}
		if !ok {
			p.add("%s: public access is not fully blocked", b)
		}
		ok = false
		for _, n := range of("aws_s3_bucket_ownership_controls") {
			ok = ok || n.block("rule").str("object_ownership") == "BucketOwnerEnforced"
		}
		if !ok {
			p.add("%s: object ownership is not BucketOwnerEnforced", b)
		}
		ok = false
		for _, n := range of("aws_s3_bucket_versioning") {
			ok = ok || n.block("versioning_configuration").str("status") == "Enabled"
		}
		if !ok {
			p.add("%s: versioning is not enabled", b)
		}
		ok = false
		for _, n := range of("aws_s3_bucket_server_side_encryption_configuration") {
			alg := n.block("rule").block("apply_server_side_encryption_by_default").str("sse_algorithm")
			ok = ok || slices.Contains([]string{"AES256", "aws:kms", "aws:kms:dsse"}, alg)
		}
		if !ok {
			p.add("%s: no default server-side encryption", b)
		}
	}
}

// checkAlarmActions: every alarm e-mails through an SNS topic.
func checkAlarmActions(m *module, alarms []*alarm, p *problems) {
	topics := emailTopics(m)
	if len(topics) == 0 {
		p.add("no SNS topic has an e-mail subscription")
		return
	}
	for _, a := range alarms {
		ok := false
		for _, act := range a.actions {
			ok = ok || slices.Contains(topics, act)
		}
		if !ok {
			p.add("%s: alarm_actions do not notify the e-mail SNS topic", a.node.addr)
		}
	}
}

// checkFreshness: an alarm fires when load's BehindSourceSeconds exceeds the
// specification's 30 minutes.
func checkFreshness(_ *module, alarms []*alarm, p *problems) {
	for _, a := range alarms {
		if a.namespace == "Sandstone" && a.metric == "BehindSourceSeconds" && a.dims["Stage"] == "load" {
			if a.threshold != 1800 || !strings.HasPrefix(a.comparison, "GreaterThan") {
				p.add("%s: freshness alarm fires above %v s (%s), want above 1800 s by default", a.node.addr, a.threshold, a.comparison)
			}
			if a.treatMissing != "breaching" && !freshnessMissingAlarm(alarms, p) {
				p.add("%s: BehindSourceSeconds may go missing while ingest keeps landing rows, and no alarm fires (treat_missing_data breaching, or a metric-math alarm on ingest's Rows and load's BehindSourceSeconds)", a.node.addr)
			}
			return
		}
	}
	p.add("no freshness alarm on Sandstone BehindSourceSeconds (Stage = load)")
}

// freshnessMissingAlarm reports whether an alarm fires when ingest lands
// rows (Sandstone Rows, Stage = ingest, Sum) and load reports no freshness
// (BehindSourceSeconds, Stage = load, SampleCount) in two periods in a row, of
// at most half the freshness threshold each, and is quiet without data.
func freshnessMissingAlarm(alarms []*alarm, p *problems) bool {
	for _, a := range alarms {
		var landed, loaded string
		var period float64
		for _, q := range a.queries {
			if q.namespace != "Sandstone" || len(q.dims) != 1 {
				continue
			}
			switch {
			case q.metric == "Rows" && q.dims["Stage"] == "ingest" && q.stat == "Sum":
				landed, period = q.id, q.period
			case q.metric == "BehindSourceSeconds" && q.dims["Stage"] == "load" && q.stat == "SampleCount":
				loaded = q.id
			}
		}
		if landed == "" || loaded == "" {
			continue
		}
		want := fmt.Sprintf("IF(FILL(%s, 0) > 0 AND FILL(%s, 0) == 0, 1, 0)", landed, loaded)
		ok := slices.ContainsFunc(a.queries, func(q metricQuery) bool { return q.returnData && q.expression == want })
		switch {
		case !ok:
			p.add("%s: want the returned expression %s", a.node.addr, want)
		case a.comparison != "GreaterThanOrEqualToThreshold" || a.threshold != 1:
			p.add("%s: must fire at 1, not %s %v", a.node.addr, a.comparison, a.threshold)
		case a.evaluations != 2 || a.datapoints != 2:
			p.add("%s: must fire on 2 of 2 periods (a change loaded in the next period is not missing), not %v of %v", a.node.addr, a.datapoints, a.evaluations)
		case period <= 0 || 2*period > 1800:
			p.add("%s: period %v s: two of them must fit in the 1800 s freshness threshold", a.node.addr, period)
		case a.treatMissing != "notBreaching":
			p.add("%s: without any data it must keep quiet (notBreaching): not-running covers a stopped ingest", a.node.addr)
		default:
			return true
		}
	}
	return false
}

// checkNoDeletes: no policy document anywhere lets anyone delete objects.
func checkNoDeletes(m *module, p *problems) {
	for _, r := range m.resources {
		if !r.data || r.typ != "aws_iam_policy_document" {
			continue
		}
		for _, doc := range r.instances {
			for _, s := range m.documentStatements(doc, p) {
				if s.effect != "Allow" {
					continue
				}
				for _, act := range s.actions {
					a := strings.ToLower(act)
					if strings.HasPrefix(a, "s3:delete") || a == "s3:*" || a == "*" {
						p.add("%s allows %s: nothing may delete objects", doc.addr, act)
					}
				}
			}
		}
	}
}

// checkSecrets: credentials are set out of band, never in Terraform state.
func checkSecrets(m *module, p *problems) {
	for _, n := range m.instances("aws_secretsmanager_secret_version") {
		p.add("%s: a secret value in Terraform would sit in its state; set it out of band", n.addr)
	}
}

// starColumns are the Glue columns of the star tables: each column's name,
// its star type's Glue type and comment.
func starColumns() (map[string][][3]string, error) {
	out := map[string][][3]string{}
	for _, t := range star.Tables {
		for _, c := range t.Columns {
			if c.Type.Glue == "" {
				return nil, fmt.Errorf("%s.%s: star type %s has no Glue type", t.Name, c.Name, c.Type.Name)
			}
			out[t.Name] = append(out[t.Name], [3]string{c.Name, c.Type.Glue, c.Type.GlueComment})
		}
	}
	return out, nil
}

// checkGlue: one Glue table per star table over the processed bucket, with
// the columns and types of the Parquet that transform writes.
func checkGlue(m *module, fns map[string]*lambdaFn, p *problems) {
	want, err := starColumns()
	if err != nil {
		p.add("%v", err)
		return
	}
	var processed string
	if t := fns["transform"]; t != nil {
		processed = t.buckets[envProcessedBucket]
	}
	got := map[string]bool{}
	for _, n := range m.instances("aws_glue_catalog_table") {
		name := n.str("name")
		got[name] = true
		cols, ok := want[name]
		if !ok {
			p.add("%s: %s is not a star table", n.addr, name)
			continue
		}
		sd := n.block("storage_descriptor")
		if loc := sd.str("location"); processed != "" && loc != "s3://${"+processed+".bucket}/"+name+"/" {
			p.add("%s: location %q, want the %s/ prefix of %s", n.addr, loc, name, processed)
		}
		if !strings.Contains(sd.str("input_format"), "Parquet") {
			p.add("%s: not a Parquet table", n.addr)
		}
		var have [][3]string
		body := dynblock.Expand(sd.body, sd.ctx)
		content, _, diags := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "columns"}}})
		for _, b := range content.Blocks {
			// PartialContent, not JustAttributes: only it gives the
			// expressions the dynamic block's iterator.
			c, _, d := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "name"}, {Name: "type"}, {Name: "comment"}}})
			diags = append(diags, d...)
			var col [3]string
			for i, key := range []string{"name", "type", "comment"} {
				if a, ok := c.Attributes[key]; ok {
					v, d := a.Expr.Value(sd.ctx)
					diags = append(diags, d...)
					col[i] = asString(v)
				}
			}
			have = append(have, col)
		}
		if diags.HasErrors() {
			p.add("%s: columns: %s", n.addr, diags.Error())
		}
		if !slices.Equal(have, cols) {
			p.add("%s: columns %v, want %v (internal/contract/star)", n.addr, have, cols)
		}
	}
	for name := range want {
		if !got[name] {
			p.add("no Glue table for star table %s", name)
		}
	}
}
