package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// TestCallerClosesItsSide: a caller that closes its side of the connection after its
// invoke still gets the answer (as with net/http's server).
func TestCallerClosesItsSide(t *testing.T) {
	h := newHarness(t, nil)
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

// TestSlowReaderGetsAllOfALargeAnswer: an answer larger than the socket takes at once
// waits for the caller to read it, and the environment takes the next invoke meanwhile.
func TestSlowReaderGetsAllOfALargeAnswer(t *testing.T) {
	h := newHarness(t, nil)
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
	<-answered // and the caller reads nothing yet: the answer waits in its connection
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
