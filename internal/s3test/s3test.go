// Package s3test runs an S3 protocol server in-process over HTTP, for tests
// that must talk to a real S3 endpoint rather than a fake of the client.
package s3test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running S3 server.
type Server struct {
	// Endpoint is the server's http://127.0.0.1:PORT address.
	Endpoint string
	backend  *s3mem.Backend
}

// Start starts a server that lives as long as the test, and sets the AWS
// credential and region environment variables the SDK needs to reach it.
func Start(t testing.TB) *Server {
	t.Helper()
	backend := s3mem.New()
	ts := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(ts.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return &Server{Endpoint: ts.URL, backend: backend}
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
