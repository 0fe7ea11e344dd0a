package api

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/klambda/klambda/shim/internal/environment"
)

// TestRouteTable: the Runtime API's and the invoke endpoint's paths map to one route
// each, as the hand-written parser they replace did: {id} is one non-empty segment,
// {name...} anything; a known path with another method is 405, anything else 404.
func TestRouteTable(t *testing.T) {
	env := environment.NewEnvironment(&environment.Config{FunctionName: "f"}, environment.NewLogSink(&bytes.Buffer{}), nil)
	api, inv := NewRuntimeAPI(env, nil), NewInvokeServer(env)
	cases := []struct {
		table       *routeTable
		path, route string
		param       string
	}{
		{api.routes, "/2018-06-01/runtime/invocation/next", runtimePrefix + "invocation/next", ""},
		{api.routes, "/2018-06-01/runtime/invocation/abc/response", runtimePrefix + "invocation/{id}/response", "abc"},
		{api.routes, "/2018-06-01/runtime/invocation/next/response", runtimePrefix + "invocation/{id}/response", "next"},
		{api.routes, "/2018-06-01/runtime/invocation/abc/error", runtimePrefix + "invocation/{id}/error", "abc"},
		{api.routes, "/2018-06-01/runtime/invocation//response", "", ""},
		{api.routes, "/2018-06-01/runtime/invocation/a/b/response", "", ""},
		{api.routes, "/2018-06-01/runtime/invocation/abc/other", "", ""},
		{api.routes, "/2018-06-01/runtime/init/error", runtimePrefix + "init/error", ""},
		{api.routes, "/2020-01-01/extension/register", extensionPrefix + "register", ""},
		{api.routes, "/2020-01-01/extension/event/next", extensionPrefix + "event/next", ""},
		{api.routes, "/2020-01-01/extension/init/error", extensionPrefix + "init/error", ""},
		{api.routes, "/2020-01-01/extension/exit/error", extensionPrefix + "exit/error", ""},
		{api.routes, "/2020-08-15/logs", logsPath, ""},
		{api.routes, "/2021-03-18/logs", logsPath20210318, ""},
		{api.routes, PipeLogsPath, PipeLogsPath, ""},
		{api.routes, PipeExitPath, PipeExitPath, ""},
		{api.routes, "/2018-06-01/runtime/invocation/next/", "", ""},
		{inv.routes, "/2015-03-31/functions/function/invocations", "/2015-03-31/functions/{name...}/invocations", "function"},
		{inv.routes, "/2015-03-31/functions/a/b/invocations", "/2015-03-31/functions/{name...}/invocations", "a/b"},
		{inv.routes, "/healthz", "/healthz", ""},
		{inv.routes, "/readyz", "/readyz", ""},
		{inv.routes, "/2015-03-31/functions/f/invocation", "", ""},
	}
	for _, c := range cases {
		rt, p := c.table.match(c.path)
		got := ""
		if rt != nil {
			got = rt.path
		}
		if got != c.route || p != c.param {
			t.Errorf("%s: route %q param %q, want %q %q", c.path, got, p, c.route, c.param)
		}
	}
	status := func(h *routeTable, method, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "http://x"+path, nil))
		return rec.Code
	}
	expect(t, "GET response", status(api.routes, "GET", "/2018-06-01/runtime/invocation/abc/response"), 405)
	expect(t, "POST next", status(api.routes, "POST", "/2018-06-01/runtime/invocation/next"), 405)
	expect(t, "GET logs", status(api.routes, "GET", "/2020-08-15/logs"), 405)
	expect(t, "unknown", status(api.routes, "GET", "/nope"), 404)
	expect(t, "GET invoke", status(inv.routes, "GET", "/2015-03-31/functions/function/invocations"), 405)
	expect(t, "unknown invoke path", status(inv.routes, "POST", "/2015-03-31/functions/f"), 404)
}
