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
