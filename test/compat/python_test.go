package compat

import (
	"encoding/base64"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// klambda's minimal Python runtime interface client (hack/runtimes/python/klambda_ric.py,
// the local Python images' runtime: awslambdaric comes from PyPI, unreachable here) runs
// real Python handlers against the shim. (Against the AWS runtime interface emulator it
// never reaches /invocation/next within the timeout; not investigated yet.)
func TestPythonRIC(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3") // Debian's, as the local image carries (not a pyenv shim)
	if err != nil {
		t.Skip("python3 is not installed")
	}
	testPythonRIC(t, py, nil, 2)
}

// The same on CPython 3.12 and 3.13 as the python3.12 and python3.13 images carry them
// (python-build-standalone's builds, hack/runtimes/python/standalone.sh).
func TestPythonStandaloneRIC(t *testing.T) {
	for _, minor := range []string{"3.12", "3.13"} {
		t.Run(minor, func(t *testing.T) {
			py := standalonePython(t, minor, "amd64")
			r := testPythonRIC(t, py, nil, 2)
			if !strings.HasPrefix(r["version"].(string), minor+".") || r["machine"] != "x86_64" || r["executable"] != py {
				t.Fatalf("the handler ran on %v, want python%s on x86_64 at %s", r, minor, py)
			}
		})
	}
}

// standalonePython is the interpreter standalone.sh unpacked for minor and arch, or skips.
func standalonePython(t *testing.T, minor, arch string) string {
	t.Helper()
	marks, _ := filepath.Glob(filepath.Join(cacheDir(), "python-standalone", minor+".*-linux-"+arch, ".complete"))
	if len(marks) == 0 {
		t.Skipf("CPython %s for %s is not unpacked: run hack/runtimes/python/standalone.sh %s %s", minor, arch, minor, arch)
	}
	return filepath.Join(filepath.Dir(marks[len(marks)-1]), "bin", "python"+minor)
}

// testPythonRIC runs klambda_ric.py on the interpreter py under the shim (timeout seconds):
// result, error, context and timeout. It returns what the handler says of its runtime.
func testPythonRIC(t *testing.T, py string, env []string, timeout int) map[string]any {
	ric, _ := filepath.Abs("../../hack/runtimes/python/klambda_ric.py")
	dir, _ := filepath.Abs("testdata/python")
	env = append([]string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=app.handler"}, env...)
	p := startPeer(t, peerShim, fmt.Sprint(timeout), env, dir, py, ric, "app.handler")
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
	expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")

	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"team":"k"}}`))
	r = p.invoke(t, []byte(`{"op":"context"}`), map[string]string{"X-Amz-Client-Context": cc})
	m = decode(t, r.body)
	if rem := m["remainingMs"].(float64); rem <= 0 || rem > float64(timeout*1000) {
		t.Fatalf("get_remaining_time_in_millis() = %v, want within the %d s timeout", rem, timeout)
	}
	if id, _ := m["requestId"].(string); id == "" {
		t.Fatalf("aws_request_id empty: %s", r.body)
	}
	expect(t, "function_name", m["function"], "compat")
	if c, _ := m["custom"].(map[string]any); c["team"] != "k" {
		t.Fatalf("client_context.custom: %s", r.body)
	}
	runtime := decode(t, p.invokeJSON(t, `{"op":"runtime"}`).body)

	start := time.Now()
	r = p.invokeJSON(t, fmt.Sprintf(`{"op":"sleep","ms":%d}`, (timeout+3)*1000))
	if d := time.Since(start); d > time.Duration(timeout+2)*time.Second {
		t.Fatalf("timeout answered after %v", d)
	}
	if want := fmt.Sprintf("Task timed out after %d.00 seconds", timeout); !strings.Contains(string(r.body), want) {
		t.Fatalf("timeout body %s, want %q", r.body, want)
	}
	expect(t, "after timeout", string(p.invokeJSON(t, `1`).body), `{"echo": 1}`)
	p.waitLog(t, "python got 1\n")
	return runtime
}
