package terraform_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// A module is a Terraform configuration parsed with hclsyntax and evaluated
// without providers or AWS: variables take their defaults (or stand for
// themselves as "${var.NAME}" when they have none), locals are computed,
// resources are expanded by their for_each or count, and every resource
// attribute evaluates to a symbolic string naming it, such as
// `${aws_s3_bucket.ingestion.arn}` or
// `${aws_lambda_function.stage["ingest"].function_name}`. Wiring checks
// then compare these strings: a policy resource
// "${aws_s3_bucket.ingestion.arn}/manifests/*" names the ingestion bucket.
type module struct {
	files     map[string][]byte
	variables map[string]*variable
	localExpr map[string]hcl.Expression
	locals    map[string]cty.Value
	resources []*resource // managed resources and data sources, in file order
	outputs   map[string]*hclsyntax.Block
	ctx       *hcl.EvalContext
	// errs are attributes that failed to evaluate.
	errs []string
}

type variable struct {
	name        string
	description string
	value       cty.Value
}

// A resource is a resource or data block; it has one instance per key of
// its for_each (or index of its count), or a single one.
type resource struct {
	typ, name string
	data      bool
	block     *hclsyntax.Block
	expanded  bool
	instances []*node
}

// address is how Terraform names the resource, e.g. data.aws_iam_policy_document.ingest.
func (r *resource) address() string {
	if r.data {
		return "data." + r.typ + "." + r.name
	}
	return r.typ + "." + r.name
}

// A node is a body to read attributes and nested blocks from, with the
// context to evaluate them in: a resource instance, or a block inside one.
type node struct {
	addr string // the resource instance's address, e.g. aws_iam_role.stage["load"]
	body *hclsyntax.Body
	ctx  *hcl.EvalContext
	errs *[]string // evaluation errors, reported as problems
}

// ref is the symbolic value of attribute attr of the instance.
func (n *node) ref(attr string) string { return "${" + n.addr + "." + attr + "}" }

// value evaluates attribute name; cty.NilVal when it is absent.
func (n *node) value(name string) cty.Value {
	a, ok := n.body.Attributes[name]
	if !ok {
		return cty.NilVal
	}
	v, diags := a.Expr.Value(n.ctx)
	if diags.HasErrors() {
		*n.errs = append(*n.errs, fmt.Sprintf("%s: %s: %s", n.addr, name, diags.Error()))
		return cty.NilVal
	}
	return v
}

// has reports whether attribute name is set.
func (n *node) has(name string) bool {
	_, ok := n.body.Attributes[name]
	return ok
}

// str is attribute name as a string ("" when absent or not a string).
func (n *node) str(name string) string { return asString(n.value(name)) }

// strs is attribute name as a list of strings (a single string is a list of one).
func (n *node) strs(name string) []string { return asStrings(n.value(name)) }

// num is attribute name as a number, and whether it is one.
func (n *node) num(name string) (float64, bool) { return asNumber(n.value(name)) }

// boolean is attribute name as a bool (false when absent).
func (n *node) boolean(name string) bool {
	v := n.value(name)
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || v.Type() != cty.Bool {
		return false
	}
	return v.True()
}

// strMap is attribute name as a map of strings (an object or map value).
func (n *node) strMap(name string) map[string]string {
	v := n.value(name)
	out := map[string]string{}
	if v == cty.NilVal || v.IsNull() || !v.IsWhollyKnown() || (!v.Type().IsObjectType() && !v.Type().IsMapType()) {
		return out
	}
	for k, e := range v.AsValueMap() {
		out[k] = asString(e)
	}
	return out
}

// blocks are the nested blocks of type typ (dynamic blocks are not expanded).
func (n *node) blocks(typ string) []*node {
	var out []*node
	for _, b := range n.body.Blocks {
		if b.Type == typ {
			out = append(out, &node{addr: n.addr, body: b.Body, ctx: n.ctx, errs: n.errs})
		}
	}
	return out
}

// block is the first nested block of type typ, or an empty one.
func (n *node) block(typ string) *node {
	if bs := n.blocks(typ); len(bs) > 0 {
		return bs[0]
	}
	return &node{addr: n.addr, body: &hclsyntax.Body{}, ctx: n.ctx, errs: n.errs}
}

func asString(v cty.Value) string {
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() {
		return ""
	}
	switch v.Type() {
	case cty.String:
		return v.AsString()
	case cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case cty.Bool:
		return fmt.Sprint(v.True())
	}
	return ""
}

func asStrings(v cty.Value) []string {
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() {
		return nil
	}
	if v.Type() == cty.String {
		return []string{v.AsString()}
	}
	if !v.CanIterateElements() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, asString(e))
	}
	return out
}

func asNumber(v cty.Value) (float64, bool) {
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

// loadDir reads every .tf file of dir.
func loadDir(dir string) (map[string][]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, name := range names {
		src, err := os.ReadFile(name) // #nosec G304 -- the test reads the repository's own Terraform files
		if err != nil {
			return nil, err
		}
		files[filepath.Base(name)] = src
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .tf files in %s", dir)
	}
	return files, nil
}

// parseModule parses and evaluates the files of one module.
func parseModule(files map[string][]byte) (*module, error) {
	m := &module{
		files:     files,
		variables: map[string]*variable{},
		localExpr: map[string]hcl.Expression{},
		locals:    map[string]cty.Value{},
		outputs:   map[string]*hclsyntax.Block{},
	}
	parser := hclparse.NewParser()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var bodies []*hclsyntax.Body
	for _, name := range names {
		f, diags := parser.ParseHCL(files[name], name)
		if diags.HasErrors() {
			return nil, fmt.Errorf("parse %s: %s", name, diags.Error())
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			return nil, fmt.Errorf("parse %s: not native HCL syntax", name)
		}
		bodies = append(bodies, body)
	}
	for _, body := range bodies {
		if err := m.collect(body); err != nil {
			return nil, err
		}
	}
	attrs := attributeNames(bodies)
	m.evaluate(attrs)
	var errs []string
	for name := range m.localExpr {
		if _, ok := m.locals[name]; !ok {
			errs = append(errs, "local."+name)
		}
	}
	for _, r := range m.resources {
		if !r.expanded {
			errs = append(errs, r.address()+" (for_each or count)")
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("cannot evaluate %s", strings.Join(errs, ", "))
	}
	return m, nil
}

func (m *module) collect(body *hclsyntax.Body) error {
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			if len(b.Labels) != 1 {
				return fmt.Errorf("%s: variable needs one label", b.DefRange())
			}
			v := &variable{name: b.Labels[0], value: cty.StringVal("${var." + b.Labels[0] + "}")}
			if a, ok := b.Body.Attributes["description"]; ok {
				d, diags := a.Expr.Value(nil)
				if !diags.HasErrors() && d.Type() == cty.String && d.IsKnown() && !d.IsNull() {
					v.description = d.AsString()
				}
			}
			if a, ok := b.Body.Attributes["default"]; ok {
				d, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					return fmt.Errorf("variable %s: default: %s", v.name, diags.Error())
				}
				v.value = d
			}
			if _, dup := m.variables[v.name]; dup {
				return fmt.Errorf("variable %s declared twice", v.name)
			}
			m.variables[v.name] = v
		case "locals":
			for name, a := range b.Body.Attributes {
				if _, dup := m.localExpr[name]; dup {
					return fmt.Errorf("local %s declared twice", name)
				}
				m.localExpr[name] = a.Expr
			}
		case "resource", "data":
			if len(b.Labels) != 2 {
				return fmt.Errorf("%s: %s needs two labels", b.DefRange(), b.Type)
			}
			m.resources = append(m.resources, &resource{typ: b.Labels[0], name: b.Labels[1], data: b.Type == "data", block: b})
		case "output":
			if len(b.Labels) == 1 {
				m.outputs[b.Labels[0]] = b
			}
		}
	}
	return nil
}

// attributeNames lists every attribute name any traversal in the module
// reads (arn, id, name, json, ...): each resource instance offers them all.
func attributeNames(bodies []*hclsyntax.Body) []string {
	seen := map[string]bool{"arn": true, "id": true, "name": true, "json": true}
	add := func(tr hcl.Traversal) {
		for _, step := range tr {
			if a, ok := step.(hcl.TraverseAttr); ok {
				seen[a.Name] = true
			}
		}
	}
	for _, body := range bodies {
		_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			switch e := n.(type) {
			case *hclsyntax.ScopeTraversalExpr:
				add(e.Traversal)
			case *hclsyntax.RelativeTraversalExpr:
				add(e.Traversal)
			}
			return nil
		})
	}
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// evaluate computes locals and expands resources until nothing changes:
// a local may need a resource's instances and a for_each may need a local.
func (m *module) evaluate(attrs []string) {
	for round := 0; round <= len(m.localExpr)+len(m.resources); round++ {
		m.ctx = m.context(attrs)
		progress := false
		for name, expr := range m.localExpr {
			if _, done := m.locals[name]; done {
				continue
			}
			v, diags := expr.Value(m.ctx)
			if !diags.HasErrors() && v.IsWhollyKnown() {
				m.locals[name] = v
				progress = true
			}
		}
		for _, r := range m.resources {
			if !r.expanded && m.expand(r) {
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	m.ctx = m.context(attrs)
	// Instances evaluate in the final context.
	for _, r := range m.resources {
		for _, inst := range r.instances {
			inst.ctx.Functions = m.ctx.Functions
			for k, v := range m.ctx.Variables {
				if _, own := inst.ctx.Variables[k]; !own {
					inst.ctx.Variables[k] = v
				}
			}
		}
	}
}

// expand creates r's instances once its for_each or count is known.
func (m *module) expand(r *resource) bool {
	instance := func(key string, vars map[string]cty.Value) {
		addr := r.address() + key
		r.instances = append(r.instances, &node{addr: addr, body: r.block.Body, ctx: &hcl.EvalContext{Variables: vars}, errs: &m.errs})
	}
	if a, ok := r.block.Body.Attributes["for_each"]; ok {
		v, diags := a.Expr.Value(m.ctx)
		if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() {
			return false
		}
		switch {
		case v.Type().IsObjectType() || v.Type().IsMapType():
			keys := sortedKeys(v.AsValueMap())
			for _, k := range keys {
				instance(fmt.Sprintf("[%q]", k), map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{
					"key": cty.StringVal(k), "value": v.AsValueMap()[k],
				})})
			}
		case v.Type().IsSetType() || v.Type().IsListType() || v.Type().IsTupleType():
			for _, e := range v.AsValueSlice() {
				k := asString(e)
				instance(fmt.Sprintf("[%q]", k), map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{
					"key": cty.StringVal(k), "value": e,
				})})
			}
		default:
			return false
		}
	} else if a, ok := r.block.Body.Attributes["count"]; ok {
		v, diags := a.Expr.Value(m.ctx)
		n, isNum := asNumber(v)
		if diags.HasErrors() || !isNum {
			return false
		}
		for i := 0; i < int(n); i++ {
			instance(fmt.Sprintf("[%d]", i), map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(int64(i))})})
		}
	} else {
		instance("", map[string]cty.Value{})
	}
	r.expanded = true
	return true
}

func sortedKeys(m map[string]cty.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// context is the evaluation context: var, local, data and one variable per
// resource type, each resource being an object of symbolic attributes (or
// an object/tuple of them, by instance key), unknown until expanded.
func (m *module) context(attrs []string) *hcl.EvalContext {
	vars := map[string]cty.Value{}
	for name, v := range m.variables {
		vars[name] = v.value
	}
	locals := map[string]cty.Value{}
	for name := range m.localExpr {
		if v, ok := m.locals[name]; ok {
			locals[name] = v
		} else {
			locals[name] = cty.DynamicVal
		}
	}
	managed := map[string]map[string]cty.Value{}
	data := map[string]map[string]cty.Value{}
	for _, r := range m.resources {
		group := managed
		if r.data {
			group = data
		}
		if group[r.typ] == nil {
			group[r.typ] = map[string]cty.Value{}
		}
		group[r.typ][r.name] = m.resourceValue(r, attrs)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":   cty.ObjectVal(vars),
			"local": cty.ObjectVal(locals),
			// path.module and the others stand for themselves.
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal("${path.module}"), "root": cty.StringVal("${path.root}"), "cwd": cty.StringVal("${path.cwd}")}),
		},
		Functions: functions(),
	}
	for typ, byName := range managed {
		ctx.Variables[typ] = cty.ObjectVal(byName)
	}
	dataTypes := map[string]cty.Value{}
	for typ, byName := range data {
		dataTypes[typ] = cty.ObjectVal(byName)
	}
	ctx.Variables["data"] = cty.ObjectVal(dataTypes)
	return ctx
}

func (m *module) resourceValue(r *resource, attrs []string) cty.Value {
	if !r.expanded {
		return cty.DynamicVal
	}
	symbolic := func(n *node) cty.Value {
		obj := map[string]cty.Value{}
		for _, a := range attrs {
			obj[a] = cty.StringVal(n.ref(a))
		}
		return cty.ObjectVal(obj)
	}
	_, forEach := r.block.Body.Attributes["for_each"]
	_, count := r.block.Body.Attributes["count"]
	switch {
	case forEach:
		byKey := map[string]cty.Value{}
		for _, inst := range r.instances {
			key := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(inst.addr, r.address()), `["`), `"]`)
			byKey[key] = symbolic(inst)
		}
		return cty.ObjectVal(byKey)
	case count:
		if len(r.instances) == 0 {
			return cty.EmptyTupleVal
		}
		var list []cty.Value
		for _, inst := range r.instances {
			list = append(list, symbolic(inst))
		}
		return cty.TupleVal(list)
	default:
		return symbolic(r.instances[0])
	}
}

// functions are the Terraform functions the configuration may use.
func functions() map[string]function.Function {
	symbolicFile := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal("${file(" + args[0].AsString() + ")}"), nil
		},
	})
	toNumber := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true}},
		Type:   function.StaticReturnType(cty.Number),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return convert.Convert(args[0], cty.Number)
		},
	})
	toSet := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "v", Type: cty.List(cty.String)}},
		Type:   function.StaticReturnType(cty.Set(cty.String)),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return convert.Convert(args[0], cty.Set(cty.String))
		},
	})
	allTrue := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for _, v := range args[0].AsValueSlice() {
				if v.IsNull() || !v.True() {
					return cty.False, nil
				}
			}
			return cty.True, nil
		},
	})
	return map[string]function.Function{
		"alltrue":          allTrue,
		"can":              tryfunc.CanFunc,
		"ceil":             stdlib.CeilFunc,
		"concat":           stdlib.ConcatFunc,
		"contains":         stdlib.ContainsFunc,
		"filebase64sha256": symbolicFile,
		"flatten":          stdlib.FlattenFunc,
		"floor":            stdlib.FloorFunc,
		"format":           stdlib.FormatFunc,
		"join":             stdlib.JoinFunc,
		"jsonencode":       stdlib.JSONEncodeFunc,
		"keys":             stdlib.KeysFunc,
		"length":           stdlib.LengthFunc,
		"lookup":           stdlib.LookupFunc,
		"lower":            stdlib.LowerFunc,
		"max":              stdlib.MaxFunc,
		"merge":            stdlib.MergeFunc,
		"min":              stdlib.MinFunc,
		"regex":            stdlib.RegexFunc,
		"regexall":         stdlib.RegexAllFunc,
		"replace":          stdlib.ReplaceFunc,
		"setproduct":       stdlib.SetProductFunc,
		"tonumber":         toNumber,
		"toset":            toSet,
		"try":              tryfunc.TryFunc,
		"upper":            stdlib.UpperFunc,
		"values":           stdlib.ValuesFunc,
	}
}

// instances lists every instance of the managed resources of type typ.
func (m *module) instances(typ string) []*node {
	var out []*node
	for _, r := range m.resources {
		if !r.data && r.typ == typ {
			out = append(out, r.instances...)
		}
	}
	return out
}

// dataInstance finds the data source instance a symbolic reference such as
// ${data.aws_iam_policy_document.ingest.json} points at.
func (m *module) dataInstance(ref string) *node {
	for _, r := range m.resources {
		if !r.data {
			continue
		}
		for _, inst := range r.instances {
			if strings.HasPrefix(ref, "${"+inst.addr+".") && strings.HasSuffix(ref, "}") && strings.Count(ref, "${") == 1 {
				return inst
			}
		}
	}
	return nil
}
