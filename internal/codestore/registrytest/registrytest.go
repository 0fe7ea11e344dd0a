// Package registrytest runs a real OCI registry, the CNCF distribution registry's own
// handler (github.com/distribution/distribution/v3), in a test's HTTP server: the code
// store's tests and the controllers' run against it, not a fake. Imported by tests only.
package registrytest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage
	"github.com/sirupsen/logrus"
)

// Start serves a distribution registry with deletes enabled, its blobs in a temporary
// folder, until the test ends. It returns the registry's host:port (plain HTTP).
func Start(t testing.TB) string {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith is Start with the registry's handler wrapped by wrap (nil: none), e.g. to count
// the requests the code under test makes.
func StartWith(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	return StartOn(t, "127.0.0.1:0", wrap)
}

// StartOn is StartWith listening on addr, e.g. 127.0.0.2:0: a loopback address that
// go-containerregistry does not take for a local registry (127.0.0.1, localhost), so that
// only a plain-HTTP setting makes a client reach it without TLS.
func StartOn(t testing.TB, addr string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	// The registry exports traces to localhost:4318 unless told not to.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		t.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	cfg, err := configuration.Parse(strings.NewReader(`
version: 0.1
log:
  level: error
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: ` + t.TempDir() + `}
  delete: {enabled: true}
  maintenance:
    uploadpurging: {enabled: false}
http:
  addr: 127.0.0.1:0
`))
	if err != nil {
		t.Fatalf("registry configuration: %v", err)
	}
	// The registry logs every request through logrus' standard logger at info.
	logrus.SetLevel(logrus.ErrorLevel)
	ctx, cancel := context.WithCancel(context.Background())
	var h http.Handler = handlers.NewApp(ctx, cfg)
	if wrap != nil {
		h = wrap(h)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}
