package invokeclient_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// The hand-written client sends what the SDK and net/http send and reads the answers alike.
func TestConnInvokerAgainstFakeActivator(t *testing.T) {
	testInvoker(t, func(f *invoketest.Server) invokeclient.Invoker { return f.Invoker() })
}

func TestConnInvokerReleasesThePayloadOnce(t *testing.T) {
	testRelease(t, func(f *invoketest.Server) invokeclient.Invoker { return f.Invoker() },
		invokeclient.NewConnInvoker("http://127.0.0.1:1", nil, nil))
}

// rawServer accepts connections and hands each to serve, counting them.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []net.Conn
}

func newRawServer(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.conns.Add(1))
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() { _ = c.Close() }()
				serve(n, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.open { // connections the client keeps alive
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/base/" }

// readRequest reads one request as sent on the wire: head lines and body.
func readRequest(br *bufio.Reader) (head []string, body []byte, err error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	head = append(head, req.Method+" "+req.RequestURI+" "+req.Proto)
	for k, v := range req.Header {
		head = append(head, k+": "+strings.Join(v, ","))
	}
	head = append(head, fmt.Sprintf("Content-Length: %d", req.ContentLength), "Host: "+req.Host)
	body, err = io.ReadAll(req.Body)
	return head, body, err
}

const okAnswer = "HTTP/1.1 200 OK\r\nX-Amz-Executed-Version: 3\r\nX-Amzn-Requestid: r1\r\nContent-Length: 4\r\n\r\nnull"

// One connection carries invocation after invocation; the request is framed as net/http
// would (request line, Host, headers, Content-Length, the payload whole).
func TestConnInvokerFramingAndKeepAlive(t *testing.T) {
	var mu sync.Mutex
	var heads [][]string
	var bodies []string
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			head, body, err := readRequest(br)
			if err != nil {
				return
			}
			mu.Lock()
			heads, bodies = append(heads, head), append(bodies, string(body))
			n := len(bodies)
			mu.Unlock()
			answer := okAnswer
			if n == 2 { // a chunked answer, with a function error
				answer = "HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	inv := invokeclient.NewConnInvoker(srv.url(), invokeclient.StaticToken("tok"), nil)
	payload := strings.Repeat("x", 100<<10)
	for i := range 3 {
		resp, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team a", FunctionName: "fn:live", Payload: []byte(payload), Async: i == 2})
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		switch i {
		case 0:
			if resp.StatusCode != 200 || string(resp.Payload) != "null" || resp.ExecutedVersion != "3" || resp.RequestID != "r1" || resp.FunctionError != "" {
				t.Errorf("answer %+v", resp)
			}
		case 1:
			if resp.FunctionError != "Unhandled" || string(resp.Payload) != `{"a":1}` {
				t.Errorf("chunked answer %+v", resp)
			}
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 invocations in a row, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, head := range heads {
		joined := strings.Join(head, "\n")
		typ := "RequestResponse"
		if i == 2 {
			typ = "Event"
		}
		for _, want := range []string{
			"POST /base/namespaces/team%20a/2015-03-31/functions/fn/invocations?Qualifier=live HTTP/1.1",
			"Host: " + srv.ln.Addr().String(), "Authorization: Bearer tok", "Content-Type: application/json",
			"X-Amz-Invocation-Type: " + typ, fmt.Sprintf("Content-Length: %d", len(payload)),
		} {
			if !strings.Contains(joined, want) {
				t.Errorf("request %d lacks %q:\n%s", i, want, joined)
			}
		}
		if bodies[i] != payload {
			t.Errorf("request %d: body of %d bytes, want the %d-byte payload", i, len(bodies[i]), len(payload))
		}
	}
}

// A kept-alive connection the activator closed while idle is noticed at the next request,
// before any answer: the request goes again on a new connection, once. A new connection
// that dies before answering is an error, not a retry.
func TestConnInvokerRetriesOnlyADeadKeptAliveConnection(t *testing.T) {
	var requests atomic.Int32
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		requests.Add(1)
		if n >= 3 {
			return // the third connection dies without an answer
		}
		_, _ = io.WriteString(c, okAnswer)
		// ... then closes (as an idle timeout would), without Connection: close.
	})
	inv := invokeclient.NewConnInvoker(srv.url(), nil, nil)
	if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the server has closed the connection
	resp, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second invocation over a closed kept-alive connection: %+v, %v", resp, err)
	}
	if n, r := srv.conns.Load(), requests.Load(); n != 2 || r != 2 {
		t.Errorf("%d connections, %d requests served; want 2 and 2", n, r)
	}
	time.Sleep(50 * time.Millisecond)
	_, err = inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")})
	if err == nil {
		t.Fatal("no error from a connection that closed without answering")
	}
	// The second connection was dead (retried on the third), the third died unanswered.
	if n, r := srv.conns.Load(), requests.Load(); n != 3 || r != 3 {
		t.Errorf("%d connections, %d requests; want 3 and 3 (one retry, not more)", n, r)
	}
}

// An answer cut short, or one over the response bound, fails the invocation and the
// connection is not used again; Connection: close is honoured.
func TestConnInvokerBrokenAnswers(t *testing.T) {
	answers := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nnul",                      // cut short
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",                   // over 7 MB
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nnull", // fine, then closed
		"HTTP/1.1 100 Continue\r\n\r\n",                                         // not asked for
		"garbage\r\n\r\n",                                                       // not HTTP
		"HTTP/1.1 503 Service Unavailable\r\nX-Amzn-Errortype: ServiceException\r\nContent-Length: 31\r\n\r\n{\"message\":\"activator is busy\"}", // a system error
	}
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, answers[n-1])
		if n != 6 {
			return
		}
		// The error answer keeps the connection: serve one more.
		if _, _, err := readRequest(br); err == nil {
			_, _ = io.WriteString(c, okAnswer)
		}
	})
	inv := invokeclient.NewConnInvoker(srv.url(), nil, nil)
	for i := range answers {
		resp, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")})
		if (err == nil) != (i == 2) {
			t.Errorf("answer %d: %+v, %v", i, resp, err)
		}
		if i == 5 && (err == nil || !strings.Contains(err.Error(), "503 ServiceException: activator is busy")) {
			t.Errorf("503: %v", err)
		}
	}
	if n := srv.conns.Load(); n != int32(len(answers)) {
		t.Errorf("%d connections, want one per broken answer (%d)", n, len(answers))
	}
	if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")}); err != nil {
		t.Errorf("after a 503 the connection is kept: %v", err)
	}
	if n := srv.conns.Load(); n != int32(len(answers)) {
		t.Errorf("%d connections after the 503's reuse, want %d", n, len(answers))
	}
}

// A cancelled invocation returns at once, and its connection is not reused.
func TestConnInvokerCancel(t *testing.T) {
	release := make(chan struct{})
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n == 1 {
				<-release // never answers the first connection's request
				return
			}
			if _, err := io.WriteString(c, okAnswer); err != nil {
				return
			}
		}
	})
	defer close(release)
	inv := invokeclient.NewConnInvoker(srv.url(), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := inv.Invoke(ctx, invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("cancelled invocation: %v after %v", err, time.Since(start))
	}
	if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the cancelled one is not reused)", n)
	}
}

// MaxConns bounds the invocations in flight; more wait for a connection.
func TestConnInvokerMaxConns(t *testing.T) {
	var inFlight, most atomic.Int32
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			inFlight.Add(-1)
			if _, err := io.WriteString(c, okAnswer); err != nil {
				return
			}
		}
	})
	inv := invokeclient.NewConnInvoker(srv.url(), nil, nil)
	inv.MaxConns = 2
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m != 2 {
		t.Errorf("at most %d invocations in flight, want 2", m)
	}
	if n := srv.conns.Load(); n > 2 {
		t.Errorf("%d connections, want at most 2", n)
	}
}

// Bad settings and a token that would end the header are refused before anything is sent.
func TestConnInvokerRefusals(t *testing.T) {
	srv := newRawServer(t, func(_ int, _ net.Conn, br *bufio.Reader) { _, _, _ = readRequest(br) })
	for _, u := range []string{"ftp://activator", "http://", "http://user@activator", "http://activator?x=1", "://"} {
		if _, err := invokeclient.NewConnInvoker(u, nil, nil).Invoke(context.Background(), invokeclient.Request{FunctionName: "fn"}); err == nil {
			t.Errorf("%q: no error", u)
		}
	}
	inv := invokeclient.NewConnInvoker(srv.url(), invokeclient.StaticToken("a\r\nX-Evil: 1"), nil)
	if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn"}); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("token with CRLF: %v", err)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections made for refused requests", n)
	}
}

// An https activator: the CA given verifies it, and connections are kept alive.
func TestConnInvokerTLS(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `"ok"`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	inv := invokeclient.NewConnInvoker(srv.URL, nil, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	for range 3 {
		resp, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte("{}")})
		if err != nil || string(resp.Payload) != `"ok"` {
			t.Fatalf("https: %+v, %v", resp, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d TLS connections for 3 invocations, want 1", n)
	}
	// Without the CA the certificate is refused.
	if _, err := invokeclient.NewConnInvoker(srv.URL, nil, nil).Invoke(context.Background(), invokeclient.Request{FunctionName: "fn"}); err == nil {
		t.Error("an unknown CA was accepted")
	}
}

// An activator that answers before reading the whole event (a 401) and closes: the write
// fails, and the answer is what the caller gets, as with net/http.
func TestConnInvokerReadsAnEarlyAnswer(t *testing.T) {
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil { // the head only
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nX-Amzn-Errortype: UnauthorizedException\r\nConnection: close\r\nContent-Length: 24\r\n\r\n{\"message\":\"bad token!\"}")
		// Closing with the event unread resets the connection: the client's write fails.
	})
	inv := invokeclient.NewConnInvoker(srv.url(), nil, nil)
	payload := make([]byte, 64<<20) // past any socket buffers
	_, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: payload})
	if err == nil || !strings.Contains(err.Error(), "401 UnauthorizedException: bad token!") {
		t.Fatalf("early 401: %v", err)
	}
}
