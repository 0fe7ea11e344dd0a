package api

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/shim/internal/environment"
)

// streamingRuntime posts a streamed response for id as aws-lambda-ric does: chunked, with
// the error trailers declared. Writes to the returned pipe go out as they are made;
// trailers set in tr before closing the pipe are sent after the body.
type streamingRuntime struct {
	pw     *io.PipeWriter
	tr     http.Header
	answer chan reply
}

func (h *harness) startStreamedResponse(id, contentType string) *streamingRuntime {
	return h.startChunkedResponse(id, contentType, true)
}

// startChunkedResponse is startStreamedResponse with or without the streaming-mode
// header (aws-lambda-go streams an io.Reader without it).
func (h *harness) startChunkedResponse(id, contentType string, modeHeader bool) *streamingRuntime {
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", h.rapi.URL+"/2018-06-01/runtime/invocation/"+id+"/response", pr)
	if modeHeader {
		req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rt := &streamingRuntime{pw: pw, tr: http.Header{"Lambda-Runtime-Function-Error-Type": nil, "Lambda-Runtime-Function-Error-Body": nil}, answer: make(chan reply, 1)}
	req.Trailer = rt.tr
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			rt.answer <- reply{0, nil, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rt.answer <- reply{resp.StatusCode, resp.Header, string(b)}
	}()
	return rt
}

func (rt *streamingRuntime) write(t *testing.T, s string) {
	t.Helper()
	if _, err := rt.pw.Write([]byte(s)); err != nil {
		t.Fatalf("runtime write: %v", err)
	}
}

// fail ends the stream with the ric's error trailers.
func (rt *streamingRuntime) fail(errType, body string) {
	rt.tr.Set("Lambda-Runtime-Function-Error-Type", errType)
	rt.tr.Set("Lambda-Runtime-Function-Error-Body", base64.StdEncoding.EncodeToString([]byte(body)))
	rt.pw.Close()
}

// streamCall is an invoke asking for a stream, read piece by piece.
type streamCall struct {
	resp *http.Response
	br   *bufio.Reader
}

func (h *harness) invokeStreaming(header map[string]string) <-chan *streamCall {
	ch := make(chan *streamCall, 1)
	go func() {
		req, _ := http.NewRequest("POST", h.invoke.URL+"/2015-03-31/functions/function/invocations", strings.NewReader(`{}`))
		req.Header.Set(contract.HeaderResponseStream, "1")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			h.t.Errorf("invoke: %v", err)
			ch <- nil
			return
		}
		ch <- &streamCall{resp: resp, br: bufio.NewReader(resp.Body)}
	}()
	return ch
}

// read reads exactly len(want) bytes (blocking until they came) and checks them.
func (c *streamCall) read(t *testing.T, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.br, got); err != nil {
		t.Fatalf("reading %q from the stream: %v", want, err)
	}
	expect(t, "streamed bytes", string(got), want)
}

func (c *streamCall) end(t *testing.T) http.Header {
	t.Helper()
	rest, err := io.ReadAll(c.br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the stream: %q, %v", rest, err)
	}
	c.resp.Body.Close()
	return c.resp.Trailer
}

func takeEvent(t *testing.T, h *harness) string {
	t.Helper()
	ev := h.next()
	expect(t, "next", ev.status, 200)
	return ev.header.Get("Lambda-Runtime-Aws-Request-Id")
}

// Each piece the function writes reaches the caller before the function writes the
// next: the caller's reads are what let the test go on.
func TestStreamedResponseReachesTheCallerAsWritten(t *testing.T) {
	h := newHarness(t, nil)
	callCh := h.invokeStreaming(map[string]string{"X-Amzn-RequestId": "s-1", "X-Amz-Log-Type": "Tail"})
	id := takeEvent(t, h)
	expect(t, "id", id, "s-1")
	rt := h.startStreamedResponse(id, "text/plain")
	rt.write(t, "first ")
	c := <-callCh
	expect(t, "status", c.resp.StatusCode, 200)
	expect(t, "mode", c.resp.Header.Get(contract.HeaderResponseStream), "streaming")
	expect(t, "content type", c.resp.Header.Get("Content-Type"), "text/plain")
	expect(t, "request id", c.resp.Header.Get(contract.HeaderRequestID), "s-1")
	if c.resp.Header.Get(contract.HeaderInitDuration) == "" {
		t.Fatal("the first invocation of an environment reports its init duration")
	}
	c.read(t, "first ")
	select {
	case r := <-rt.answer:
		t.Fatalf("the runtime was answered (%d) before its stream ended", r.status)
	default:
	}
	rt.write(t, "second ")
	c.read(t, "second ")
	rt.write(t, strings.Repeat("z", 100<<10))
	c.read(t, strings.Repeat("z", 100<<10))
	if h.env.Busy() == false {
		t.Fatal("the environment is busy until the stream ends")
	}
	rt.pw.Close()
	tr := c.end(t)
	expect(t, "function error", tr.Get(contract.TrailerFunctionError), "")
	if tr.Get(contract.TrailerDuration) == "" {
		t.Fatalf("no duration trailer: %v", tr)
	}
	tail, _ := base64.StdEncoding.DecodeString(tr.Get(contract.TrailerLogResult))
	if !strings.Contains(string(tail), "END RequestId: s-1\nREPORT RequestId: s-1") {
		t.Fatalf("log tail %q", tail)
	}
	r := <-rt.answer
	expect(t, "runtime answer", r.status, 202)

	// The environment takes the next invocation, buffered as always.
	resCh := h.invokeAsync(nil, `{"n":2}`)
	id = takeEvent(t, h)
	h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `"two"`)
	expect(t, "next invocation", (<-resCh).body, `"two"`)
}

// The ric's error trailers become the invocation's function error, after what was
// streamed before them.
func TestStreamedResponseErrorTrailers(t *testing.T) {
	h := newHarness(t, nil)
	callCh := h.invokeStreaming(nil)
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "")
	rt.write(t, "partial")
	c := <-callCh
	expect(t, "default content type", c.resp.Header.Get("Content-Type"), "application/octet-stream")
	c.read(t, "partial")
	rt.fail("Error", `{"errorType":"Error","errorMessage":"mid-stream"}`)
	tr := c.end(t)
	expect(t, "function error", tr.Get(contract.TrailerFunctionError), "Unhandled")
	expect(t, "error type", tr.Get(contract.TrailerFunctionErrorType), "Error")
	body, _ := base64.StdEncoding.DecodeString(tr.Get(contract.TrailerFunctionErrorBody))
	expect(t, "error body", string(body), `{"errorType":"Error","errorMessage":"mid-stream"}`)
	expect(t, "runtime answer", (<-rt.answer).status, 202)
}

// A caller that did not ask for a stream gets a streamed response buffered, and its
// error trailers as a function error.
func TestStreamedResponseBufferedForOtherCallers(t *testing.T) {
	h := newHarness(t, nil)
	resCh := h.invokeAsync(nil, `{}`)
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "text/plain")
	rt.write(t, "a")
	rt.write(t, "b")
	rt.pw.Close()
	res := <-resCh
	expect(t, "body", res.body, "ab")
	expect(t, "no stream", res.header.Get(contract.HeaderResponseStream), "")
	expect(t, "runtime answer", (<-rt.answer).status, 202)

	resCh = h.invokeAsync(nil, `{}`)
	id = takeEvent(t, h)
	rt = h.startStreamedResponse(id, "")
	rt.write(t, "ignored")
	rt.fail("Error", `{"errorType":"Error","errorMessage":"no"}`)
	res = <-resCh
	expect(t, "function error", res.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "error body", res.body, `{"errorType":"Error","errorMessage":"no"}`)
}

// The function timeout runs until the stream ends: past it the stream ends with
// Sandbox.Timedout and the environment is reset.
func TestStreamedResponseTimeout(t *testing.T) {
	h := newHarness(t, nil) // 1 s timeout
	callCh := h.invokeStreaming(nil)
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "")
	rt.write(t, "slow")
	c := <-callCh
	c.read(t, "slow")
	tr := c.end(t) // the function never ends its stream
	expect(t, "error type", tr.Get(contract.TrailerFunctionErrorType), "Sandbox.Timedout")
	expect(t, "reset", tr.Get(contract.TrailerEnvReset), "timeout")
	body, _ := base64.StdEncoding.DecodeString(tr.Get(contract.TrailerFunctionErrorBody))
	if !strings.Contains(string(body), "Task timed out after 1.00 seconds") {
		t.Fatalf("timeout body %q", body)
	}
	rt.pw.Close()
	h.waitStart(2)
}

// Lambda's limits on a streamed response: full speed for the first bytes, then a capped
// rate; past the size limit the stream ends with Function.ResponseSizeTooLarge.
func TestStreamedResponseLimits(t *testing.T) {
	saved := streamLimits
	t.Cleanup(func() { streamLimits = saved })
	streamLimits.max, streamLimits.uncapped, streamLimits.rate = 300<<10, 64<<10, 512<<10

	h := newHarness(t, func(c *environment.Config) { c.Timeout = 5 * time.Second })
	callCh := h.invokeStreaming(nil)
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "")
	start := time.Now()
	go func() {
		for range 40 { // 320 KB in 8 KB pieces: past the 300 KB limit
			if _, err := rt.pw.Write(make([]byte, 8<<10)); err != nil {
				return
			}
		}
		rt.pw.Close()
	}()
	c := <-callCh
	n, _ := io.Copy(io.Discard, c.br)
	elapsed := time.Since(start)
	c.resp.Body.Close()
	if n > 300<<10 {
		t.Fatalf("%d bytes streamed, past the %d limit", n, 300<<10)
	}
	// (300-64) KB at 512 KB/s cannot take less than about 0.46 s.
	if elapsed < 400*time.Millisecond {
		t.Fatalf("%d bytes past the uncapped part went in %v: not held to the bandwidth", n-64<<10, elapsed)
	}
	tr := c.resp.Trailer
	expect(t, "error type", tr.Get(contract.TrailerFunctionErrorType), "Function.ResponseSizeTooLarge")
	var e struct{ ErrorType string }
	b, _ := base64.StdEncoding.DecodeString(tr.Get(contract.TrailerFunctionErrorBody))
	_ = json.Unmarshal(b, &e)
	expect(t, "error body type", e.ErrorType, "Function.ResponseSizeTooLarge")
	expect(t, "runtime answer", (<-rt.answer).status, 413)
}

// A chunked response that declares the error trailers, without the streaming-mode
// header (aws-lambda-go's io.Reader), streams to a caller that asked for a stream.
func TestChunkedResponseWithTrailersStreams(t *testing.T) {
	h := newHarness(t, nil)
	callCh := h.invokeStreaming(nil)
	id := takeEvent(t, h)
	rt := h.startChunkedResponse(id, "application/json", false)
	rt.write(t, "[1,")
	c := <-callCh
	expect(t, "mode", c.resp.Header.Get(contract.HeaderResponseStream), "streaming")
	c.read(t, "[1,")
	rt.write(t, "2]")
	c.read(t, "2]")
	rt.fail("errorString", `{"errorType":"errorString","errorMessage":"late"}`)
	expect(t, "error type", c.end(t).Get(contract.TrailerFunctionErrorType), "errorString")
	expect(t, "runtime answer", (<-rt.answer).status, 202)
}

// A runtime that exits mid-stream ends the stream with Runtime.ExitError; a second
// /response during the stream is refused.
func TestStreamedResponseRuntimeExit(t *testing.T) {
	h := newHarness(t, nil)
	callCh := h.invokeStreaming(map[string]string{"X-Amzn-RequestId": "crash"})
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "")
	rt.write(t, "before")
	c := <-callCh
	c.read(t, "before")
	r := h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `"again"`)
	expect(t, "second response", r.status, 403)
	h.env.RuntimeExited(1, errors.New("exit status 2"))
	tr := c.end(t)
	expect(t, "error type", tr.Get(contract.TrailerFunctionErrorType), "Runtime.ExitError")
	expect(t, "reset", tr.Get(contract.TrailerEnvReset), "failure")
	rt.pw.Close()
	h.waitStart(2)
}

// A caller that hangs up mid-stream does not stop the function: the rest is read and
// dropped, the runtime gets its 202 and the environment takes the next invocation.
func TestStreamedResponseCallerHangsUp(t *testing.T) {
	h := newHarness(t, nil)
	callCh := h.invokeStreaming(nil)
	id := takeEvent(t, h)
	rt := h.startStreamedResponse(id, "")
	rt.write(t, "seen")
	c := <-callCh
	c.read(t, "seen")
	c.resp.Body.Close()
	for i := 0; i < 50; i++ {
		rt.write(t, strings.Repeat("y", 32<<10)) // more than the sockets hold
	}
	rt.pw.Close()
	expect(t, "runtime answer", (<-rt.answer).status, 202)
	resCh := h.invokeAsync(nil, `{}`)
	id = takeEvent(t, h)
	h.post("/2018-06-01/runtime/invocation/"+id+"/response", nil, `"next"`)
	expect(t, "next invocation", (<-resCh).body, `"next"`)
}
