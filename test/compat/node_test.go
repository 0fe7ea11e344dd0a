package compat

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ricCommand(t *testing.T) []string {
	dir := filepath.Join(cacheDir(), "aws-lambda-ric")
	bin := filepath.Join(dir, "node_modules", ".bin", "aws-lambda-ric")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		t.Skipf("aws-lambda-ric not installed in %s: run test/compat/install-ric.sh (needs apt-get install -y cmake autoconf automake libtool g++ make; builds ~8 min)", dir)
	}
	return []string{bin, "index.handler"}
}

// The Node.js runtime interface client (npm aws-lambda-ric), as in Lambda's Node images.
func TestNodeRIC(t *testing.T) {
	cmd := ricCommand(t)
	dir, _ := filepath.Abs("testdata/node")
	bothPeers(t, func(t *testing.T, kind string) {
		env := []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=index.handler"}
		p := startPeer(t, kind, "2", env, dir, cmd...)
		p.warmUp(t, `"warm"`)

		r := p.invokeJSON(t, `{"hello":"node"}`)
		expect(t, "async status", r.status, 200)
		expect(t, "async body", string(r.body), `{"echo":{"hello":"node"}}`)

		r = p.invokeJSON(t, `{"op":"throw"}`)
		expect(t, "throw status", r.status, 200)
		m := decode(t, r.body)
		expect(t, "throw type", m["errorType"], "Error")
		expect(t, "throw message", m["errorMessage"], "node says no")
		if tr, ok := m["trace"].([]any); !ok || len(tr) == 0 || !strings.HasPrefix(tr[0].(string), "Error: node says no") {
			t.Fatalf("Node error objects carry a trace: %s", r.body)
		}
		if kind == peerShim {
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		}

		cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"team":"k"}}`))
		r = p.invoke(t, []byte(`{"op":"context"}`), map[string]string{"X-Amz-Client-Context": cc})
		m = decode(t, r.body)
		if rem := m["remainingMs"].(float64); rem <= 0 || rem > 2000 {
			t.Fatalf("getRemainingTimeInMillis() = %v, want within the 2 s timeout", rem)
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
			// Both reset the environment after a timeout, but the emulator re-initialises
			// lazily inside the next invoke, counting the init against that invoke's 2 s:
			// on a busy machine it times out too, so it is not compared.
			expect(t, "after timeout", string(p.invokeJSON(t, `1`).body), `{"echo":1}`)
			p.waitLog(t, "\tINFO\tnode got 1\n")
		}
	})
}
