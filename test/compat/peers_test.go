// Package compat runs Lambda runtimes this project did not write (aws-lambda-go, the
// Node.js runtime interface client, a curl bootstrap) against runtime-shim in exec mode
// and, as the reference, against the AWS runtime interface emulator (aws-lambda-rie).
//
// Install the peers first (CI does):
//
//	test/compat/install-rie.sh   # aws-lambda-rie into ~/.cache/klambda/bin
//	test/compat/install-ric.sh   # npm aws-lambda-ric 3.3.0 into ~/.cache/klambda/aws-lambda-ric
//
// Tests needing a missing peer skip with a message saying which script to run.
package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir    string // built binaries, shared by every test
	shimBin   string
	goFuncBin string
)

func cacheDir() string {
	if d := os.Getenv("KLAMBDA_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "klambda")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "klambda-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	shimBin = filepath.Join(dir, "runtime-shim")
	goFuncBin = filepath.Join(dir, "gofunction")
	for _, b := range []struct{ out, pkg, tags string }{
		{shimBin, "./cmd/runtime-shim", ""},
		{goFuncBin, "./test/compat/gofunction", "lambda.norpc"},
	} {
		args := []string{"build", "-o", b.out}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// peer is one Lambda environment under test: runtime-shim or the emulator.
type peer struct {
	name string
	url  string
	logs *syncBuffer
	cmd  *exec.Cmd
}

const (
	peerShim = "shim"
	peerRIE  = "rie"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func rieBin() string { return filepath.Join(cacheDir(), "bin", "aws-lambda-rie") }

// startPeer starts kind ("shim" or "rie") running the runtime command, with the function
// timeout in seconds and extra environment.
func startPeer(t *testing.T, kind string, timeout string, env []string, dir string, command ...string) *peer {
	t.Helper()
	return startPeerWith(t, kind, nil, timeout, env, dir, command...)
}

// startPeerWith is startPeer with more flags for runtime-shim exec (before the "--").
func startPeerWith(t *testing.T, kind string, shimFlags []string, timeout string, env []string, dir string, command ...string) *peer {
	t.Helper()
	// freePort closes its listener before the peer binds the port, so another process can
	// take it in between (a listener of a test package running in parallel, or simply the
	// source port of an outgoing loopback connection: both come from the ephemeral range).
	// A peer that then fails to bind exits; start it again on other ports.
	for attempt := 1; ; attempt++ {
		p, err := tryStartPeer(t, kind, shimFlags, timeout, env, dir, command...)
		if err == nil {
			return p
		}
		if attempt == 3 {
			t.Fatalf("starting %s: %v", kind, err)
		}
		t.Logf("starting %s: %v; trying other ports", kind, err)
	}
}

func tryStartPeer(t *testing.T, kind string, shimFlags []string, timeout string, env []string, dir string, command ...string) (*peer, error) {
	t.Helper()
	invokeAddr, apiAddr := freePort(t), freePort(t)
	for apiAddr == invokeAddr {
		apiAddr = freePort(t)
	}
	var cmd *exec.Cmd
	switch kind {
	case peerShim:
		args := append([]string{"exec", "--listen", invokeAddr, "--runtime-api", apiAddr}, shimFlags...)
		cmd = exec.Command(shimBin, append(append(args, "--"), command...)...)
	case peerRIE:
		if _, err := os.Stat(rieBin()); err != nil {
			t.Skipf("aws-lambda-rie not installed at %s: run test/compat/install-rie.sh", rieBin())
		}
		cmd = exec.Command(rieBin(), append([]string{"--runtime-interface-emulator-address", invokeAddr, "--runtime-api-address", apiAddr}, command...)...)
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT="+timeout, "AWS_LAMBDA_FUNCTION_NAME=compat", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128")
	cmd.Env = append(cmd.Env, env...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", kind, err)
	}
	p := &peer{name: kind, url: "http://" + invokeAddr, logs: logs, cmd: cmd}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", kind, tailString(logs.String(), 6000))
		}
	})
	// Wait until it listens (the shim also answers /healthz; the emulator has no probe).
	if err := waitListen(invokeAddr, done); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", kind, err, tailString(logs.String(), 2000))
	}
	// Give a peer that lost its port to another process the time to notice and exit.
	select {
	case <-done:
		return nil, fmt.Errorf("%s exited at start-up: %s", kind, tailString(logs.String(), 2000))
	case <-time.After(100 * time.Millisecond):
	}
	if kind == peerShim {
		resp, err := client.Get(p.url + "/healthz")
		if err != nil {
			return nil, fmt.Errorf("asking %s for /healthz: %w", invokeAddr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("something other than the shim answers on %s (/healthz: %d)", invokeAddr, resp.StatusCode)
		}
	}
	return p, nil
}

func waitListenAddr(t *testing.T, addr string) {
	t.Helper()
	if err := waitListen(addr, nil); err != nil {
		t.Fatal(err)
	}
}

// waitListen waits until something listens on addr, for about five seconds, or until
// exited is closed (the process that should listen there has gone).
func waitListen(addr string, exited <-chan struct{}) error {
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		default:
		}
		if i > 200 {
			return fmt.Errorf("nothing listens on %s", addr)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 60 * time.Second}

func (p *peer) invoke(t *testing.T, body []byte, header map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest("POST", p.url+"/2015-03-31/functions/function/invocations", bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: invoke: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (p *peer) status(t *testing.T, path string) int {
	t.Helper()
	resp, err := client.Get(p.url + path)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.name, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *peer) invokeJSON(t *testing.T, body string) reply {
	return p.invoke(t, []byte(body), nil)
}

// warmUp makes the emulator initialise the runtime (it does so at the first invoke, and
// counts the init against that invoke's timeout), so that timing assertions compare warm
// environments. The shim initialises at start-up.
func (p *peer) warmUp(t *testing.T, payload string) {
	t.Helper()
	if p.name != peerRIE {
		return
	}
	for i := 0; i < 8; i++ {
		r := p.invokeJSON(t, payload)
		if !strings.Contains(string(r.body), "Task timed out") {
			return
		}
	}
	t.Fatalf("%s never finished its init", p.name)
}

// waitLog waits until the peer's log contains s.
func (p *peer) waitLog(t *testing.T, s string) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if strings.Contains(p.logs.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s log never showed %q:\n%s", p.name, s, tailString(p.logs.String(), 4000))
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %q", tailString(string(b), 300))
	}
	return m
}

// bothPeers runs f against the shim and the emulator as subtests.
func bothPeers(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range []string{peerShim, peerRIE} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, kind)
		})
	}
}
