package compat

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The guide's custom-runtime tutorial: a bash bootstrap using curl.
func TestBashBootstrap(t *testing.T) {
	dir, _ := filepath.Abs("testdata/bash")
	bothPeers(t, func(t *testing.T, kind string) {
		env := []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=function.handler"}
		// A bash runtime forks curl per call: give it 3 s, the machine may be busy.
		p := startPeer(t, kind, "3", env, dir, filepath.Join(dir, "bootstrap"))
		p.warmUp(t, `"warm"`)

		r := p.invokeJSON(t, `{"text":"Hello"}`)
		expect(t, "echo status", r.status, 200)
		expect(t, "echo body", string(r.body), `Echoing request: '{"text":"Hello"}'`)

		r = p.invokeJSON(t, `{"fail":true}`)
		expect(t, "error status", r.status, 200)
		expect(t, "error body", string(r.body), `{"errorMessage":"handler failed: bad input","errorType":"HandlerError"}`)
		if kind == peerShim {
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
			// The handler's stderr line lands in the log between START and END.
			p.waitLog(t, "{\"fail\":true}\nEND RequestId: ")
		}

		start := time.Now()
		r = p.invokeJSON(t, `{"sleep":1}`)
		if d := time.Since(start); d > 6*time.Second {
			t.Fatalf("timeout answered after %v", d)
		}
		if !strings.Contains(string(r.body), "Task timed out after 3.00 seconds") {
			t.Fatalf("timeout body %s", r.body)
		}
		if kind == peerShim {
			// Both reset the environment after a timeout, but the emulator re-initialises
			// inside the next invoke, counting the init against its timeout; on a busy
			// machine that invoke can time out too, so retry it.
			expect(t, "after timeout", string(p.invokeJSON(t, `"again"`).body), `Echoing request: '"again"'`)
		} else {
			p.warmUp(t, `"drain"`)
		}

		r = p.invokeJSON(t, `{"crash":1}`)
		m := decode(t, r.body)
		expect(t, "crash type", m["errorType"], "Runtime.ExitError")
		if !strings.HasSuffix(m["errorMessage"].(string), "Error: Runtime exited with error: exit status 7") {
			t.Fatalf("crash message %q", m["errorMessage"])
		}
		expect(t, "after crash", string(p.invokeJSON(t, `"back"`).body), `Echoing request: '"back"'`)
	})
}

func TestBashBootstrapInitError(t *testing.T) {
	dir, _ := filepath.Abs("testdata/bash")
	bothPeers(t, func(t *testing.T, kind string) {
		env := []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=missing.handler"}
		p := startPeer(t, kind, "2", env, dir, filepath.Join(dir, "bootstrap"))
		r := p.invokeJSON(t, `{}`)
		// The runtime's /init/error body reaches the caller as the function error.
		expect(t, "init error body", string(r.body), `{"errorMessage":"Failed to load function.","errorType":"InvalidFunctionException"}`)
		if kind == peerShim {
			expect(t, "status", r.status, 200)
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		} else {
			t.Logf("emulator status for an init error: %d", r.status)
		}
	})
}
