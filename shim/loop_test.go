package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoRuntime plays a runtime that answers every event with the event and the function
// ARN it was invoked as, until the harness ends.
func echoRuntime(h *harness) {
	go func() {
		for {
			n := request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
			if n.status != http.StatusOK {
				return
			}
			body, _ := json.Marshal(map[string]string{"event": n.body, "arn": n.header.Get("Lambda-Runtime-Invoked-Function-Arn")})
			request("POST", h.rapi.URL+"/2018-06-01/runtime/invocation/"+n.header.Get("Lambda-Runtime-Aws-Request-Id")+"/response", nil, body)
		}
	}()
}

// answersTo writes raw to a new connection to addr and reads n answers (all of them up to
// the end of the stream if n is 0), each as status, the headers that do not vary from
// run to run, and body.
func answersTo(t *testing.T, addr, raw string, n int) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []string
	for n == 0 || len(out) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if n == 0 && err == io.ErrUnexpectedEOF || err == io.EOF {
				break
			}
			t.Fatalf("answer %d to %q: %v", len(out)+1, raw[:min(len(raw), 200)], err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k, v := range resp.Header {
			switch k {
			case "Date", HeaderDuration, HeaderInitDuration:
				continue
			}
			keys = append(keys, k+": "+strings.Join(v, ","))
		}
		sort.Strings(keys)
		out = append(out, fmt.Sprintf("%d %v close=%v %s", resp.StatusCode, keys, resp.Close, body))
	}
	return out
}

// TestLoopAnswersAsHTTPServer sends the same requests, byte for byte, to a shim served
// through the event loop and to one served by httpServer alone, and wants the same
// answers: the loop's own (the warm path) and those of the connections it hands over.
func TestLoopAnswersAsHTTPServer(t *testing.T) {
	const inv = "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\n"
	ok := inv + "X-Amzn-RequestId: a1\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
	cases := []struct {
		name, raw string
		answers   int
	}{
		{"invoke", ok, 1},
		{"not JSON", inv + "Content-Length: 3\r\n\r\n{a}", 1},
		{"dry run", inv + "X-Amz-Invocation-Type: DryRun\r\nContent-Length: 2\r\n\r\n{}", 1},
		{"bad client context", inv + "X-Amz-Client-Context: !!\r\nContent-Length: 2\r\n\r\n{}", 1},
		{"bad request id", inv + "X-Amzn-RequestId: a/b\r\nContent-Length: 2\r\n\r\n{}", 1},
		{"qualifier", "POST /2015-03-31/functions/function/invocations?Qualifier=live HTTP/1.1\r\nHost: x\r\nX-Amzn-RequestId: q1\r\nContent-Length: 2\r\n\r\n{}", 1},
		{"chunked", inv + "X-Amzn-RequestId: c1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n", 1},
		{"pipelined", ok + strings.Replace(ok, "a1", "a2", 1), 2},
		{"wrong method", "GET /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\n\r\n", 1},
		{"health, then an invoke on the same connection", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + ok, 2},
		{"an invoke, then health", ok + "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 2},
		{"expect 100-continue", inv + "X-Amzn-RequestId: e1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}", 2},
		{"too large", inv + fmt.Sprintf("Content-Length: %d\r\n\r\n", MaxRequestPayload+1) + strings.Repeat(" ", MaxRequestPayload+1), 1},
		{"no host", "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"connection close", inv + "Connection: close\r\nX-Amzn-RequestId: k1\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"HTTP/1.0", "POST /2015-03-31/functions/function/invocations HTTP/1.0\r\nX-Amzn-RequestId: h1\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"stray line ends after a POST", ok + "\r\n" + strings.Replace(ok, "a1", "a3", 1), 2},
		{"bad chunk", inv + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 0},
		{"head over the invoke endpoint's 64 KB", inv + "X-Pad: " + strings.Repeat("a", 80<<10) + "\r\nContent-Length: 2\r\n\r\n{}", 1},
		{"head just under it", inv + "X-Amzn-RequestId: p1\r\nX-Pad: " + strings.Repeat("a", 60<<10) + "\r\nContent-Length: 2\r\n\r\n{}", 1},
	}
	loop, plain := newHarnessIO(t, nil, false), newHarnessIO(t, nil, true)
	echoRuntime(loop)
	echoRuntime(plain)
	loopAddr, plainAddr := strings.TrimPrefix(loop.invoke.URL, "http://"), strings.TrimPrefix(plain.invoke.URL, "http://")
	for _, c := range cases {
		got := answersTo(t, loopAddr, c.raw, c.answers)
		want := answersTo(t, plainAddr, c.raw, c.answers)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n event loop: %q\n httpServer: %q", c.name, got, want)
		}
		// The same, with the client closing its side once it has sent everything.
		got, want = steady(exchange(t, loopAddr, c.raw)), steady(exchange(t, plainAddr, c.raw))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s, half-closed:\n event loop: %q\n httpServer: %q", c.name, got, want)
		}
	}
}

// steady drops from exchange's descriptions the headers that vary from run to run.
func steady(answers []string) []string {
	for i, a := range answers {
		var keep []string
		for _, line := range strings.Split(a, "\n") {
			if !strings.HasPrefix(line, HeaderDuration+":") && !strings.HasPrefix(line, HeaderInitDuration+":") {
				keep = append(keep, line)
			}
		}
		answers[i] = strings.Join(keep, "\n")
	}
	return answers
}

// TestLoopHandsOverMidConnection: a runtime's connection that the loop served goes on,
// with httpServer, after a request the loop does not serve (a response with trailers).
func TestLoopHandsOverMidConnection(t *testing.T) {
	h := newHarnessIO(t, nil, false)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.rapi.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	call := func(raw string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp
	}
	const next = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rapi\r\n\r\n"
	for i, trailer := range []string{"", "Lambda-Runtime-Function-Error-Type: none\r\n", ""} {
		id := fmt.Sprintf("h%d", i)
		resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": id}, `{}`)
		ev := call(next)
		expect(t, "event", ev.Header.Get("Lambda-Runtime-Aws-Request-Id"), id)
		r := call("POST /2018-06-01/runtime/invocation/" + id + "/response HTTP/1.1\r\nHost: rapi\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\"" + id[:1] + "\"\r\n0\r\n" + trailer + "\r\n")
		expect(t, "response status", r.StatusCode, http.StatusAccepted)
		expect(t, "caller's answer", (<-resCh).body, `"h"`)
	}
}

// TestLoopCallerClosesItsSide: a caller that closes its side of the connection after its
// invoke still gets the answer (as with net/http's server).
func TestLoopCallerClosesItsSide(t *testing.T) {
	h := newHarnessIO(t, nil, false)
	echoRuntime(h)
	c, err := net.Dial("tcp", strings.TrimPrefix(h.invoke.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	expect(t, "answer", string(b), `{"arn":"arn:aws:lambda:eu-west-1:123456789012:function:echo","event":"{}"}`)
}

// TestLoopSlowReaderGetsAllOfALargeAnswer: an answer larger than the socket takes at once
// waits in the loop for the caller to read it, and the loop serves others meanwhile.
func TestLoopSlowReaderGetsAllOfALargeAnswer(t *testing.T) {
	h := newHarnessIO(t, nil, false)
	answered := make(chan struct{})
	go func() {
		n := request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
		request("POST", h.rapi.URL+"/2018-06-01/runtime/invocation/big/response", nil, []byte(n.body))
		close(answered)
		n = request("GET", h.rapi.URL+"/2018-06-01/runtime/invocation/next", nil, nil)
		request("POST", h.rapi.URL+"/2018-06-01/runtime/invocation/small/response", nil, []byte(n.body))
	}()
	payload := `"` + strings.Repeat("x", 5<<20) + `"`
	// A small receive buffer, set before the connection is made (so that its window
	// scale suits it): the answer cannot all go into the sockets at once.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(h.invoke.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nX-Amzn-RequestId: big\r\nContent-Length: %d\r\n\r\n%s", len(payload), payload)
	<-answered // and the caller reads nothing yet: the answer waits in the loop
	expect(t, "another invoke meanwhile", h.callInvoke(map[string]string{"X-Amzn-RequestId": "small"}, `"s"`).body, `"s"`)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != payload {
		t.Fatalf("got %d bytes of the answer, want %d", len(b), len(payload))
	}
}
