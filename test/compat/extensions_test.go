package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// An external extension started by the shim from --extensions-dir, as Lambda starts
// /opt/extensions (the emulator only looks at /opt/extensions, so it is not compared).
func TestExternalExtension(t *testing.T) {
	dir, _ := filepath.Abs("testdata/extensions")
	invokeAddr, apiAddr := freePort(t), freePort(t)
	cmd := exec.Command(shimBin, "exec", "--extensions-dir", dir, "--listen", invokeAddr, "--runtime-api", apiAddr, "--", goFuncBin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=1", "_HANDLER=secret.handler")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &peer{name: "shim+extension", url: "http://" + invokeAddr, logs: logs, cmd: cmd}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("log:\n%s", tailString(logs.String(), 5000))
		}
	})
	waitListenAddr(t, invokeAddr)
	// _HANDLER is hidden from external extensions (spec §7.1).
	p.waitLog(t, "EXTENSION registered; handler visible: no\n")

	r := p.invoke(t, []byte(`{"x":1}`), map[string]string{"X-Amzn-RequestId": "abcdef01-2222-4333-8444-555555555555"})
	expect(t, "echo", string(r.body), `{"x":1}`)
	p.waitLog(t, "EXTENSION saw abcdef01-2222-4333-8444-555555555555\n")

	// A timeout resets the environment: the extension gets SHUTDOWN with reason timeout,
	// then is stopped and started again with the runtime.
	r = p.invoke(t, []byte(`{"op":"sleep","ms":3000}`), nil)
	expect(t, "timeout", decode(t, r.body)["errorType"], "Sandbox.Timedout")
	p.waitLog(t, `EXTENSION got {"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":`)
	r = p.invoke(t, []byte(`{"x":2}`), map[string]string{"X-Amzn-RequestId": "abcdef02-2222-4333-8444-555555555555"})
	expect(t, "after reset", string(r.body), `{"x":2}`)
	p.waitLog(t, "EXTENSION saw abcdef02-2222-4333-8444-555555555555\n")

	// Stopping the shim sends SHUTDOWN (spindown).
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		stopped = true
	case <-time.After(5 * time.Second):
		t.Fatal("the shim did not stop")
	}
	p.waitLog(t, `EXTENSION got {"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":`)
}
