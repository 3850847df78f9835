package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLambdaZipIsReproducible builds the bootstrap's zip twice with `make
// lambda` (GOOS=linux GOARCH=arm64 CGO_ENABLED=0), the second time with an
// empty build cache so that nothing is reused, and checks that the two zips
// are byte-identical, and that the binary carries no VCS stamp and no path
// of this machine (Go records no -buildvcs flag, only the absence of
// vcs.* settings): the same code builds the same zip, whatever the commit,
// so Terraform's source_code_hash changes only with the code.
func TestLambdaZipIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap twice")
	}
	for _, tool := range []string{"make", "zip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var zips [][]byte
	var dirs []string
	for i, cache := range []string{"", t.TempDir()} {
		dir := t.TempDir()
		cmd := exec.Command("make", "-C", root, "lambda", "LAMBDA_DIR="+dir) // #nosec G204 -- fixed target
		cmd.Env = os.Environ()
		if cache != "" {
			cmd.Env = append(cmd.Env, "GOCACHE="+cache)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make lambda (%d): %v\n%s", i, err, out)
		}
		z, err := os.ReadFile(filepath.Join(dir, "bootstrap.zip")) // #nosec G304 -- the test's own output
		if err != nil {
			t.Fatal(err)
		}
		zips, dirs = append(zips, z), append(dirs, dir)
	}
	if !bytes.Equal(zips[0], zips[1]) {
		t.Fatalf("two builds of the same code differ: %d and %d bytes", len(zips[0]), len(zips[1]))
	}
	t.Logf("bootstrap.zip: %d bytes", len(zips[0]))
	out, err := exec.Command("go", "version", "-m", filepath.Join(dirs[0], "bootstrap")).CombinedOutput() // #nosec G204 -- the test's own output
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	info := string(out)
	for _, want := range []string{"-trimpath=true", "GOARCH=arm64", "CGO_ENABLED=0"} {
		if !strings.Contains(info, want) {
			t.Errorf("build info lacks %s:\n%s", want, info)
		}
	}
	if strings.Contains(info, "vcs.revision") || strings.Contains(info, "vcs.time") {
		t.Errorf("the binary carries a VCS stamp:\n%s", info)
	}
	bin, err := os.ReadFile(filepath.Join(dirs[0], "bootstrap")) // #nosec G304 -- the test's own output
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bin, []byte(root)) {
		t.Errorf("the binary holds this machine's path %s", root)
	}
}
