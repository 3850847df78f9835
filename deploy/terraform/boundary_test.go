package terraform_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	boundaryRef   = "${aws_iam_policy.pipeline_boundary.arn}"
	pipelineRoles = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/sandstone/*"
	deployRoleARN = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/sandstone-github-deploy"
	planRoleARN   = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:role/sandstone-github-plan"
)

// glob reports whether an IAM pattern (* for any characters, / included)
// matches s.
func glob(pattern, s string) bool {
	return regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$").MatchString(s)
}

// grantsPermissions are the IAM calls that give a role permissions.
var grantsPermissions = []string{"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary"}

// checkDeployBoundary: the deploy role may create and grant only roles
// under the pipeline's path that carry the boundary, cannot remove or
// swap it, cannot change the boundary policy, cannot touch its own role or
// the plan role, and may pass only pipeline roles.
func checkDeployBoundary(m *module) problems {
	var p problems
	var stmts []statement
	for _, doc := range m.resources {
		if doc.data && doc.typ == "aws_iam_policy_document" && doc.name == "deploy" {
			for _, inst := range doc.instances {
				stmts = append(stmts, m.documentStatements(inst, &p)...)
			}
		}
	}
	if len(stmts) == 0 {
		p.add("no deploy policy document")
	}
	hasBoundary := func(s statement, test string) bool {
		return slices.ContainsFunc(s.conditions, func(c condition) bool {
			return c.test == test && c.variable == "iam:PermissionsBoundary" && slices.Equal(c.values, []string{boundaryRef})
		})
	}
	denied := func(action, resource string, cond func(statement) bool) bool {
		return slices.ContainsFunc(stmts, func(s statement) bool {
			if s.effect != "Deny" || !slices.ContainsFunc(s.actions, func(a string) bool { return glob(a, action) }) {
				return false
			}
			return slices.ContainsFunc(s.resources, func(r string) bool { return glob(r, resource) }) && (cond == nil || cond(s))
		})
	}
	for _, s := range stmts {
		if s.effect != "Allow" {
			continue
		}
		for _, a := range s.actions {
			if !strings.HasPrefix(a, "iam:") {
				continue
			}
			if strings.Contains(a, "*") {
				p.add("deploy role: wildcard IAM action %s", a)
			}
			for _, r := range s.resources {
				if r != pipelineRoles {
					p.add("deploy role: %s on %s, outside the pipeline roles' path %s", a, r, pipelineRoles)
				}
				for _, own := range []string{deployRoleARN, planRoleARN} {
					if glob(r, own) {
						p.add("deploy role: %s on %s covers %s", a, r, own)
					}
				}
			}
			if slices.Contains(grantsPermissions, a) && !hasBoundary(s, "StringEquals") {
				p.add("deploy role: %s without the condition iam:PermissionsBoundary = the pipeline boundary", a)
			}
			if a == "iam:PassRole" && !slices.ContainsFunc(s.conditions, func(c condition) bool { return c.variable == "iam:PassedToService" }) {
				p.add("deploy role: iam:PassRole to any service")
			}
		}
	}
	if !denied("iam:DeleteRolePermissionsBoundary", "arn:aws:iam::1:role/sandstone/x", nil) {
		p.add("deploy role: iam:DeleteRolePermissionsBoundary is not denied")
	}
	for _, a := range grantsPermissions {
		if !denied(a, "arn:aws:iam::1:role/sandstone/x", func(s statement) bool { return hasBoundary(s, "StringNotEquals") }) {
			p.add("deploy role: %s with another boundary (or none) is not denied", a)
		}
	}
	for _, a := range []string{"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"} {
		if !denied(a, boundaryRef, nil) {
			p.add("deploy role: %s on the boundary policy is not denied", a)
		}
	}
	// The secrets: made, never read nor granted (a resource policy could
	// grant the deploy role their values).
	secret := "arn:aws:secretsmanager:eu-west-2:1:secret:sandstone/source-db-AbCdEf"
	for _, s := range stmts {
		if s.effect == "Allow" && slices.ContainsFunc(s.actions, func(a string) bool {
			return glob(a, "secretsmanager:PutResourcePolicy") || glob(a, "secretsmanager:GetSecretValue")
		}) {
			p.add("deploy role: allows %v on the secrets; it may make them, never read or grant their values", s.actions)
		}
	}
	if !denied("secretsmanager:GetSecretValue", secret, nil) {
		p.add("deploy role: secretsmanager:GetSecretValue is not denied outright")
	}
	// Functions in a VPC: Lambda checks that their creator may describe
	// the network.
	for _, a := range []string{"ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"} {
		if !slices.ContainsFunc(stmts, func(s statement) bool {
			return s.effect == "Allow" && slices.Contains(s.actions, a) && slices.Contains(s.resources, "*")
		}) {
			p.add("deploy role: does not allow %s, which creating a function in a VPC needs", a)
		}
	}
	for _, own := range []string{deployRoleARN, planRoleARN} {
		for _, a := range []string{"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePermissionsBoundary"} {
			if !denied(a, own, nil) {
				p.add("deploy role: %s on %s is not denied", a, own)
			}
		}
	}
	return p
}

// checkRolesUnderBoundary: every role of the main configuration lives
// under /NAME_PREFIX/ and carries the boundary the deploy role requires.
func checkRolesUnderBoundary(m *module) problems {
	var p problems
	for _, r := range m.instances("aws_iam_role") {
		if got := r.str("path"); got != "/sandstone/" {
			p.add("%s: path %q, want /sandstone/ (the deploy role may create roles only there)", r.addr, got)
		}
		if got, want := r.str("permissions_boundary"), "arn:aws:iam::${data.aws_caller_identity.current.account_id}:policy/sandstone-pipeline-boundary"; got != want {
			p.add("%s: permissions_boundary %q, want %q", r.addr, got, want)
		}
	}
	return p
}

func TestDeployRoleBoundary(t *testing.T) {
	files, err := loadDir("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new, want string }{
		{"", "", "", ""},
		{"create without the boundary", `(sid       = "GrantOnlyUnderTheBoundary"(?s:.*?))condition \{(?s:.*?)\n    \}\n`, `${1}`, "iam:CreateRole without the condition"},
		{"roles anywhere", `resources = \[local.pipeline_roles\]`, `resources = ["arn:aws:iam::$${local.account_id}:role/$${local.prefix}-*"]`, "covers " + deployRoleARN},
		{"boundary removable", `actions   = \["iam:DeleteRolePermissionsBoundary"\]`, `actions   = ["iam:GetRole"]`, "iam:DeleteRolePermissionsBoundary is not denied"},
		{"another boundary", `variable = "iam:PermissionsBoundary"\n      values   = \[aws_iam_policy.pipeline_boundary.arn\]\n    \}\n  \}\n  statement \{\n    sid       = "DenyChangingTheBoundaryPolicy"`, "variable = \"iam:PermissionsBoundary\"\n      values   = [\"x\"]\n    }\n  }\n  statement {\n    sid       = \"DenyChangingTheBoundaryPolicy\"", "with another boundary (or none) is not denied"},
		{"boundary policy editable", `resources = \[aws_iam_policy.pipeline_boundary.arn\]`, `resources = ["x"]`, "on the boundary policy is not denied"},
		{"own role editable", `local.github_roles,`, ``, "on " + deployRoleARN + " is not denied"},
		{"pass to any service", `variable = "iam:PassedToService"`, `variable = "aws:RequestedRegion"`, "iam:PassRole to any service"},
		{"secret policies writable", `"secretsmanager:GetResourcePolicy",\n`, "\"secretsmanager:GetResourcePolicy\", \"secretsmanager:PutResourcePolicy\",\n", "allows [secretsmanager:CreateSecret"},
		{"secret values readable", `actions   = \["secretsmanager:GetSecretValue", `, `actions   = [`, "secretsmanager:GetSecretValue is not denied outright"},
		{"no VPC functions", `actions   = \["ec2:DescribeSecurityGroups", `, `actions   = [`, "does not allow ec2:DescribeSecurityGroups"},
	}
	for _, c := range cases {
		f := map[string][]byte{}
		for k, v := range files {
			f[k] = v
		}
		if c.old != "" {
			re := regexp.MustCompile(c.old)
			if !re.Match(f["main.tf"]) {
				t.Fatalf("%s: mutation does not apply", c.name)
			}
			loc := re.FindSubmatchIndex(f["main.tf"])
			src := f["main.tf"]
			f["main.tf"] = append(append(slices.Clone(src[:loc[0]]), re.Expand(nil, []byte(c.new), src, loc)...), src[loc[1]:]...)
		}
		m, err := parseModule(f)
		if err != nil {
			t.Fatal(err)
		}
		ps := checkDeployBoundary(m)
		if c.want == "" {
			for _, x := range ps {
				t.Error(x)
			}
		} else if !problemsContain(ps, c.want) {
			t.Errorf("%s: no problem mentions %q; got:\n%s", c.name, c.want, strings.Join(ps, "\n"))
		}
	}
}

func TestRolesUnderBoundary(t *testing.T) {
	m, err := parseModule(mainFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.instances("aws_iam_role")) < 6 {
		t.Fatalf("%d roles", len(m.instances("aws_iam_role")))
	}
	for _, x := range checkRolesUnderBoundary(m) {
		t.Error(x)
	}
	for name, re := range map[string]string{
		"a role at /":      `(?m)^  path                 = local.role_path\n`,
		"a role unbounded": `(?m)^  permissions_boundary = local.permissions_boundary_arn\n`,
	} {
		files := mainFiles(t)
		files["iam.tf"] = regexp.MustCompile(re).ReplaceAll(files["iam.tf"], nil)
		m, err := parseModule(files)
		if err != nil {
			t.Fatal(err)
		}
		if len(checkRolesUnderBoundary(m)) < 4 {
			t.Errorf("%s: not reported", name)
		}
	}
}
