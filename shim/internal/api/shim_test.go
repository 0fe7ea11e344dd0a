package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/environment"
)

// fakeSupervisor stands in for the runtime's processes: the test plays the runtime over
// HTTP and learns from starts when a new generation begins.
type fakeSupervisor struct {
	starts chan uint64
	stops  atomic.Int32
}

func (f *fakeSupervisor) Start(gen uint64) error      { f.starts <- gen; return nil }
func (f *fakeSupervisor) Stop(time.Duration)          { f.stops.Add(1) }
func (f *fakeSupervisor) MaxMemoryUsedMB() int        { return 20 }
func (f *fakeSupervisor) HasExternalExtensions() bool { return false }
func (f *fakeSupervisor) HasRestartingRuntime() bool  { return false }

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

type harness struct {
	t      *testing.T
	env    *environment.Environment
	sup    *fakeSupervisor
	rapi   *testServer
	invoke *testServer
	out    *syncBuffer
	quit   chan struct{}
}

func newHarness(t *testing.T, mutate func(*environment.Config)) *harness {
	t.Helper()
	cfg := environment.Config{FunctionName: "echo", FunctionVersion: "3", MemorySizeMB: 128, Timeout: time.Second,
		Region: "eu-west-1", AccountID: "123456789012", InitTimeout: environment.DefaultInitTimeout, ShutdownGrace: 20 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	h := &harness{t: t, sup: &fakeSupervisor{starts: make(chan uint64, 16)}, out: &syncBuffer{}, quit: make(chan struct{})}
	logs := environment.NewLogSink(h.out)
	h.env = environment.NewEnvironment(&cfg, logs, h.sup)
	h.rapi, h.invoke = newServers(t, h.env, h.quit)
	h.env.Begin()
	h.waitStart(1)
	t.Cleanup(func() {
		close(h.quit)
		h.env.Shutdown()
		h.rapi.Close()
		h.invoke.Close()
	})
	return h
}

// testServer is the shim's HTTP server (transport.Server over transport.Listener) on a loopback port.
type testServer struct {
	URL string
	srv *transport.Server
}

// newRawServer serves h as the shim does: transport.Server over transport.Listener.
func newRawServer(h http.Handler) *testServer { return newRawServerBody(h, 0) }

// newRawServerBody is newRawServer with a BodyTimeout (the invoke endpoint's).
func newRawServerBody(h http.Handler, bodyTimeout time.Duration) *testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := &testServer{URL: "http://" + ln.Addr().String(), srv: &transport.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, BodyTimeout: bodyTimeout}}
	if bodyTimeout > 0 { // the invoke endpoint's
		s.srv.MaxHeaderBytes = InvokeMaxHeaderBytes
	}
	go func() { _ = s.srv.Serve(transport.Listener{Listener: ln}) }()
	return s
}

func (s *testServer) Close() {
	_ = s.srv.Close()
}

// newServers serves env's Runtime API and invoke endpoint on loopback ports as the shim
// does: transport.Server over transport.Listener.
func newServers(t *testing.T, env *environment.Environment, quit chan struct{}) (rapi, invoke *testServer) {
	api, inv := NewRuntimeAPI(env, quit), NewInvokeServer(env)
	return newRawServer(api), newRawServerBody(inv, env.Config().EffectiveBodyTimeout())
}

func (h *harness) waitStart(gen uint64) {
	h.t.Helper()
	select {
	case g := <-h.sup.starts:
		if g != gen {
			h.t.Fatalf("started generation %d, want %d", g, gen)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatalf("generation %d never started", gen)
	}
}

type reply struct {
	status int
	header http.Header
	body   string
}

// request is safe in any goroutine; a transport error gives status 0 and the error text.
func request(method, url string, header map[string]string, body []byte) reply {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{0, http.Header{}, err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func do(t *testing.T, method, url string, header map[string]string, body []byte) reply {
	t.Helper()
	r := request(method, url, header, body)
	if r.status == 0 {
		t.Fatalf("%s %s: %s", method, url, r.body)
	}
	return r
}

func (h *harness) next() reply {
	return do(h.t, "GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
}

func (h *harness) post(path string, header map[string]string, body string) reply {
	return do(h.t, "POST", h.rapi.URL+path, header, []byte(body))
}

func (h *harness) callInvoke(header map[string]string, body string) reply {
	return do(h.t, "POST", h.invoke.URL+"/2015-03-31/functions/function/invocations", header, []byte(body))
}

// invokeAsync invokes in the background.
func (h *harness) invokeAsync(header map[string]string, body string) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		ch <- request("POST", h.invoke.URL+"/2015-03-31/functions/function/invocations", header, []byte(body))
	}()
	return ch
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

var reportRE = regexp.MustCompile(`^REPORT RequestId: ([0-9a-z-]+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\t(Init Duration: \d+\.\d\d ms\t)?$`)

func TestInvokeRoundTrip(t *testing.T) {
	h := newHarness(t, nil)
	cc := `{"custom":{"k":"v"}}`
	before := time.Now()
	resCh := h.invokeAsync(map[string]string{
		"X-Amzn-RequestId":               "req-1",
		"X-Amz-Client-Context":           base64.StdEncoding.EncodeToString([]byte(cc)),
		"X-Amz-Cognito-Identity":         `{"cognitoIdentityId":"id1","cognitoIdentityPoolId":"pool1"}`,
		"X-Amzn-Trace-Id":                "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1",
		"X-Amz-Log-Type":                 "Tail",
		"X-Klambda-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123456789012:function:echo:live",
	}, `{"hello":"world"}`)
	ev := h.next()
	after := time.Now()
	expect(t, "next status", ev.status, 200)
	expect(t, "event body", ev.body, `{"hello":"world"}`)
	expect(t, "request id", ev.header.Get("Lambda-Runtime-Aws-Request-Id"), "req-1")
	expect(t, "invoked arn", ev.header.Get("Lambda-Runtime-Invoked-Function-Arn"), "arn:aws:lambda:eu-west-1:123456789012:function:echo:live")
	expect(t, "client context", ev.header.Get("Lambda-Runtime-Client-Context"), cc)
	expect(t, "cognito", ev.header.Get("Lambda-Runtime-Cognito-Identity"), `{"cognitoIdentityId":"id1","cognitoIdentityPoolId":"pool1"}`)
	expect(t, "trace id", ev.header.Get("Lambda-Runtime-Trace-Id"), "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1")
	dl, _ := strconv.ParseInt(ev.header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	// Epoch milliseconds: dispatch time + the 1 s timeout, dispatch being between before and after.
	if d := time.UnixMilli(dl); d.Before(before.Add(time.Second-time.Millisecond)) || d.After(after.Add(time.Second)) {
		t.Fatalf("deadline %v, want dispatch + 1 s within [%v, %v]", d, before.Add(time.Second), after.Add(time.Second))
	}
	r := h.post("/2018-06-01/runtime/invocation/req-1/response", nil, `{"answer":42}`)
	expect(t, "response status", r.status, 202)
	expect(t, "response body", r.body, `{"status":"OK"}`)
	res := <-resCh
	expect(t, "invoke status", res.status, 200)
	expect(t, "invoke body", res.body, `{"answer":42}`)
	expect(t, "executed version", res.header.Get("X-Amz-Executed-Version"), "3")
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "")
	expect(t, "request id", res.header.Get("X-Amzn-RequestId"), "req-1")
	tail, _ := base64.StdEncoding.DecodeString(res.header.Get("X-Amz-Log-Result"))
	lines := strings.Split(strings.TrimSuffix(string(tail), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("tail has %d lines, want START, END, REPORT:\n%s", len(lines), tail)
	}
	expect(t, "START", lines[0], "START RequestId: req-1 Version: 3")
	expect(t, "END", lines[1], "END RequestId: req-1")
	m := reportRE.FindStringSubmatch(lines[2])
	if m == nil || m[1] != "req-1" || m[2] == "" {
		t.Fatalf("REPORT line %q: want Lambda's format with Init Duration on the first invocation", lines[2])
	}

	// Warm: no Init Duration, a fresh request id when none is given.
	resCh = h.invokeAsync(map[string]string{"X-Amz-Log-Type": "Tail"}, `[1,2]`)
	ev = h.next()
	id := ev.header.Get("Lambda-Runtime-Aws-Request-Id")
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("generated request id %q is not a UUID", id)
	}
	expect(t, "default arn", ev.header.Get("Lambda-Runtime-Invoked-Function-Arn"), "arn:aws:lambda:eu-west-1:123456789012:function:echo")
	h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `null`)
	res = <-resCh
	expect(t, "body", res.body, "null")
	tail, _ = base64.StdEncoding.DecodeString(res.header.Get("X-Amz-Log-Result"))
	lines = strings.Split(strings.TrimSuffix(string(tail), "\n"), "\n")
	if m := reportRE.FindStringSubmatch(lines[len(lines)-1]); m == nil || m[2] != "" {
		t.Fatalf("warm REPORT %q: want no Init Duration", lines[len(lines)-1])
	}
	// A larger event goes with its length, not chunked.
	big := `{"data":"` + strings.Repeat("x", 64<<10) + `"}`
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "big-event"}, big)
	ev = h.next()
	expect(t, "big event", ev.body == big, true)
	expect(t, "big event length", ev.header.Get("Content-Length"), strconv.Itoa(len(big)))
	h.post("/2018-06-01/runtime/invocation/big-event/response", nil, `1`)
	<-resCh

	h.env.Logs().Flush() // lines reach stdout within flushDelay; do not wait for it
	if !strings.Contains(h.out.String(), "START RequestId: req-1 Version: 3\nEND RequestId: req-1\nREPORT RequestId: req-1\tDuration: ") {
		t.Fatalf("shim log lacks the platform lines:\n%s", h.out.String())
	}
}

func TestRuntimeAPIIllegalCalls(t *testing.T) {
	h := newHarness(t, nil)
	// Before any invocation: a response is a call in the wrong state.
	r := h.post("/2018-06-01/runtime/invocation/nope/response", nil, `{}`)
	expect(t, "status", r.status, 403)
	expect(t, "body", r.body, `{"errorMessage":"State transition from Started to ResponseSent failed for runtime. Error: no invocation is waiting for an answer","errorType":"InvalidStateTransition"}`)

	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "good"}, `{}`)
	h.next()
	r = h.post("/2018-06-01/runtime/invocation/stale/response", nil, `{}`)
	expect(t, "unknown id status", r.status, 400)
	expect(t, "unknown id body", r.body, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`)
	r = h.post("/2018-06-01/runtime/init/error", nil, `{}`)
	expect(t, "init error after init", r.status, 403)
	expect(t, "first response", h.post("/2018-06-01/runtime/invocation/good/response", nil, `1`).status, 202)
	r = h.post("/2018-06-01/runtime/invocation/good/response", nil, `2`)
	expect(t, "second response status", r.status, 403)
	expect(t, "second response body", r.body, `{"errorMessage":"State transition from ResponseSent to ResponseSent failed for runtime. Error: no invocation is waiting for an answer","errorType":"InvalidStateTransition"}`)
	r = h.post("/2018-06-01/runtime/invocation/good/error", nil, `{}`)
	expect(t, "error after response", r.status, 403)
	expect(t, "invoke body", (<-resCh).body, "1")

	r = do(t, "POST", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
	expect(t, "wrong method", r.status, 405)
	r = do(t, "GET", h.rapi.URL+"/2018-06-01/runtime/invocation/x/explode", nil, nil)
	expect(t, "unknown path", r.status, 404)
}

func TestInvokeEndpointRejections(t *testing.T) {
	h := newHarness(t, func(c *environment.Config) { c.InvokeSecret = "s3cret"; c.Timeout = 30 * time.Second })
	r := h.callInvoke(nil, `{}`)
	expect(t, "no secret", r.status, 401)
	expect(t, "no secret type", r.header.Get("X-Amzn-ErrorType"), "UnauthorizedException")
	expect(t, "wrong secret", h.callInvoke(map[string]string{"X-Klambda-Invoke-Secret": "nope"}, `{}`).status, 401)
	sec := map[string]string{"X-Klambda-Invoke-Secret": "s3cret"}
	r = h.callInvoke(sec, `{not json`)
	expect(t, "bad json", r.status, 400)
	expect(t, "bad json type", r.header.Get("X-Amzn-ErrorType"), "InvalidRequestContentException")
	big := `"` + strings.Repeat("x", contract.MaxSyncPayload-1) + `"`
	r = h.callInvoke(sec, big)
	expect(t, "too large", r.status, 413)
	expect(t, "too large body", r.body, `{"Type":"User","message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`)
	expect(t, "too large type", r.header.Get("X-Amzn-ErrorType"), "RequestTooLargeException")
	r = h.callInvoke(map[string]string{"X-Klambda-Invoke-Secret": "s3cret", "X-Amz-Client-Context": "%%%"}, `{}`)
	expect(t, "bad client context", r.status, 400)
	expect(t, "readyz before init", do(t, "GET", h.invoke.URL+"/readyz", nil, nil).status, 503)
	expect(t, "healthz", do(t, "GET", h.invoke.URL+"/healthz", nil, nil).status, 200)

	// Nothing of the above reached the runtime: the first event it gets is this one.
	sec["X-Amzn-RequestId"] = "only"
	resCh := h.invokeAsync(sec, `{}`)
	ev := h.next()
	expect(t, "first event", ev.header.Get("Lambda-Runtime-Aws-Request-Id"), "only")
	expect(t, "readyz while invoking", do(t, "GET", h.invoke.URL+"/readyz", nil, nil).status, 200)
	busy := h.callInvoke(map[string]string{"X-Klambda-Invoke-Secret": "s3cret", "X-Amzn-RequestId": "second"}, `{}`)
	expect(t, "busy", busy.status, 429)
	expect(t, "busy type", busy.header.Get("X-Amzn-ErrorType"), "TooManyRequestsException")
	// The refusal is said in the environment's log (the e2e tests count these lines).
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(h.out.String(), contract.BusyRefusalLog+" second\n"); {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say the refusal:\n%s", h.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.post("/2018-06-01/runtime/invocation/only/response", nil, `{}`)
	expect(t, "after busy", (<-resCh).status, 200)
}

func TestResponseTooLarge(t *testing.T) {
	h := newHarness(t, func(c *environment.Config) { c.Timeout = 30 * time.Second }) // 6 MB bodies, maybe under -race
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "big"}, `{}`)
	h.next()
	r := h.post("/2018-06-01/runtime/invocation/big/response", nil, strings.Repeat("x", environment.MaxResponsePayload+1))
	expect(t, "runtime status", r.status, 413)
	expect(t, "runtime body", r.body, `{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}`)
	res := <-resCh
	expect(t, "status", res.status, 200)
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body", res.body, `{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)
	// No reset: the same runtime carries on.
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "after"}, `{}`)
	h.next()
	h.post("/2018-06-01/runtime/invocation/after/response", nil, `"ok"`)
	expect(t, "after", (<-resCh).body, `"ok"`)
	expect(t, "stops", h.sup.stops.Load(), int32(0))
}

func TestErrorBodies(t *testing.T) {
	h := newHarness(t, nil)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "e1"}, `{}`)
	h.next()
	r := h.post("/2018-06-01/runtime/invocation/e1/error", map[string]string{"Lambda-Runtime-Function-Error-Type": "Unhandled"}, `{"errorMessage":"x is not defined","errorType":"ReferenceError","trace":["a"]}`)
	expect(t, "error status", r.status, 202)
	res := <-resCh
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body kept", res.body, `{"errorMessage":"x is not defined","errorType":"ReferenceError","trace":["a"]}`)

	// A runtime posting something that is not a JSON object still gives callers Lambda's shape.
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "e2"}, `{}`)
	h.next()
	h.post("/2018-06-01/runtime/invocation/e2/error", map[string]string{"Lambda-Runtime-Function-Error-Type": "Custom.Bad"}, `oops {`)
	expect(t, "wrapped", (<-resCh).body, `{"errorMessage":"oops {","errorType":"Custom.Bad"}`)
}

func TestTimeoutResetsEnvironment(t *testing.T) {
	h := newHarness(t, func(c *environment.Config) { c.Timeout = 200 * time.Millisecond })
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "slow", "X-Amz-Log-Type": "Tail"}, `{}`)
	h.next() // and never answer
	res := <-resCh
	expect(t, "status", res.status, 200)
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body", res.body, `{"errorMessage":"RequestId: slow Error: Task timed out after 0.20 seconds","errorType":"Sandbox.Timedout"}`)
	expect(t, "reset header", res.header.Get("X-Klambda-Environment-Reset"), "timeout")
	tail, _ := base64.StdEncoding.DecodeString(res.header.Get("X-Amz-Log-Result"))
	if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z slow Task timed out after 0.20 seconds$`).Match(tail) ||
		!strings.Contains(string(tail), "\tDuration: 200.00 ms\tBilled Duration: 200 ms\t") {
		t.Fatalf("tail:\n%s", tail)
	}
	h.waitStart(2) // the runtime was stopped and started again
	if h.sup.stops.Load() != 1 {
		t.Fatalf("runtime stopped %d times, want 1", h.sup.stops.Load())
	}
	// A late answer from the old runtime is refused.
	expect(t, "late answer", h.post("/2018-06-01/runtime/invocation/slow/response", nil, `1`).status, 403)
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "fresh"}, `{}`)
	h.next()
	h.post("/2018-06-01/runtime/invocation/fresh/response", nil, `2`)
	res = <-resCh
	expect(t, "fresh body", res.body, "2")
	if res.header.Get("X-Klambda-Init-Duration-Ms") == "" {
		t.Fatal("the invocation after a reset must report Init Duration again")
	}
}

func TestCrashMidInvocation(t *testing.T) {
	h := newHarness(t, nil)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "crash"}, `{}`)
	h.next()
	h.env.RuntimeExited(1, errors.New("exit status 2"))
	res := <-resCh
	expect(t, "body", res.body, `{"errorMessage":"RequestId: crash Error: Runtime exited with error: exit status 2","errorType":"Runtime.ExitError"}`)
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	h.waitStart(2)
}

func TestInitErrorIsRetriedInsideTheInvoke(t *testing.T) {
	h := newHarness(t, nil)
	initErr := `{"errorMessage":"Unable to import module 'index'","errorType":"Runtime.ImportModuleError"}`
	r := h.post("/2018-06-01/runtime/init/error", map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}, initErr)
	expect(t, "init error", r.status, 202)
	expect(t, "phase", h.env.Phase(), environment.PhaseInitFailed)
	expect(t, "readyz", do(t, "GET", h.invoke.URL+"/readyz", nil, nil).status, 503)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "i1"}, `{}`)
	h.waitStart(2) // the retried init
	h.post("/2018-06-01/runtime/init/error", nil, initErr)
	res := <-resCh
	expect(t, "status", res.status, 200)
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body", res.body, initErr)

	// The next invoke retries again; this time init succeeds.
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "i2"}, `{}`)
	h.waitStart(3)
	h.next()
	h.post("/2018-06-01/runtime/invocation/i2/response", nil, `"up"`)
	expect(t, "recovered", (<-resCh).body, `"up"`)
}

func TestSlowInitCountsAgainstTheInvoke(t *testing.T) {
	h := newHarness(t, func(c *environment.Config) {
		c.InitTimeout = 100 * time.Millisecond
		c.Timeout = 300 * time.Millisecond
	})
	time.Sleep(150 * time.Millisecond) // the runtime never calls /next
	start := time.Now()
	res := h.callInvoke(map[string]string{"X-Amzn-RequestId": "never"}, `{}`)
	<-h.sup.starts
	expect(t, "body", res.body, `{"errorMessage":"RequestId: never Error: Task timed out after 0.30 seconds","errorType":"Sandbox.Timedout"}`)
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("answered after %v, want about the 300 ms timeout", d)
	}
}

func TestClientDisconnectMidInvocation(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", h.invoke.URL+"/2015-03-31/functions/function/invocations", strings.NewReader(`{}`))
	req.Header.Set("X-Amzn-RequestId", "gone")
	errCh := make(chan error, 1)
	go func() {
		_, err := http.DefaultClient.Do(req)
		errCh <- err
	}()
	h.next()
	cancel()
	<-errCh
	expect(t, "response after the caller left", h.post("/2018-06-01/runtime/invocation/gone/response", nil, `1`).status, 202)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "next"}, `{}`)
	h.next()
	h.post("/2018-06-01/runtime/invocation/next/response", nil, `2`)
	expect(t, "next invocation", (<-resCh).body, "2")
}

func TestExtensionsLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	r := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "ext.sh"}, `{"events":["INVOKE","SHUTDOWN"]}`)
	expect(t, "register", r.status, 200)
	expect(t, "register body", r.body, `{"functionName":"echo","functionVersion":"3","handler":""}`)
	extID := r.header.Get("Lambda-Extension-Identifier")
	expect(t, "bad events", h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "x"}, `{"events":["INVOCATION"]}`).status, 400)
	expect(t, "bad json", h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "y"}, `{`).status, 400)
	expect(t, "no name", h.post("/2020-01-01/extension/register", nil, `{}`).status, 403)
	extNext := func() <-chan reply {
		ch := make(chan reply, 1)
		go func() {
			ch <- request("GET", h.rapi.URL+"/2020-01-01/extension/event/next", map[string]string{"Lambda-Extension-Identifier": extID}, nil)
		}()
		return ch
	}
	runtimeNext := make(chan reply, 1)
	go func() { runtimeNext <- request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	expect(t, "init waits for the extension", h.env.Phase(), environment.PhaseInit)
	evCh := extNext()
	waitPhase(t, h.env, environment.PhaseIdle)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "x1"}, `{"payload":"not for extensions"}`)
	ev := <-evCh
	var got map[string]any
	if err := json.Unmarshal([]byte(ev.body), &got); err != nil || got["eventType"] != "INVOKE" || got["requestId"] != "x1" || got["invokedFunctionArn"] != "arn:aws:lambda:eu-west-1:123456789012:function:echo" {
		t.Fatalf("extension event %s", ev.body)
	}
	if _, ok := got["payload"]; ok {
		t.Fatal("the extension event must not carry the payload")
	}
	<-runtimeNext
	h.post("/2018-06-01/runtime/invocation/x1/response", nil, `1`)
	expect(t, "response not held back by the extension", (<-resCh).body, "1")
	runtimeNext2 := make(chan reply, 1)
	go func() { runtimeNext2 <- request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil) }()
	time.Sleep(30 * time.Millisecond)
	expect(t, "environment busy until the extension is done", h.env.Phase(), environment.PhaseInvoke)
	evCh = extNext()
	waitPhase(t, h.env, environment.PhaseIdle)
	expect(t, "register after init", h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "late"}, `{}`).status, 403)
	go h.env.Shutdown()
	ev = <-evCh
	if !strings.HasPrefix(ev.body, `{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":`) {
		t.Fatalf("shutdown event %s", ev.body)
	}
}

func waitPhase(t *testing.T, env *environment.Environment, p environment.Phase) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if env.Phase() == p {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("phase %v, want %v", env.Phase(), p)
}

func TestLogsAPISubscription(t *testing.T) {
	h := newHarness(t, nil)
	got := make(chan []map[string]any, 16)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		_ = json.NewDecoder(r.Body).Decode(&batch)
		got <- batch
	}))
	defer sink.Close()
	r := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "logs"}, `{"events":[]}`)
	extID := r.header.Get("Lambda-Extension-Identifier")
	sub := func(body string) reply {
		return do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": extID}, []byte(body))
	}
	bad := sub(`{"types":[],"destination":{"protocol":"HTTP","URI":"http://127.0.0.1"}}`)
	expect(t, "invalid", bad.status, 400)
	expect(t, "invalid body", bad.body, `{"errorMessage":"types should not be empty; URI port is not provided","errorType":"Logs.ValidationError"}`)
	ok := sub(`{"schemaVersion":"2021-03-18","types":["platform","function"],"buffering":{"timeoutMs":25},"destination":{"protocol":"HTTP","URI":"` + sink.URL + `"}}`)
	expect(t, "subscribe", ok.status, 200)
	go request("GET", h.rapi.URL+"/2020-01-01/extension/event/next", map[string]string{"Lambda-Extension-Identifier": extID}, nil)
	go request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
	waitPhase(t, h.env, environment.PhaseIdle)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "l1"}, `{}`)
	time.Sleep(20 * time.Millisecond)
	h.post("/2018-06-01/runtime/invocation/l1/response", nil, `1`)
	<-resCh
	types := map[string]bool{}
	deadline := time.After(3 * time.Second)
	for !types["platform.report"] || !types["platform.runtimeDone"] {
		select {
		case batch := <-got:
			for _, rec := range batch {
				types[rec["type"].(string)] = true
				if rec["type"] == "platform.report" {
					m := rec["record"].(map[string]any)["metrics"].(map[string]any)
					if m["memorySizeMB"] != float64(128) || m["initDurationMs"] == nil {
						t.Fatalf("report record %v", rec)
					}
				}
			}
		case <-deadline:
			t.Fatalf("records seen: %v", types)
		}
	}
	if !types["platform.start"] || !types["platform.end"] || !types["platform.logsSubscription"] {
		t.Fatalf("records seen: %v", types)
	}
}

func TestExtensionInitErrorFailsInit(t *testing.T) {
	h := newHarness(t, nil)
	r := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "broken"}, `{"events":["INVOKE"]}`)
	id := r.header.Get("Lambda-Extension-Identifier")
	expect(t, "missing type", h.post("/2020-01-01/extension/init/error", map[string]string{"Lambda-Extension-Identifier": id}, `{}`).status, 400)
	expect(t, "unknown id", h.post("/2020-01-01/extension/init/error", map[string]string{"Lambda-Extension-Identifier": "nope", "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}, `{}`).status, 403)
	r = h.post("/2020-01-01/extension/init/error", map[string]string{"Lambda-Extension-Identifier": id, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}, `{"errorMessage":"bad config"}`)
	expect(t, "init error", r.status, 202)
	expect(t, "phase", h.env.Phase(), environment.PhaseInitFailed)
	// The extension may not carry on.
	expect(t, "next after error", do(t, "GET", h.rapi.URL+"/2020-01-01/extension/event/next", map[string]string{"Lambda-Extension-Identifier": id}, nil).status, 403)
	// An invoke retries the init (new generation), whose runtime fails it the same way.
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "x"}, `{}`)
	h.waitStart(2)
	r = h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "broken"}, `{}`)
	id = r.header.Get("Lambda-Extension-Identifier")
	h.post("/2020-01-01/extension/init/error", map[string]string{"Lambda-Extension-Identifier": id, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}, `{}`)
	res := <-resCh
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body", res.body, `{"errorMessage":"Extension broken failed to initialise: Extension.ConfigInvalid","errorType":"Extension.InitError"}`)
}

func TestLogsSubscriptionOnlyDuringInit(t *testing.T) {
	h := newHarness(t, nil)
	r := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "late"}, `{}`)
	id := r.header.Get("Lambda-Extension-Identifier")
	go request("GET", h.rapi.URL+"/2020-01-01/extension/event/next", map[string]string{"Lambda-Extension-Identifier": id}, nil)
	go request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
	waitPhase(t, h.env, environment.PhaseIdle)
	r = do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id},
		[]byte(`{"types":["platform"],"destination":{"protocol":"HTTP","URI":"http://127.0.0.1:8080/logs"}}`))
	expect(t, "status", r.status, 403)
	expect(t, "body", r.body, `{"errorMessage":"Logs API subscriptions are accepted only during the Init phase","errorType":"Logs.SubscriptionClosed"}`)
}

// Without X-Amz-Log-Type: Tail, END and REPORT are written after the caller (and the
// runtime) have their answers, but always before the next START: by the time the runtime's
// next call is served at the latest.
func TestReportWithoutTailPrecedesTheNextStart(t *testing.T) {
	h := newHarness(t, nil)
	ids := []string{"plain-1", "plain-2", "plain-3"}
	for i, id := range ids {
		resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": id}, `{}`)
		h.next()
		expect(t, "ack", h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `"ok"`).status, 202)
		res := <-resCh
		expect(t, "body", res.body, `"ok"`)
		expect(t, "no tail", res.header.Get("X-Amz-Log-Result"), "")
		if res.header.Get("X-Klambda-Duration-Ms") == "" || (i == 0) != (res.header.Get("X-Klambda-Init-Duration-Ms") != "") {
			t.Fatalf("invocation %d: duration headers %v", i, res.header)
		}
	}
	go request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
	waitPhase(t, h.env, environment.PhaseIdle)
	h.env.Logs().Flush()
	lines := strings.Split(strings.TrimSuffix(h.out.String(), "\n"), "\n")
	if len(lines) != 3*len(ids) {
		t.Fatalf("log has %d lines, want START, END, REPORT per invocation:\n%s", len(lines), h.out.String())
	}
	for i, id := range ids {
		expect(t, "START", lines[3*i], "START RequestId: "+id+" Version: 3")
		expect(t, "END", lines[3*i+1], "END RequestId: "+id)
		m := reportRE.FindStringSubmatch(lines[3*i+2])
		if m == nil || m[1] != id || (i == 0) != (m[2] != "") {
			t.Fatalf("REPORT %q: want Lambda's format, Init Duration on the first invocation only", lines[3*i+2])
		}
	}
}

// TestNextAbandonedByTheRuntimeGetsNoEvent: a runtime whose /next connection closed while
// it waited (a runtime that went away, or one that asks again) must not be handed the
// event; the /next that is still waiting gets it.
func TestNextAbandonedByTheRuntimeGetsNoEvent(t *testing.T) {
	h := newHarness(t, nil)
	addr := strings.TrimPrefix(h.rapi.URL, "http://")
	for i := range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rapi\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // waiting in next
		c.Close()
		time.Sleep(20 * time.Millisecond)
		nextCh := make(chan reply, 1)
		go func() { nextCh <- h.next() }()
		time.Sleep(20 * time.Millisecond)
		id := fmt.Sprintf("abandoned-%d", i)
		resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": id}, `{}`)
		select {
		case n := <-nextCh:
			expect(t, "request id", n.header.Get("Lambda-Runtime-Aws-Request-Id"), id)
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: the waiting /next got no event (handed to the closed one?)", i)
		}
		h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `"ok"`)
		expect(t, "answer", (<-resCh).body, `"ok"`)
	}
}

// TestNextReplacedByANewerOne: a runtime that asks for the next event again while its
// earlier call still waits (its connection dropped, as it sees it) is answered on the
// newer call; the earlier one is told it was replaced, and no event is lost.
func TestNextReplacedByANewerOne(t *testing.T) {
	h := newHarness(t, nil)
	first := make(chan reply, 1)
	go func() { first <- h.next() }()
	waitPhase(t, h.env, environment.PhaseIdle)
	time.Sleep(20 * time.Millisecond) // the first call waits
	second := make(chan reply, 1)
	go func() { second <- h.next() }()
	select {
	case r := <-first:
		expect(t, "replaced /next status", r.status, 403)
		if !strings.Contains(r.body, `"errorType":"InvalidStateTransition"`) {
			t.Fatalf("replaced /next body %s", r.body)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the replaced /next was never answered")
	}
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "to-the-newer"}, `{}`)
	select {
	case n := <-second:
		expect(t, "request id", n.header.Get("Lambda-Runtime-Aws-Request-Id"), "to-the-newer")
	case <-time.After(2 * time.Second):
		t.Fatal("the newer /next got no event")
	}
	h.post("/2018-06-01/runtime/invocation/to-the-newer/response", nil, `"ok"`)
	expect(t, "answer", (<-resCh).body, `"ok"`)
}

// TestNextHungUpAloneKeepsTheEvent: the only /next waiting was hung up by the runtime
// long enough ago that it is checked: the event is not written into the closed
// connection but kept for the runtime's next call.
func TestNextHungUpAloneKeepsTheEvent(t *testing.T) {
	h := newHarness(t, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.rapi.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rapi\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, h.env, environment.PhaseIdle)
	c.Close()
	time.Sleep(environment.NextPeerCheckAfter + 30*time.Millisecond)
	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "kept"}, `{}`)
	time.Sleep(30 * time.Millisecond) // dispatched, and refused by the hung-up call
	nextCh := make(chan reply, 1)
	go func() { nextCh <- request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil) }()
	select {
	case n := <-nextCh:
		expect(t, "request id", n.header.Get("Lambda-Runtime-Aws-Request-Id"), "kept")
	case <-time.After(3 * time.Second):
		t.Fatal("the event went to the hung-up /next: the next call never got it")
	}
	h.post("/2018-06-01/runtime/invocation/kept/response", nil, `"ok"`)
	expect(t, "answer", (<-resCh).body, `"ok"`)
}
