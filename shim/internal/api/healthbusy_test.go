package api

import (
	"testing"
	"time"

	"github.com/klambda/klambda/shim/internal/environment"
)

// TestHealthzReportsBusy: /healthz says whether an invocation is running, so an activator
// that restarted mid-invocation can tell a busy environment from an idle one.
func TestHealthzReportsBusy(t *testing.T) {
	h := newHarness(t, func(c *environment.Config) { c.Timeout = 30 * time.Second })
	expect(t, "idle", do(t, "GET", h.invoke.URL+"/healthz", nil, nil).header.Get("X-Klambda-Busy"), "false")
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "running"}, `{}`)
	h.next()
	expect(t, "while invoking", do(t, "GET", h.invoke.URL+"/healthz", nil, nil).header.Get("X-Klambda-Busy"), "true")
	h.post("/2018-06-01/runtime/invocation/running/response", nil, `{}`)
	expect(t, "answered", (<-resCh).status, 200)
	expect(t, "after", do(t, "GET", h.invoke.URL+"/healthz", nil, nil).header.Get("X-Klambda-Busy"), "false")
}
