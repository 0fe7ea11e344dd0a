package compat

import (
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// klambda's minimal Python runtime interface client (hack/runtimes/python/klambda_ric.py,
// the local Python image's runtime: awslambdaric comes from PyPI, unreachable here) runs
// real Python handlers against the shim. (Against the AWS runtime interface emulator it
// never reaches /invocation/next within the timeout; not investigated yet.)
func TestPythonRIC(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3") // Debian's, as the local image carries (not a pyenv shim)
	if err != nil {
		t.Skip("python3 is not installed")
	}
	ric, _ := filepath.Abs("../../hack/runtimes/python/klambda_ric.py")
	dir, _ := filepath.Abs("testdata/python")
	t.Run(peerShim, func(t *testing.T) {
		kind := peerShim
		env := []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=app.handler"}
		p := startPeer(t, kind, "2", env, dir, py, ric, "app.handler")
		p.warmUp(t, `"warm"`)

		r := p.invokeJSON(t, `{"hello":"python"}`)
		expect(t, "status", r.status, 200)
		expect(t, "body", string(r.body), `{"echo": {"hello": "python"}}`)

		r = p.invokeJSON(t, `{"op":"raise"}`)
		expect(t, "raise status", r.status, 200)
		m := decode(t, r.body)
		expect(t, "raise type", m["errorType"], "ValueError")
		expect(t, "raise message", m["errorMessage"], "python says no")
		if tr, ok := m["stackTrace"].([]any); !ok || len(tr) == 0 || !strings.Contains(tr[len(tr)-1].(string), "app.py") {
			t.Fatalf("the error carries the handler's stack trace: %s", r.body)
		}
		if kind == peerShim {
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		}

		cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"team":"k"}}`))
		r = p.invoke(t, []byte(`{"op":"context"}`), map[string]string{"X-Amz-Client-Context": cc})
		m = decode(t, r.body)
		if rem := m["remainingMs"].(float64); rem <= 0 || rem > 2000 {
			t.Fatalf("get_remaining_time_in_millis() = %v, want within the 2 s timeout", rem)
		}
		if id, _ := m["requestId"].(string); id == "" {
			t.Fatalf("aws_request_id empty: %s", r.body)
		}
		if c, _ := m["custom"].(map[string]any); c["team"] != "k" {
			t.Fatalf("client_context.custom: %s", r.body)
		}

		start := time.Now()
		r = p.invokeJSON(t, `{"op":"sleep","ms":5000}`)
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("timeout answered after %v", d)
		}
		if !strings.Contains(string(r.body), "Task timed out after 2.00 seconds") {
			t.Fatalf("timeout body %s", r.body)
		}
		if kind == peerShim {
			expect(t, "after timeout", string(p.invokeJSON(t, `1`).body), `{"echo": 1}`)
			p.waitLog(t, "python got 1\n")
		}
	})
}
