package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLambdaLinksNoDevelopmentCode: the bootstrap's packages come from the
// contracts, the stages, operations and base, never from internal/dev
// (the synthetic source, the bench, the demo, the test servers), so none of
// that code ships in the zip.
func TestLambdaLinksNoDevelopmentCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "lambda.norpc", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const module = "github.com/sandstone-data/sandstone/internal/"
	layers := map[string]int{}
	for _, p := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(p, module)
		if !ok {
			continue
		}
		layer, _, _ := strings.Cut(rest, "/")
		layers[layer]++
		if layer == "dev" {
			t.Errorf("the Lambda links %s", p)
		}
	}
	for _, layer := range []string{"contract", "stage", "ops", "base"} {
		if layers[layer] == 0 {
			t.Errorf("the Lambda links nothing of internal/%s: is the module path right? %v", layer, layers)
		}
	}
}

// TestLayers: a package of internal/ imports only from its own layer and
// the layers below it (base, then contract, stage, ops, dev), as
// docs/design.md's layout says, so the folders show the data flow.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/sandstone-data/sandstone/internal/"
	rank := map[string]int{"base": 0, "contract": 1, "stage": 2, "ops": 3, "dev": 4}
	layer := func(p string) (string, bool) {
		rest, ok := strings.CutPrefix(p, module)
		l, _, _ := strings.Cut(rest, "/")
		return l, ok
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		from, _ := layer(f[0])
		if _, ok := rank[from]; !ok {
			t.Errorf("%s is in no layer", f[0])
		}
		for _, imp := range f[1:] {
			if to, ok := layer(imp); ok && rank[to] > rank[from] {
				t.Errorf("%s (%s) imports %s (%s), a layer above it", f[0], from, imp, to)
			}
		}
	}
}
