package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/shim/internal/environment"
)

// FuzzRuntimeAPIRequest feeds arbitrary requests to the Runtime, Extensions and Logs API
// handler of an environment with an invocation in flight: whatever arrives, the shim
// answers with one of Lambda's status codes and a JSON error, never panics, and stays
// consistent (the invocation can still be answered afterwards).
func FuzzRuntimeAPIRequest(f *testing.F) {
	f.Add("GET", "/2018-06-01/runtime/invocation/next", "", "", []byte(nil))
	f.Add("POST", "/2018-06-01/runtime/invocation/fuzz-id/response", "", "", []byte(`{"a":1}`))
	f.Add("POST", "/2018-06-01/runtime/invocation/fuzz-id/error", "Lambda-Runtime-Function-Error-Type", "Runtime.X", []byte(`{"errorMessage":"m"}`))
	f.Add("POST", "/2018-06-01/runtime/invocation/other/error", "", "", []byte(`not json`))
	f.Add("POST", "/2018-06-01/runtime/init/error", "Lambda-Runtime-Function-Error-Type", "Runtime.Init", []byte(`{`))
	f.Add("POST", "/2020-01-01/extension/register", "Lambda-Extension-Name", "e", []byte(`{"events":["INVOKE"]}`))
	f.Add("GET", "/2020-01-01/extension/event/next", "Lambda-Extension-Identifier", "nope", []byte(nil))
	f.Add("PUT", "/2020-08-15/logs", "Lambda-Extension-Identifier", "nope", []byte(`{"types":["platform"]}`))
	f.Add("POST", "/2018-06-01/runtime/invocation//response", "", "", []byte(`x`))
	f.Fuzz(func(t *testing.T, method, path, hk, hv string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		cfg := environment.Config{FunctionName: "f", FunctionVersion: "$LATEST", MemorySizeMB: 128, Timeout: time.Minute, InitTimeout: time.Minute, Region: "us-east-1", AccountID: "1"}
		env := environment.NewEnvironment(&cfg, environment.NewLogSink(&bytes.Buffer{}), nil)
		quit := make(chan struct{})
		close(quit) // nothing may block in a fuzz run
		api := NewRuntimeAPI(env, quit)
		if rt, id := api.routes.match(path); rt != nil && rt.param && (id == "" || strings.Contains(id, "/")) {
			t.Fatalf("route %s with request id %q from %q", rt.path, id, path)
		}
		inv := environment.NewInvocation()
		inv.ID = "fuzz-id"
		// The runtime's first next ends init; it is given the invocation.
		taken := make(chan *environment.Invocation, 1)
		if _, _, err := env.Next(nil, func(inv *environment.Invocation, _ error) { taken <- inv }); err != nil {
			t.Fatal(err)
		}
		env.Invoke(inv, func(error) {})
		(<-taken).Release()

		req, rerr := http.NewRequest(method, "http://rapi"+path, bytes.NewReader(body))
		if rerr != nil {
			return
		}
		if hk != "" && validHeaderKey(hk) {
			req.Header.Set(hk, strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f {
					return -1
				}
				return r
			}, hv))
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 202, 400, 403, 404, 405, 413, 500:
		default:
			t.Fatalf("%s %s: status %d", method, path, rec.Code)
		}
		if rec.Code >= 400 && !bytes.HasPrefix(rec.Body.Bytes(), []byte(`{"errorMessage":`)) {
			t.Fatalf("%s %s: error body %q", method, path, rec.Body.String())
		}
		// Consistency: unless the fuzzed call answered it, the invocation can still be answered.
		rec = httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest("POST", "http://rapi/2018-06-01/runtime/invocation/fuzz-id/response", strings.NewReader(`1`)))
		select {
		case <-inv.Done():
		case <-time.After(time.Second):
			t.Fatalf("invocation unanswered after %s %s (then response: %d %s)", method, path, rec.Code, rec.Body.String())
		}
		env.Shutdown()
	})
}

func validHeaderKey(k string) bool {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
