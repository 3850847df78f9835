// Package s3test runs an S3 protocol server in-process over HTTP, for tests
// that must talk to a real S3 endpoint rather than a fake of the client.
//
// The server is gofakes3 with two things of S3's added in front of it:
//
//   - a conditional CompleteMultipartUpload: with If-None-Match: * it is
//     refused (412 PreconditionFailed) when the key exists, as S3 does;
//     gofakes3 honours the header on PutObject only, so a large object
//     (uploaded in parts) could otherwise replace an existing one;
//   - with WriteOnce, the rules of the buckets' policy in deploy/terraform
//     (s3.tf): an object-creating request (PutObject, CopyObject,
//     CompleteMultipartUpload) without If-None-Match is refused with 403
//     AccessDenied, and so is every delete (DeleteObject, DeleteObjects and
//     DeleteObject of a version).
package s3test

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running S3 server.
type Server struct {
	// Endpoint is the server's http://127.0.0.1:PORT address.
	Endpoint string
	backend  *s3mem.Backend
	s3       http.Handler

	writeOnce bool
	// writes serializes the requests that create objects, so that the check
	// of a conditional CompleteMultipartUpload and the completion are one
	// step, as on S3.
	writes sync.Mutex

	mu       sync.Mutex
	refusals []string
}

// Option changes how a Server behaves.
type Option func(*Server)

// WriteOnce makes the server enforce the buckets' policy of
// deploy/terraform: objects are created only with If-None-Match: *, and
// nothing is deleted.
func WriteOnce() Option { return func(s *Server) { s.writeOnce = true } }

// Start starts a server that lives as long as the test, and sets the AWS
// credential and region environment variables the SDK needs to reach it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	backend := s3mem.New()
	s := &Server{backend: backend, s3: gofakes3.New(backend).Server()}
	for _, o := range opts {
		o(s)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.Endpoint = ts.URL
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return s
}

// CreateBucket creates bucket name and returns its gocloud URL.
func (s *Server) CreateBucket(t testing.TB, name string) string {
	t.Helper()
	if err := s.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
	return s.URL(name)
}

// URL is the gocloud URL of bucket name on this server (which may not exist).
func (s *Server) URL(name string) string {
	return fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1&use_path_style=true&disable_https=true", name, s.Endpoint)
}

// Refusals lists the requests the server refused under WriteOnce (method,
// path and the rule), in order.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

// operation is what an S3 request does, as IAM names it.
func operation(r *http.Request) string {
	q := r.URL.Query()
	_, uploads := q["uploads"]
	_, del := q["delete"]
	_, version := q["versionId"]
	upload := q.Get("uploadId") != ""
	object := strings.Contains(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && upload:
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPut && upload:
		return "UploadPart"
	case r.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	case r.Method == http.MethodPut && object && r.Header.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	case r.Method == http.MethodPut && object:
		return "PutObject"
	case r.Method == http.MethodDelete && object && version:
		return "DeleteObjectVersion"
	case r.Method == http.MethodDelete && object && !upload:
		return "DeleteObject"
	case r.Method == http.MethodPost && del:
		return "DeleteObjects"
	}
	return ""
}

// ServeHTTP answers one S3 request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := operation(r)
	conditional := r.Header.Get("If-None-Match") == "*"
	if s.writeOnce {
		var rule string
		switch op {
		case "PutObject", "CopyObject", "CompleteMultipartUpload":
			if r.Header.Get("If-None-Match") == "" {
				rule = "an object is created only with If-None-Match"
			}
		case "DeleteObject", "DeleteObjectVersion", "DeleteObjects":
			rule = "nothing is deleted"
		}
		if rule != "" {
			s.mu.Lock()
			s.refusals = append(s.refusals, fmt.Sprintf("%s %s (%s): %s", r.Method, r.URL.Path, op, rule))
			s.mu.Unlock()
			writeError(w, http.StatusForbidden, "AccessDenied", "Access Denied: "+rule)
			return
		}
	}
	switch op {
	case "PutObject", "CopyObject", "CompleteMultipartUpload":
		s.writes.Lock()
		defer s.writes.Unlock()
	}
	if op == "CompleteMultipartUpload" && conditional {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if _, err := s.backend.HeadObject(bucket, key); err == nil {
			writeError(w, http.StatusPreconditionFailed, "PreconditionFailed",
				"At least one of the pre-conditions you specified did not hold")
			return
		}
	}
	s.s3.ServeHTTP(w, r)
}

// writeError answers with an S3 error document.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
		Message string   `xml:"Message"`
	}{Code: code, Message: message})
}
