package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// errorFilterPattern is the pattern of the Terraform's error metric filter
// (deploy/terraform/monitoring.tf).
func errorFilterPattern(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "deploy", "terraform", "monitoring.tf"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)resource "aws_cloudwatch_log_metric_filter" "errors" \{.*?\n  pattern\s+= ("(?:[^"\\]|\\.)*")`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no pattern in the errors metric filter of monitoring.tf")
	}
	p, err := strconv.Unquote(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// filterMatches is how CloudWatch Logs matches a JSON filter pattern made
// of terms `$.key = "value"` and `$.key = *` joined by &&: the line must
// be a JSON object, each term's key present, with that value. A pattern
// of any other form fails the test, so that a change of the Terraform's
// pattern is seen here.
func filterMatches(t *testing.T, pattern string, line []byte) bool {
	t.Helper()
	body, ok := strings.CutPrefix(strings.TrimSpace(pattern), "{")
	body, ok2 := strings.CutSuffix(body, "}")
	if !ok || !ok2 {
		t.Fatalf("pattern %q is not a JSON filter pattern", pattern)
	}
	var obj map[string]any
	if json.Unmarshal(line, &obj) != nil {
		return false
	}
	term := regexp.MustCompile(`^\$\.([A-Za-z_]+)\s*=\s*(\*|"[^"]*")$`)
	for _, s := range strings.Split(body, "&&") {
		m := term.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil {
			t.Fatalf("pattern %q: term %q not understood by this test", pattern, s)
		}
		v, present := obj[m[1]]
		if !present || (m[2] != "*" && fmt.Sprint(v) != strings.Trim(m[2], `"`)) {
			return false
		}
	}
	return true
}

// TestCannotStartLine: the start-up failure line is one JSON line that
// the Terraform's error metric filter counts, whatever bytes the error
// holds, and it carries no password; the %q line it replaces was not JSON
// for such an error, and the filter missed it.
func TestCannotStartLine(t *testing.T) {
	pattern := errorFilterPattern(t)
	err := errors.New("SANDSTONE_SOURCE: parse postgres://u:hunter2@h/db: bad byte \x01, tab\t, vt\v, quote \", é")
	var buf bytes.Buffer
	cannotStart(&buf, err)
	line := buf.Bytes()
	if bytes.Count(line, []byte("\n")) != 1 || !json.Valid(line) {
		t.Fatalf("not one JSON line: %q", line)
	}
	if !filterMatches(t, pattern, line) {
		t.Errorf("filter %q does not match %s", pattern, line)
	}
	if bytes.Contains(line, []byte("hunter2")) {
		t.Errorf("the line holds the password: %s", line)
	}
	var got map[string]string
	if json.Unmarshal(line, &got) != nil || got["error_kind"] != "config_invalid" || !strings.Contains(got["error"], "bad byte \x01") {
		t.Errorf("fields %v", got)
	}
	old := fmt.Appendf(nil, "{\"level\":\"ERROR\",\"msg\":\"sandstone-lambda cannot start\",\"error_kind\":\"config_invalid\",\"error\":%q}\n", err.Error())
	if filterMatches(t, pattern, old) {
		t.Errorf("the matcher accepts the old %%q line %s, which is not JSON", old)
	}
	if filterMatches(t, pattern, []byte(`{"level":"WARN","error_kind":"config_invalid"}`)) || filterMatches(t, pattern, []byte(`{"level":"ERROR"}`)) {
		t.Error("the matcher accepts lines the filter does not")
	}
}
