package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// jsonLines decodes every line of buf as a JSON object.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestFailureLogsOneLinePerKind(t *testing.T) {
	for _, kind := range errkind.All {
		t.Run(string(kind), func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, FormatJSON, slog.LevelInfo)
			cause := fmt.Errorf("connect postgres://sandstone:hunter2@db:5432/totesys: refused")
			err := fmt.Errorf("ingest batch b1: %w", errkind.Wrap(kind, cause))

			Failure(log, "ingest", "run-42", err)

			lines := jsonLines(t, &buf)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want exactly 1: %s", len(lines), buf.String())
			}
			l := lines[0]
			want := map[string]any{
				"level":      "ERROR",
				"msg":        MsgFailure,
				"stage":      "ingest",
				"run_id":     "run-42",
				"error_kind": string(kind),
				"error":      "ingest batch b1: connect postgres://sandstone:xxxxx@db:5432/totesys: refused",
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s = %v, want %v", k, l[k], v)
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"])); err != nil {
				t.Errorf("time %v: %v", l["time"], err)
			}
			if len(l) != len(want)+1 {
				t.Errorf("unexpected fields in %v", l)
			}
		})
	}
}

func TestFailureWithoutKindOrError(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatJSON, slog.LevelInfo)
	Failure(log, "load", "r1", errors.New("boom"))
	Failure(log, "load", "r2", nil)
	lines := jsonLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2", len(lines))
	}
	for i, wantErr := range []string{"boom", "unknown error"} {
		if lines[i]["error_kind"] != string(errkind.Internal) || lines[i]["error"] != wantErr {
			t.Errorf("line %d: %v", i, lines[i])
		}
	}
}

func TestFailureUsesDefaultLogger(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(New(&buf, FormatJSON, slog.LevelInfo))
	t.Cleanup(func() { slog.SetDefault(old) })

	Failure(nil, "transform", "r9", errkind.Wrap(errkind.BadRowsRejected, errors.New("3 rows")))
	lines := jsonLines(t, &buf)
	if len(lines) != 1 || lines[0]["error_kind"] != "bad_rows_rejected" || lines[0]["stage"] != "transform" {
		t.Fatalf("default logger got %s", buf.String())
	}
}

type dsnHolder struct {
	Name string
	DSN  string
}

type secretValuer struct{}

func (secretValuer) LogValue() slog.Value {
	return slog.StringValue("postgres://alice:hunter2@db/x")
}

func TestNoSecretInAnyLine(t *testing.T) {
	const secret = "hunter2"
	dsn := "postgres://alice:" + secret + "@db.example:5432/totesys"
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		keep string // a non-secret part that must still be logged
	}{
		{"message", func(l *slog.Logger) { l.Info("connecting to " + dsn) }, "alice"},
		{"string attr", func(l *slog.Logger) { l.Info("x", "source", dsn) }, "db.example"},
		{"key=value pair", func(l *slog.Logger) { l.Info("x", "conn", "host=db user=alice password="+secret+" dbname=t") }, "user=alice"},
		{"error attr", func(l *slog.Logger) {
			l.Error("x", "error", fmt.Errorf("dial %s: %w", dsn, errors.New("refused")))
		}, "refused"},
		{"url value", func(l *slog.Logger) { l.Info("x", "url", u) }, "db.example"},
		{"struct value", func(l *slog.Logger) { l.Info("x", "cfg", dsnHolder{"w", dsn}) }, "alice"},
		{"bytes value", func(l *slog.Logger) { l.Info("x", "raw", []byte(dsn)) }, "alice"},
		{"log valuer", func(l *slog.Logger) { l.Info("x", "v", secretValuer{}) }, "alice"},
		{"nested group", func(l *slog.Logger) {
			l.Info("x", slog.Group("cfg", slog.Group("warehouse", slog.String("url", dsn), slog.Int("port", 5432))))
		}, "5432"},
		{"with attrs", func(l *slog.Logger) { l.With("warehouse", dsn).Info("x") }, "alice"},
		{"with group", func(l *slog.Logger) { l.WithGroup("g").With("url", dsn).Info("x", "url2", dsn) }, "alice"},
		{"secret key", func(l *slog.Logger) { l.Info("x", "smtp_password", secret, "user", "alice") }, "alice"},
		{"secret key any", func(l *slog.Logger) { l.Info("x", "APIToken", []string{secret}, "user", "alice") }, "alice"},
		{"secret key in group", func(l *slog.Logger) {
			l.Info("x", slog.Group("smtp", "Secret", secret, "user", "alice"))
		}, "alice"},
	}
	for _, format := range []string{FormatJSON, FormatText} {
		for _, c := range cases {
			t.Run(format+"/"+c.name, func(t *testing.T) {
				var buf bytes.Buffer
				c.log(New(&buf, format, slog.LevelDebug))
				out := buf.String()
				if strings.Contains(out, secret) {
					t.Errorf("secret logged: %s", out)
				}
				if !strings.Contains(out, c.keep) {
					t.Errorf("%q lost from %s", c.keep, out)
				}
			})
		}
	}
}

func TestNonSecretValuesKept(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatJSON, slog.LevelInfo)
	log.Info("stage done", KeyRows, int64(12), KeySeconds, 1.5, "ok", true,
		"tables", []string{"sales_order"}, "took", 2*time.Second)
	l := jsonLines(t, &buf)[0]
	if l["rows"] != 12.0 || l["seconds"] != 1.5 || l["ok"] != true || l["took"] != 2e9 {
		t.Errorf("values changed: %v", l)
	}
	if tables, _ := l["tables"].([]any); len(tables) != 1 || tables[0] != "sales_order" {
		t.Errorf("slice changed: %v", l["tables"])
	}
}

func TestFormats(t *testing.T) {
	var j, a, txt bytes.Buffer
	New(&j, FormatJSON, slog.LevelInfo).Info("hello", "n", 1)
	New(&a, FormatAuto, slog.LevelInfo).Info("hello", "n", 1)
	New(&txt, FormatText, slog.LevelInfo).Info("hello", "n", 1)
	for name, buf := range map[string]*bytes.Buffer{"json": &j, "auto on a buffer": &a} {
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "hello" || m["n"] != 1.0 {
			t.Errorf("%s: not the JSON line wanted: %s", name, buf.String())
		}
	}
	if json.Valid(txt.Bytes()) || !strings.Contains(txt.String(), "INF hello n=1") {
		t.Errorf("text format: %q", txt.String())
	}
	if strings.Contains(txt.String(), "\x1b[") {
		t.Errorf("colour codes written to a non-terminal: %q", txt.String())
	}
}

func TestAutoOnFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	New(f, FormatAuto, slog.LevelInfo).Info("hello")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(bytes.TrimSpace(b)) {
		t.Errorf("auto on a file is not JSON: %s", b)
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if IsTerminal(f) || IsTerminal(&bytes.Buffer{}) {
		t.Error("a file or buffer is not a terminal")
	}
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer func() { _ = dev.Close() }()
	if !IsTerminal(dev) {
		t.Error("a character device counts as a terminal")
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatJSON, slog.LevelWarn)
	log.Info("quiet")
	log.Warn("loud")
	lines := jsonLines(t, &buf)
	if len(lines) != 1 || lines[0]["msg"] != "loud" {
		t.Errorf("level filter: %s", buf.String())
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]string{"auto": FormatAuto, " JSON": FormatJSON, "Text": FormatText} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
}

func TestRedactingHandlerWrapsOnce(t *testing.T) {
	h := NewRedactingHandler(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	if NewRedactingHandler(h) != h {
		t.Error("a redacting handler was wrapped again")
	}
}

// TestTextWritesMapsAndListsPlainly: the text format shows a map as sorted
// key=value pairs and a list as a comma list, never Go's map[…] or […].
func TestTextWritesMapsAndListsPlainly(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"map", map[string]int64{"staff": 2, "design": 10}, `tables="design=10 staff=2"`},
		{"nested map", map[string]map[string]int{"sales_order": {"bad_value": 1}}, `tables="sales_order.bad_value=1"`},
		{"list", []string{"000001", "000002"}, "tables=000001,000002"},
		{"bytes", []byte("raw"), "tables=raw"},
		{"number", 7, "tables=7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			New(&buf, FormatText, slog.LevelInfo).Info("batch", "tables", tt.value)
			if got := buf.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "map[") {
				t.Errorf("got %q, want it to hold %q", got, tt.want)
			}
		})
	}
}
