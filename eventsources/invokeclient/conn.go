package invokeclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// ConnInvoker is the pollers' hot path: the same requests and answers as HTTPInvoker (same
// path, headers and status handling, tested alike), written by hand onto kept-alive HTTP/1.1
// connections. Each request's head and its event go out in one writev (net.Buffers), with
// no copy of the event; the connection has no reader and writer goroutines; the answer is
// parsed by net/http's own ReadResponse. In bench/eventsources net/http's client cost about
// 0.8 µs of CPU per record more (the HTTP floor column: the event copied through a
// LimitedReader in 32 kB chunks, the request and answer handed between the connection's
// goroutines). Safe for concurrent use.
type ConnInvoker struct {
	// ActivatorURL is the activator's base URL (http or https).
	ActivatorURL string
	// Tokens authenticates the poller; nil sends no token.
	Tokens TokenSource
	// TLS is the client's TLS configuration for an https ActivatorURL (nil: the system's).
	TLS *tls.Config
	// MaxConns bounds the invocations in flight (default 512), each on a connection of its
	// own, and the idle connections kept alive between them. An invocation past it waits.
	MaxConns int
	// IdleTimeout: a connection idle longer is closed instead of reused (default 30 s,
	// under the activator's 2 min idle timeout).
	IdleTimeout time.Duration

	once    sync.Once
	initErr error
	base    string // path prefix of the URL
	host    string // Host header
	addr    string // host:port to dial
	tlsCfg  *tls.Config
	slots   chan struct{} // one per invocation in flight

	mu   sync.Mutex
	idle []*keptConn // most recently used last
}

// keptConn is one connection to the activator and its reader.
type keptConn struct {
	net.Conn
	br   *bufio.Reader
	used time.Time // when it was last given back
}

// NewConnInvoker builds a ConnInvoker.
func NewConnInvoker(activatorURL string, tokens TokenSource, tlsCfg *tls.Config) *ConnInvoker {
	return &ConnInvoker{ActivatorURL: activatorURL, Tokens: tokens, TLS: tlsCfg}
}

func (c *ConnInvoker) init() {
	u, err := url.Parse(c.ActivatorURL)
	if err != nil {
		c.initErr = fmt.Errorf("activator URL %q: %w", c.ActivatorURL, err)
		return
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		c.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLS != nil {
			c.tlsCfg = c.TLS.Clone()
		}
		if c.tlsCfg.ServerName == "" {
			c.tlsCfg.ServerName = u.Hostname()
		}
		// HTTP/1.1: one batch per connection, no HTTP/2 flow control on 6 MB payloads.
		c.tlsCfg.NextProtos = []string{"http/1.1"}
	default:
		c.initErr = fmt.Errorf("activator URL %q: the scheme must be http or https", c.ActivatorURL)
		return
	}
	if u.Hostname() == "" || u.RawQuery != "" || u.User != nil {
		c.initErr = fmt.Errorf("activator URL %q: want scheme://host[:port][/path], no user or query", c.ActivatorURL)
		return
	}
	c.host = u.Host
	c.addr = net.JoinHostPort(u.Hostname(), port)
	c.base = u.EscapedPath()
	for len(c.base) > 0 && c.base[len(c.base)-1] == '/' {
		c.base = c.base[:len(c.base)-1]
	}
	n := c.MaxConns
	if n <= 0 {
		n = 512
	}
	c.slots = make(chan struct{}, n)
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
}

// Invoke calls the function synchronously (or asynchronously with req.Async).
func (c *ConnInvoker) Invoke(ctx context.Context, req Request) (Response, error) {
	// This invoker never reads the payload after it returns.
	if req.Release != nil {
		defer req.Release()
	}
	c.once.Do(c.init)
	if c.initErr != nil {
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, c.initErr)
	}
	head, err := c.head(req)
	if err != nil {
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, ctx.Err())
	}
	for {
		kc, reused, err := c.conn(ctx)
		if err != nil {
			<-c.slots
			return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
		}
		res, body, answered, reusable, err := c.exchange(ctx, kc, head, req.Payload) //nolint:bodyclose // exchange read the body whole and closed it
		if err == nil {
			c.putBack(kc, reusable)
			return answer(req.FunctionName, res, body)
		}
		_ = kc.Close()
		// A kept-alive connection the activator closed while it was idle fails before any
		// byte of an answer arrives: send again on another one (as net/http does for a
		// request it knows went unread). The activator closes only idle connections, so the
		// request was not being served; were it, this is one more delivery, at least once.
		if reused && !answered && ctx.Err() == nil {
			continue
		}
		<-c.slots
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
	}
}

// head is the request line and headers of an invocation.
func (c *ConnInvoker) head(req Request) ([]byte, error) {
	typ := contract.InvocationRequestResponse
	if req.Async {
		typ = contract.InvocationEvent
	}
	h := make([]byte, 0, 256)
	h = append(h, "POST "...)
	h = append(h, c.base...)
	h = append(h, invocationPath(req.Namespace, req.FunctionName)...)
	h = append(h, " HTTP/1.1\r\nHost: "...)
	h = append(h, c.host...)
	h = append(h, "\r\nUser-Agent: klambda-eventsources\r\nContent-Type: application/json\r\n"...)
	h = append(h, contract.HeaderInvocationType...)
	h = append(h, ": "...)
	h = append(h, typ...)
	h = append(h, "\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(req.Payload)), 10)
	h = append(h, "\r\n"...)
	if c.Tokens != nil {
		tok, err := c.Tokens.Token()
		if err != nil {
			return nil, err
		}
		if tok != "" {
			// A token is opaque to the poller, but must not end the header (net/http refuses
			// such values too).
			for i := range len(tok) {
				if b := tok[i]; b < 0x20 || b == 0x7f {
					return nil, errors.New("the token contains a control character")
				}
			}
			h = append(h, "Authorization: Bearer "...)
			h = append(h, tok...)
			h = append(h, "\r\n"...)
		}
	}
	return append(h, "\r\n"...), nil
}

// conn takes the most recently used idle connection, or dials one; reused tells which.
func (c *ConnInvoker) conn(ctx context.Context) (kc *keptConn, reused bool, err error) {
	now := time.Now()
	c.mu.Lock()
	for len(c.idle) > 0 {
		kc = c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		if now.Sub(kc.used) <= c.IdleTimeout {
			c.mu.Unlock()
			return kc, true, nil
		}
		_ = kc.Close() // the activator may be closing it just now
	}
	c.mu.Unlock()
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, false, err
	}
	if c.tlsCfg != nil {
		tc := tls.Client(nc, c.tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, false, err
		}
		nc = tc
	}
	return &keptConn{Conn: nc, br: bufio.NewReaderSize(nc, 4<<10)}, false, nil
}

// exchange writes the request and reads the whole answer. answered tells whether any byte
// of an answer arrived (a failure before that is a connection that was already dead);
// reusable whether the connection may carry the next request.
func (c *ConnInvoker) exchange(ctx context.Context, kc *keptConn, head, payload []byte) (res *http.Response, body []byte, answered, reusable bool, err error) {
	// Cancellation interrupts the blocked write or read through the connection's deadline;
	// once it fired, the connection is not reused (the deadline may be set).
	stop := context.AfterFunc(ctx, func() { _ = kc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			reusable = false
		}
	}()
	bufs := net.Buffers{head, payload}
	if _, werr := bufs.WriteTo(kc.Conn); werr != nil {
		// The activator may have answered without reading the whole event (a 401, a 413)
		// and closed: read that answer if it came, as net/http does.
		_ = kc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := kc.br.Peek(1); err != nil {
			return nil, nil, false, false, werr
		}
		// It came whole or not at all: bounded, it cannot hold a cancelled call either.
		_ = kc.SetReadDeadline(time.Now().Add(time.Second))
		reusable = false
	} else if _, err := kc.br.Peek(1); err != nil {
		return nil, nil, false, false, err
	} else {
		reusable = true
	}
	res, err = http.ReadResponse(kc.br, nil)
	if err != nil {
		return nil, nil, true, false, fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode < 200 {
		// Nothing here asks for an interim answer (no Expect: 100-continue).
		return nil, nil, true, false, fmt.Errorf("reading the answer: unexpected %s", res.Status)
	}
	// readBody reads the body to its end (Content-Length, or the last chunk) or fails: the
	// connection is then at the next answer's first byte.
	body, err = readBody(res)
	_ = res.Body.Close()
	if err != nil {
		return nil, nil, true, false, fmt.Errorf("reading the answer: %w", err)
	}
	return res, body, true, reusable && !res.Close, nil
}

// putBack keeps the connection for the next invocation, unless it is not reusable (the
// activator asked to close it, or the call was cancelled) or MaxConns idle connections are
// kept already.
func (c *ConnInvoker) putBack(kc *keptConn, reusable bool) {
	defer func() { <-c.slots }()
	if !reusable {
		_ = kc.Close()
		return
	}
	kc.used = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= cap(c.slots) {
		_ = kc.Close()
		return
	}
	c.idle = append(c.idle, kc)
}

// CloseIdle closes the idle connections (tests; a poller replica keeps its invoker for life).
func (c *ConnInvoker) CloseIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kc := range c.idle {
		_ = kc.Close()
	}
	c.idle = nil
}
