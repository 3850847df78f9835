package terraform_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// variant parses the main configuration with some variables' defaults
// changed (HCL values), and fails on any problem the checks find.
func variant(t *testing.T, defaults map[string]string) *module {
	t.Helper()
	files := mainFiles(t)
	for name, value := range defaults {
		withDefault(t, files, name, value)
	}
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(m) {
		t.Error(p)
	}
	return m
}

// function is the instance of stage's function.
func stageFunction(t *testing.T, m *module, stage string) *node {
	t.Helper()
	for _, f := range m.instances("aws_lambda_function") {
		if strings.HasSuffix(f.addr, `["`+stage+`"]`) {
			return f
		}
	}
	t.Fatalf("no %s function", stage)
	return nil
}

// roleActions are the actions the role of stage's function allows.
func roleActions(t *testing.T, m *module, stage string) []string {
	t.Helper()
	var p problems
	var out []string
	for _, s := range rolePolicies(m, roleOf(m, stageFunction(t, m, stage).str("role")), &p) {
		if s.effect == "Allow" {
			out = append(out, s.actions...)
		}
	}
	if len(p) > 0 {
		t.Fatal(p)
	}
	return out
}

// TestFirstDeployIsQuiet: by default the schedules are disabled (the
// secrets are empty until set), Lambda does not retry a failed event,
// only ingest reserves concurrency, and no function is in a VPC; with
// secrets_set the schedules are enabled.
func TestFirstDeployIsQuiet(t *testing.T) {
	m := variant(t, nil)
	for _, s := range m.instances("aws_scheduler_schedule") {
		if got := s.str("state"); got != "DISABLED" {
			t.Errorf("%s: state %q on the first deploy, want DISABLED", s.addr, got)
		}
	}
	for _, c := range m.instances("aws_lambda_function_event_invoke_config") {
		if n, _ := c.num("maximum_retry_attempts"); n != 0 {
			t.Errorf("%s: %v async retries, want 0", c.addr, n)
		}
	}
	for _, stage := range []string{"ingest", "transform", "load", "audit"} {
		n, reserved := stageFunction(t, m, stage).num("reserved_concurrent_executions")
		if want := stage == "ingest"; reserved != want || (want && n != 1) {
			t.Errorf("%s: reserved concurrency %v (%v), want 1 for ingest only", stage, n, reserved)
		}
		if _, _, in := vpcConfig(stageFunction(t, m, stage)); in {
			t.Errorf("%s: in a VPC by default", stage)
		}
		if slices.ContainsFunc(roleActions(t, m, stage), func(a string) bool { return strings.HasPrefix(a, "ec2:") }) {
			t.Errorf("%s: EC2 permissions outside a VPC", stage)
		}
	}
	if n := len(m.instances("aws_vpc_endpoint")); n != 0 {
		t.Errorf("%d VPC endpoints by default", n)
	}

	m = variant(t, map[string]string{"secrets_set": "true"})
	for _, s := range m.instances("aws_scheduler_schedule") {
		if got := s.str("state"); got != "ENABLED" {
			t.Errorf("secrets_set: %s: state %q, want ENABLED", s.addr, got)
		}
	}
	files := mainFiles(t)
	re := regexp.MustCompile(`(variable "reserved_concurrency" \{(?s:.*?)\n  default = )\{\n    ingest = 1\n  \}`)
	if !re.Match(files["variables.tf"]) {
		t.Fatal("no default of reserved_concurrency")
	}
	files["variables.tf"] = re.ReplaceAll(files["variables.tf"], []byte("${1}{}"))
	m, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(m) {
		t.Error(p)
	}
	for _, f := range m.instances("aws_lambda_function") {
		if n, reserved := f.num("reserved_concurrent_executions"); reserved {
			t.Errorf("reserved_concurrency {}: %s reserves %v", f.addr, n)
		}
	}
}

// TestPrivateDatabases: with subnets and security groups, the functions
// that reach a database run in the VPC with the network-interface
// permissions, transform stays outside, and the endpoints are made on
// request; the checks catch a VPC function whose role lacks them.
func TestPrivateDatabases(t *testing.T) {
	vpc := map[string]string{
		"vpc_subnet_ids":                 `["subnet-a", "subnet-b"]`,
		"vpc_security_group_ids":         `["sg-fn"]`,
		"vpc_id":                         `"vpc-1"`,
		"create_s3_endpoint":             "true",
		"s3_endpoint_route_table_ids":    `["rtb-1"]`,
		"create_secretsmanager_endpoint": "true",
	}
	m := variant(t, vpc)
	for _, stage := range []string{"ingest", "transform", "load", "audit"} {
		subnets, groups, in := vpcConfig(stageFunction(t, m, stage))
		if want := stage != "transform"; in != want {
			t.Errorf("%s: in the VPC %v, want %v", stage, in, want)
			continue
		}
		actions := roleActions(t, m, stage)
		for _, a := range eniActions {
			if slices.Contains(actions, a) != in {
				t.Errorf("%s: %s allowed %v, in the VPC %v", stage, a, slices.Contains(actions, a), in)
			}
		}
		if in && (!slices.Equal(subnets, []string{"subnet-a", "subnet-b"}) || !slices.Equal(groups, []string{"sg-fn"})) {
			t.Errorf("%s: vpc_config %v %v", stage, subnets, groups)
		}
	}
	endpoints := map[string]*node{}
	for _, e := range m.instances("aws_vpc_endpoint") {
		endpoints[e.str("vpc_endpoint_type")] = e
	}
	if g := endpoints["Gateway"]; g == nil || g.str("service_name") != "com.amazonaws.eu-west-2.s3" || !slices.Equal(g.strs("route_table_ids"), []string{"rtb-1"}) {
		t.Error("no S3 gateway endpoint on rtb-1")
	}
	if i := endpoints["Interface"]; i == nil || i.str("service_name") != "com.amazonaws.eu-west-2.secretsmanager" || !i.boolean("private_dns_enabled") ||
		!slices.Equal(i.strs("security_group_ids"), []string{"sg-fn"}) || !slices.Equal(i.strs("subnet_ids"), []string{"subnet-a", "subnet-b"}) {
		t.Error("no Secrets Manager interface endpoint with private DNS in the functions' subnets")
	}

	// A VPC function whose role lacks the network-interface permissions.
	files := mainFiles(t)
	for name, value := range vpc {
		withDefault(t, files, name, value)
	}
	re := regexp.MustCompile(`source_policy_documents = contains\(local.vpc_stages, "load"\) \? \[data.aws_iam_policy_document.vpc_access.json\] : \[\]`)
	if !re.Match(files["iam.tf"]) {
		t.Fatal("mutation does not apply")
	}
	files["iam.tf"] = re.ReplaceAll(files["iam.tf"], []byte("source_policy_documents = []"))
	broken, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	if ps := check(broken); !problemsContain(ps, "(load): does not allow ec2:CreateNetworkInterface") {
		t.Errorf("a VPC function without ENI permissions is not reported:\n%s", strings.Join(ps, "\n"))
	}
}

// TestWithoutTheBootstrap: permissions_boundary = false makes every role
// without a boundary (the try-it path without the bootstrap), and nothing
// else changes.
func TestWithoutTheBootstrap(t *testing.T) {
	m := variant(t, map[string]string{"permissions_boundary": "false"})
	for _, r := range m.instances("aws_iam_role") {
		if r.str("permissions_boundary") != "" {
			t.Errorf("%s: permissions_boundary %q without the bootstrap", r.addr, r.str("permissions_boundary"))
		}
	}
}

// TestBoundaryCoversTheRoles: every action a function or schedule role may
// have (in a VPC, with repair and the warehouse check) is within the
// bootstrap's boundary; else AWS would deny it although the role allows it.
func TestBoundaryCoversTheRoles(t *testing.T) {
	m := variant(t, map[string]string{
		"vpc_subnet_ids": `["subnet-a"]`, "vpc_security_group_ids": `["sg-fn"]`,
		"audit_repair": "true", "audit_warehouse_check": "true",
	})
	files, err := loadDir("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	boot, err := parseModule(files)
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	var boundary []statement
	for _, r := range boot.resources {
		if r.data && r.name == "pipeline_boundary" {
			boundary = boot.documentStatements(r.instances[0], &p)
		}
	}
	if len(boundary) == 0 {
		t.Fatal("no boundary document in the bootstrap")
	}
	for _, role := range m.instances("aws_iam_role") {
		for _, s := range rolePolicies(m, role, &p) {
			for _, a := range s.actions {
				if s.effect == "Allow" && !slices.ContainsFunc(boundary, func(b statement) bool { return b.effect == "Allow" && slices.Contains(b.actions, a) }) {
					t.Errorf("%s: %s is outside the permissions boundary", role.addr, a)
				}
			}
		}
	}
	for _, x := range p {
		t.Error(x)
	}
}

// TestNetworkValidations: subnets and security groups go together, and an
// endpoint needs its VPC.
func TestNetworkValidations(t *testing.T) {
	list := func(s ...string) cty.Value {
		if len(s) == 0 {
			return cty.ListValEmpty(cty.String)
		}
		var vs []cty.Value
		for _, x := range s {
			vs = append(vs, cty.StringVal(x))
		}
		return cty.ListVal(vs)
	}
	for name, cases := range map[string][]struct {
		vars map[string]cty.Value
		ok   bool
	}{
		"vpc_security_group_ids": {
			{map[string]cty.Value{}, true},
			{map[string]cty.Value{"vpc_subnet_ids": list("subnet-a"), "vpc_security_group_ids": list("sg-1")}, true},
			{map[string]cty.Value{"vpc_subnet_ids": list("subnet-a"), "vpc_security_group_ids": list()}, false},
			{map[string]cty.Value{"vpc_subnet_ids": list(), "vpc_security_group_ids": list("sg-1")}, false},
		},
		"create_s3_endpoint": {
			{map[string]cty.Value{"create_s3_endpoint": cty.True, "vpc_id": cty.StringVal("vpc-1"), "s3_endpoint_route_table_ids": list("rtb-1")}, true},
			{map[string]cty.Value{"create_s3_endpoint": cty.True, "s3_endpoint_route_table_ids": list("rtb-1")}, false},
			{map[string]cty.Value{"create_s3_endpoint": cty.True, "vpc_id": cty.StringVal("vpc-1"), "s3_endpoint_route_table_ids": list()}, false},
		},
		"create_secretsmanager_endpoint": {
			{map[string]cty.Value{"create_secretsmanager_endpoint": cty.True, "vpc_id": cty.StringVal("vpc-1"), "vpc_subnet_ids": list("subnet-a")}, true},
			{map[string]cty.Value{"create_secretsmanager_endpoint": cty.True, "vpc_subnet_ids": list("subnet-a")}, false},
		},
		"reserved_concurrency": {
			{map[string]cty.Value{"reserved_concurrency": cty.MapVal(map[string]cty.Value{"ingest": cty.NumberIntVal(1)})}, true},
			{map[string]cty.Value{"reserved_concurrency": cty.MapValEmpty(cty.Number)}, true},
			{map[string]cty.Value{"reserved_concurrency": cty.MapVal(map[string]cty.Value{"ingestion": cty.NumberIntVal(1)})}, false},
			{map[string]cty.Value{"reserved_concurrency": cty.MapVal(map[string]cty.Value{"load": cty.NumberIntVal(-1)})}, false},
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
