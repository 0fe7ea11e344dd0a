package compat

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeKubelet runs the function "container" and restarts it whenever it exits, as the
// kubelet does for a container with restartPolicy Always.
type fakeKubelet struct {
	logs     syncBuffer // the container's stdout, as the kubelet would keep it
	mu       sync.Mutex
	stop     bool
	restarts int
	cur      *exec.Cmd
	done     chan struct{}
}

func startKubelet(t *testing.T, env []string, command ...string) *fakeKubelet {
	k := &fakeKubelet{done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for {
			cmd := exec.Command(command[0], command[1:]...)
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdout, cmd.Stderr = &k.logs, &k.logs
			if err := cmd.Start(); err != nil {
				return
			}
			k.mu.Lock()
			k.cur = cmd
			k.mu.Unlock()
			_ = cmd.Wait()
			k.mu.Lock()
			if k.stop {
				k.mu.Unlock()
				return
			}
			k.restarts++
			k.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		k.mu.Lock()
		k.stop = true
		if k.cur != nil && k.cur.Process != nil {
			_ = k.cur.Process.Kill()
		}
		k.mu.Unlock()
		<-k.done
	})
	return k
}

func (k *fakeKubelet) restartCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.restarts
}

// startSidecarShim starts `runtime-shim sidecar` for the runtime processes carrying marker,
// with secret as its invoke secret and env added to its environment; it is stopped (its log
// printed if the test failed) when the test ends.
func startSidecarShim(t *testing.T, marker, secret string, env ...string) (invokeAddr, apiAddr string, logs *syncBuffer, shim *exec.Cmd) {
	t.Helper()
	invokeAddr, apiAddr = freePort(t), freePort(t)
	secretFile := t.TempDir() + "/secret"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shim = exec.Command(shimBin, "sidecar", "--listen", invokeAddr, "--runtime-api", apiAddr, "--runtime-marker", marker, "--secret-file", secretFile)
	shim.Env = append(os.Environ(), env...)
	logs = &syncBuffer{}
	shim.Stdout, shim.Stderr = logs, logs
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = shim.Process.Signal(syscall.SIGTERM)
		_ = shim.Wait()
		if t.Failed() {
			t.Logf("shim log:\n%s", tailString(logs.String(), 5000))
		}
	})
	return invokeAddr, apiAddr, logs, shim
}

// Sidecar mode: the runtime runs beside the shim (here: a process the test restarts like
// the kubelet; in a pod: another container in the shared process namespace). The shim
// finds its processes by the marker, kills them on a reset and sees crashes in /proc.
func TestSidecarMode(t *testing.T) {
	marker := fmt.Sprintf("KLAMBDA_COMPAT_SIDECAR=%d", time.Now().UnixNano())
	invokeAddr, apiAddr, logs, shim := startSidecarShim(t, marker, "pod-secret", "AWS_LAMBDA_FUNCTION_TIMEOUT=1", "AWS_LAMBDA_FUNCTION_NAME=side", "AWS_LAMBDA_FUNCTION_VERSION=7")
	p := &peer{name: "sidecar", url: "http://" + invokeAddr, logs: logs, cmd: shim}
	waitStatus := func(path string, want int) {
		t.Helper()
		for i := 0; i < 500; i++ {
			if resp, err := http.Get(p.url + path); err == nil {
				resp.Body.Close()
				if resp.StatusCode == want {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s never answered %d", path, want)
	}
	waitStatus("/healthz", 200)
	waitStatus("/readyz", 503) // no runtime yet
	// The function container's command wrapped by `runtime-shim pipe`, as the control plane
	// would: its output reaches the shim's log (and the container's own log).
	k := startKubelet(t, []string{marker, "AWS_LAMBDA_RUNTIME_API=" + apiAddr}, shimBin, "pipe", "--", goFuncBin)
	waitStatus("/readyz", 200)

	sec := map[string]string{"X-Klambda-Invoke-Secret": "pod-secret"}
	expect(t, "without the secret", p.invoke(t, []byte(`{}`), nil).status, 401)
	r := p.invoke(t, []byte(`{"side":"car"}`), sec)
	expect(t, "echo", string(r.body), `{"side":"car"}`)
	expect(t, "executed version", r.header.Get("X-Amz-Executed-Version"), "7")

	r = p.invoke(t, []byte(`{"op":"log"}`), sec)
	expect(t, "log op", string(r.body), `"logged"`)
	p.waitLog(t, "a line from the function\n")
	for i := 0; i < 100 && !strings.Contains(k.logs.String(), "a line on stderr\n"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(k.logs.String(), "a line from the function\na line on stderr\n") {
		t.Fatalf("container log: %q", k.logs.String())
	}

	// Timeout: the shim kills the runtime's processes; the "kubelet" restarts it.
	r = p.invoke(t, []byte(`{"op":"sleep","ms":5000}`), sec)
	expect(t, "timeout type", decode(t, r.body)["errorType"], "Sandbox.Timedout")
	r = p.invoke(t, []byte(`"after timeout"`), sec)
	expect(t, "after timeout", string(r.body), `"after timeout"`)
	if k.restartCount() != 1 || r.header.Get("X-Klambda-Init-Duration-Ms") == "" {
		t.Fatalf("restarts %d, init duration %q: want the runtime killed, restarted and re-initialised", k.restartCount(), r.header.Get("X-Klambda-Init-Duration-Ms"))
	}

	// A crash mid-invocation: `pipe` reports the exit status (without it the shim sees
	// the processes gone from /proc).
	start := time.Now()
	sec["X-Amzn-RequestId"] = "c0ffee00-2222-4333-8444-555555555555"
	r = p.invoke(t, []byte(`{"op":"exit"}`), sec)
	delete(sec, "X-Amzn-RequestId")
	expect(t, "crash body", string(r.body), `{"errorMessage":"RequestId: c0ffee00-2222-4333-8444-555555555555 Error: Runtime exited with error: exit status 3","errorType":"Runtime.ExitError"}`)
	if time.Since(start) > 900*time.Millisecond {
		t.Fatalf("crash answered after %v", time.Since(start))
	}
	expect(t, "after crash", string(p.invoke(t, []byte(`"back"`), sec).body), `"back"`)
}
