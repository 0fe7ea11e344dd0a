package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// Server is the shim's HTTP/1.1 server for the invoke endpoint and the Runtime API (and
// the activator's for its plain-HTTP listeners): requests are parsed as net/http's own
// parser (http.ReadRequest) parses them and served by ordinary http.Handlers, but the
// connection loop is a lean one. net/http's server costs more than
// the shim's own work on a warm invocation (three requests): a context with a cancel func
// per request, a goroutine-parked background read per request (one more system call and
// wake-up), read-deadline timers armed and disarmed per request, two layers of buffered
// writers. Here a connection is one goroutine that reads a request, runs the handler and
// writes the answer with one system call (head and body together); nothing else runs per
// request unless a handler asks for it: a request's context notices the client hanging up
// only once the handler calls Done (the long-polls /next and event/next), through a
// watcher that peeks at the socket.
//
// The common request head (HTTP/1.1, CRLF, no continuation lines or transfer codings) is
// parsed by parsePlainRequest with one allocation for its text and one for the Request
// and what it holds; any other by http.ReadRequest. Both give the same Request
// (plainhead_test.go).
//
// What net/http's server does and this one keeps: keep-alive and Connection: close,
// HTTP/1.0 (keep-alive on request), pipelined requests (answered in order), bodies by
// Content-Length or chunked, Expect: 100-continue (417 for any other expectation), the
// header size limit (431), ReadHeaderTimeout (armed only when a request head does not
// arrive in one piece), Host checks, 501 for unknown transfer codings, a request body the
// handler left unread is discarded up to 256 KB (else the connection is closed), no body
// for HEAD, 204 and 304, Content-Length computed for short unsized answers and chunked
// encoding for long ones, Content-Type sniffing, Date, trailers in chunked answers
// (declared in a Trailer header or set under http.TrailerPrefix), IdleTimeout, a handler's
// panic(http.ErrAbortHandler) cutting the connection without a log. What it does not do:
// HTTP/2, Hijack, 1xx answers from handlers, a snapshot of the header map at the first
// Write (a header set after Write but before the head went out, i.e. before a Flush or
// more than 2 KB of body, is sent, where net/http ignores it), and TLS well: over a listener whose
// connections are not sockets (tls.Listener) a request's context is not canceled when the
// client hangs up (there is no socket to watch), so serve TLS with net/http.
type Server struct {
	Handler http.Handler
	// ReadHeaderTimeout bounds a request head's arrival (0: none), and how long a new
	// connection may stay silent before its first request.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that has been waiting for its next
	// request this long (0: never). As with ReadHeaderTimeout for a silent new
	// connection, no timer is armed per request: a sweep every
	// sweepInterval closes the connections past their time.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head (0: net/http's 1 MB), with net/http's slack
	// of 4096 bytes; a larger one is answered 431.
	MaxHeaderBytes int
	// BodyTimeout bounds the arrival of a request's body, from the handler's first read of
	// it (0: none): a read past it fails with os.ErrDeadlineExceeded. As with the head, a
	// timer is armed only when the body has not all arrived already.
	BodyTimeout time.Duration
	// ConnContext, when set, is called once per accepted connection (as net/http's): the
	// values of the context it returns are those of the connection's requests' contexts
	// (their cancellation stays the server's).
	ConnContext func(ctx context.Context, c net.Conn) context.Context

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*httpConn]struct{}
	shutdown atomic.Bool
	sweeping bool
}

// sweepInterval is how often idle connections are looked at: an eighth of the shortest
// timeout, within [10 ms, 1 s], so a connection is closed at most that late.
func (s *Server) sweepInterval() time.Duration {
	d := s.IdleTimeout
	if s.ReadHeaderTimeout > 0 && (d == 0 || s.ReadHeaderTimeout < d) {
		d = s.ReadHeaderTimeout
	}
	return min(max(d/8, 10*time.Millisecond), time.Second)
}

// sweep closes the idle connections whose time has passed, until the server shuts down.
func (s *Server) sweep() {
	t := time.NewTicker(s.sweepInterval())
	defer t.Stop()
	for range t.C {
		if s.shutdown.Load() {
			return
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		for c := range s.conns {
			if c.idle.Load() {
				if until := c.idleUntil.Load(); until != 0 && now > until {
					// The connection's goroutine sees its read fail and ends it (no answer,
					// as net/http at an idle or header timeout).
					c.nc.Close()
				}
			}
		}
		s.mu.Unlock()
	}
}

// idleFor is when a connection entering the idle state may be closed: after
// ReadHeaderTimeout for a new one, IdleTimeout for one that served a request (0: never).
func (s *Server) idleFor(served bool) int64 {
	d := s.IdleTimeout
	if !served {
		d = s.ReadHeaderTimeout
	}
	if d <= 0 {
		return 0
	}
	return time.Now().Add(d).UnixNano()
}

const (
	httpMaxHeaderBytes = 1 << 20 // net/http's DefaultMaxHeaderBytes
	// httpHeadLimit is how much may be read before a request head is complete (net/http
	// allows 4096 bytes of slack over the limit).
	httpHeadLimit = httpMaxHeaderBytes + 4096
	// httpMaxDiscard is how much of a request body the handler did not read is read and
	// dropped to keep the connection (net/http's maxPostHandlerReadBytes).
	httpMaxDiscard = 256 << 10
	// httpBufferBeforeChunking: an answer without Content-Length that outgrows this while
	// the handler runs is sent chunked; a shorter one gets a Content-Length (as net/http).
	httpBufferBeforeChunking = 2048
)

// headLimit is how much may be read before a request head is complete.
func (s *Server) headLimit() int64 {
	if s.MaxHeaderBytes > 0 {
		return int64(s.MaxHeaderBytes) + 4096
	}
	return httpHeadLimit
}

var errServerClosed = http.ErrServerClosed

// Serve accepts connections on ln until Shutdown or an accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return errServerClosed
	}
	s.ln = ln
	if s.conns == nil {
		s.conns = map[*httpConn]struct{}{}
	}
	if !s.sweeping && (s.IdleTimeout > 0 || s.ReadHeaderTimeout > 0) {
		s.sweeping = true
		go s.sweep()
	}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// As net/http: back off on temporary errors (out of descriptors).
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newHTTPConn(s, nc)
		s.mu.Lock()
		if s.shutdown.Load() {
			s.mu.Unlock()
			nc.Close()
			return errServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, and waits (until ctx ends) for
// connections serving a request to finish it; the rest are then closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeConns(false) {
			return nil
		}
		select {
		case <-ctx.Done():
			s.closeConns(true)
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	s.closeConns(true)
	return nil
}

// closeConns closes idle connections (all of them with all) and reports whether none is
// left.
func (s *Server) closeConns(all bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if all || c.idle.Load() {
			c.nc.Close()
			delete(s.conns, c)
		}
	}
	return len(s.conns) == 0
}

func (s *Server) forget(c *httpConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// httpConn is one client connection.
type httpConn struct {
	srv  *Server
	nc   net.Conn
	rc   syscall.RawConn // nil when nc is not a socket (no disconnect watcher)
	lr   limitedConnReader
	br   *bufio.Reader
	idle atomic.Bool // between requests (Shutdown may close it)
	// idleUntil: when the sweep may close the idle connection (unix ns; 0: never).
	idleUntil atomic.Int64
	w         httpResponse
	// lastMethod: after a POST, stray CR/LF before the next request line are skipped
	// (RFC 7230 §3.5, as net/http).
	lastMethod string
	remoteAddr string
	served     bool            // a request was read on this connection
	body       requestBody     // the current request's body
	values     context.Context // Server.ConnContext's, for its values; nil without one
	// ctxRoom is room for the next request's context, allocated with the request.
	ctxRoom *requestContext
}

// connReadBuffer is a connection's read buffer. A body with a Content-Length is read past
// it, straight into the handler's buffer; a chunked one (what aws-lambda-go posts to
// /response, in chunks of its copy buffer) is read through it, chunk header by chunk
// header: with net/http's 4 KB that took 70 reads per MB, with 64 KB about 16.
const connReadBuffer = 64 << 10

func newHTTPConn(s *Server, nc net.Conn) *httpConn {
	c := &httpConn{srv: s, nc: nc, remoteAddr: nc.RemoteAddr().String()}
	switch t := nc.(type) {
	case *rawConn:
		c.rc = t.rc
	case syscall.Conn:
		c.rc, _ = t.SyscallConn()
	}
	if s.ConnContext != nil {
		c.values = s.ConnContext(context.Background(), nc)
	}
	c.lr.r = nc
	c.br = bufio.NewReaderSize(&c.lr, connReadBuffer)
	c.w.conn = c
	c.idleUntil.Store(s.idleFor(false))
	c.idle.Store(true)
	return c
}

// limitedConnReader is net/http's read limit on a request head: reading past it
// ends the head with EOF, reported as 431.
type limitedConnReader struct {
	r      io.Reader
	remain int64
	hit    bool
	// capture keeps what is read while capturing (a request head that did not arrive in
	// one piece).
	capture   []byte
	capturing bool
}

func (l *limitedConnReader) Read(p []byte) (int, error) {
	if l.remain <= 0 {
		l.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.r.Read(p)
	l.remain -= int64(n)
	if l.capturing && len(l.capture) < httpHeadLimit {
		l.capture = append(l.capture, p[:n]...)
	}
	return n, err
}

const httpErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *httpConn) serve() {
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler { //nolint:errorlint // net/http's own test of the sentinel
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			fmt.Fprintf(os.Stderr, "transport: panic serving %s: %v\n%s", c.remoteAddr, p, buf)
		}
		c.nc.Close()
		c.srv.forget(c)
	}()
	for {
		req, err := c.readRequest()
		if err != nil {
			if !c.srv.shutdown.Load() {
				c.answerBadRequest(err)
			}
			return
		}
		// A request read while Shutdown begins is served, with Connection: close (as
		// net/http): dropping it would fail a request the client has sent.
		if !c.serveRequest(req) {
			if c.body.unread() {
				// As net/http: the client may still be sending the body nobody reads;
				// closing now could reset the connection before it reads the answer.
				c.closeWriteAndWait()
			}
			return
		}
		c.idleUntil.Store(c.srv.idleFor(true))
		c.idle.Store(true)
		if c.srv.shutdown.Load() {
			return
		}
	}
}

// statusError is a request net/http's server rejects after parsing it.
type statusError struct {
	code int
	text string
}

func (e statusError) Error() string { return http.StatusText(e.code) + ": " + e.text }

var errHeadTooLarge = errors.New("request head too large")

// answerBadRequest answers a request that could not be read as net/http's server does
// (then the connection is closed).
func (c *httpConn) answerBadRequest(err error) {
	var se statusError
	switch {
	case errors.Is(err, errHeadTooLarge):
		const publicErr = "431 Request Header Fields Too Large"
		_, _ = io.WriteString(c.nc, "HTTP/1.1 "+publicErr+httpErrorHeaders+publicErr)
		c.closeWriteAndWait()
	case strings.HasPrefix(err.Error(), "unsupported transfer encoding"):
		_, _ = io.WriteString(c.nc, "HTTP/1.1 501 Not Implemented"+httpErrorHeaders+"Unsupported transfer encoding")
	case isCommonNetReadError(err):
		// The client went away or sent nothing more: no answer.
	case errors.As(err, &se):
		_, _ = fmt.Fprintf(c.nc, "HTTP/1.1 %d %s: %s%s%d %s: %s", se.code, http.StatusText(se.code), se.text, httpErrorHeaders, se.code, http.StatusText(se.code), se.text)
	default:
		const publicErr = "400 Bad Request"
		_, _ = io.WriteString(c.nc, "HTTP/1.1 "+publicErr+httpErrorHeaders+publicErr)
	}
}

func isCommonNetReadError(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// closeWriteAndWait flushes the answer and half-closes, giving the client a moment to
// read it before the connection closes (net/http's closeWriteAndWait).
func (c *httpConn) closeWriteAndWait() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.Sleep(500 * time.Millisecond)
}

// readRequest waits for a request and parses it with net/http's parser.
func (c *httpConn) readRequest() (*http.Request, error) {
	c.lr.remain, c.lr.hit = c.srv.headLimit(), false
	if err := c.awaitRequest(); err != nil {
		return nil, err
	}
	req, hosts, hostValue, err := c.parseHead()
	if err != nil {
		if c.lr.hit {
			return nil, errHeadTooLarge
		}
		return nil, err
	}
	c.lr.remain = math.MaxInt64
	c.lastMethod = req.Method
	// (The plain parse took only header names that are tokens and values without control
	// characters: what checkRequest's loop over the header would check again.)
	if err := checkRequest(req, hosts, hostValue, c.ctxRoom != nil); err != nil {
		return nil, err
	}
	req.RemoteAddr = c.remoteAddr
	return req, nil
}

// awaitRequest waits for a request's first bytes. After a request, as net/http: fewer
// than 4 bytes before the end of the stream close the connection without an answer, and
// the blank lines a client may send after a POST's body are dropped.
func (c *httpConn) awaitRequest() error {
	peek := 1
	if c.served {
		peek = 4
	}
	if _, err := c.br.Peek(peek); err != nil {
		if c.served {
			return io.EOF
		}
		return err
	}
	c.served = true
	c.idle.Store(false)
	if c.lastMethod == http.MethodPost {
		peek, _ := c.br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		_, _ = c.br.Discard(n)
	}
	return nil
}

// parseHead parses a request head (the common one by parsePlainRequest, any other with
// http.ReadRequest), and counts its Host headers (hosts, the value of the last) for
// checkRequest.
//
// The head usually arrives in one piece; a deadline (a timer) is armed only when it did
// not, so that a client cannot hold the connection with half a head. The head's bytes are
// kept for the Host checks net/http's server makes (http.ReadRequest folds the Host
// header into req.Host).
func (c *httpConn) parseHead() (req *http.Request, hosts int, hostValue string, err error) {
	buffered, _ := c.br.Peek(c.br.Buffered())
	var head []byte
	complete := headEnd(buffered) >= 0
	if complete {
		head = buffered[:headEnd(buffered)]
	} else {
		c.lr.capture = append(c.lr.capture[:0], buffered...)
		c.lr.capturing = true
	}
	if complete {
		if pr, hosts := parsePlain(c.br, head); pr != nil {
			c.ctxRoom = &pr.ctx
			return &pr.req, hosts, pr.req.Host, nil // (an origin-form target: req.Host is the Host header's)
		}
	}
	hosts, hostValue = hostHeaders(head)
	deadline := false
	if d := c.srv.ReadHeaderTimeout; d > 0 && !complete {
		_ = c.nc.SetReadDeadline(time.Now().Add(d))
		deadline = true
	}
	req, err = http.ReadRequest(c.br)
	if deadline {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	if !complete {
		c.lr.capturing = false
		if i := headEnd(c.lr.capture); i >= 0 {
			hosts, hostValue = hostHeaders(c.lr.capture[:i])
		}
		if cap(c.lr.capture) > 64<<10 {
			c.lr.capture = nil
		}
	}
	return req, hosts, hostValue, err
}

// checkRequest makes the checks net/http's server makes after parsing (those of the
// header fields unless fieldsValid).
func checkRequest(req *http.Request, hosts int, hostValue string, fieldsValid bool) error {
	if req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
		return statusError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	}
	// The HTTP/2 preface reaches the handler, as in net/http (then the connection closes).
	h2Preface := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	if req.ProtoAtLeast(1, 1) && hosts == 0 && req.Method != http.MethodConnect && !h2Preface {
		return statusError{http.StatusBadRequest, "missing required Host header"}
	}
	if hosts == 1 && !httpguts.ValidHostHeader(hostValue) {
		return statusError{http.StatusBadRequest, "malformed Host header"}
	}
	if fieldsValid {
		return nil
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return statusError{http.StatusBadRequest, "invalid header name"}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return statusError{http.StatusBadRequest, "invalid header value"}
			}
		}
	}
	return nil
}

// serveRequest runs the handler for req and finishes its answer; false when the
// connection must not be reused.
func (c *httpConn) serveRequest(req *http.Request) bool {
	w := &c.w
	w.reset(req)
	rctx := c.ctxRoom // allocated with the request, when the plain parse read it
	c.ctxRoom = nil
	if rctx == nil {
		rctx = new(requestContext)
	}
	rctx.conn = c
	req = req.WithContext(rctx)
	w.req = req
	c.body = requestBody{rc: req.Body, sized: len(req.TransferEncoding) == 0, conn: c, length: req.ContentLength}
	w.reqBody = &c.body
	req.Body = w.reqBody
	if ex := headerGet(req.Header, "Expect"); ex != "" {
		if !hasToken(ex, "100-continue") {
			// As net/http: any other expectation cannot be met.
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusExpectationFailed)
			w.handlerDone = true
			w.finish()
			return false
		}
	}
	if req.ProtoAtLeast(1, 1) && req.ContentLength != 0 && headerGet(req.Header, "Expect") != "" {
		w.ecr = &expectContinueReader{body: w.reqBody, w: w}
		req.Body = w.ecr
	}
	c.srv.Handler.ServeHTTP(w, req)
	if c.body.deadline {
		_ = c.nc.SetReadDeadline(time.Time{})
		c.body.deadline = false
	}
	w.handlerDone = true
	rctx.end()
	w.finish()
	return !w.closeAfter && !w.broken
}

// requestContext is a request's context: canceled when the handler returns, or when
// the client hangs up while a handler waits on Done.
type requestContext struct {
	conn *httpConn
	mu   sync.Mutex
	done chan struct{}
	err  error
	// watching: a watcher goroutine waits on the socket; stopped (and waited for) at end.
	watching bool
	watchEnd chan struct{}
	ended    bool
}

func (x *requestContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value answers the connection's values (Server.ConnContext), if any.
func (x *requestContext) Value(k any) any {
	if x.conn.values == nil {
		return nil
	}
	return x.conn.values.Value(k)
}

func (x *requestContext) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Done starts watching the connection for the client hanging up, the first time it is
// called while the request runs.
func (x *requestContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if x.err != nil {
			close(x.done)
			return x.done
		}
	}
	if !x.watching && !x.ended && x.conn.rc != nil && x.conn.br.Buffered() == 0 {
		x.watching = true
		x.watchEnd = make(chan struct{})
		go x.watch()
	}
	return x.done
}

func (x *requestContext) cancelLocked() {
	if x.err != nil {
		return
	}
	x.err = context.Canceled
	if x.done != nil {
		close(x.done)
	}
}

// peekSocket looks at one byte of fd without taking it or waiting: (0, EAGAIN) when
// nothing has arrived, (0, 0) at the end of the stream, (1, 0) when bytes are there.
func peekSocket(fd uintptr) (uintptr, syscall.Errno) {
	var b [1]byte
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EINTR {
			return n, errno
		}
	}
}

// hungUp tells from a peekSocket result (not EAGAIN) whether the client is gone: end of
// stream or an error (a reset) means it hung up; data (a pipelined request) means it is
// still there.
func hungUp(n uintptr, errno syscall.Errno) bool { return errno != 0 || n == 0 }

// watch waits until the socket is readable and looks without reading (peekSocket);
// a client that hung up cancels the context. end stops it with a read deadline in the
// past.
func (x *requestContext) watch() {
	defer close(x.watchEnd)
	var n uintptr
	var errno syscall.Errno
	err := x.conn.rc.Read(func(fd uintptr) bool {
		n, errno = peekSocket(fd)
		return errno != syscall.EAGAIN
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return // stopped by end
	}
	if err != nil || hungUp(n, errno) {
		// The client hung up, or the server closed the connection (Close): the handler
		// has nobody to answer, as with net/http.
		x.mu.Lock()
		x.cancelLocked()
		x.mu.Unlock()
	}
}

// PeerChecker is a request context that can tell, without waiting, whether the client
// has hung up.
type PeerChecker interface {
	PeerGone() bool
}

// PeerGone is watch's look at the socket, once and without waiting: nothing yet, or a
// pipelined request, means the client is still there. Only the connection's own goroutine
// (the handler) may call it.
func (x *requestContext) PeerGone() bool {
	c := x.conn
	if c.rc == nil || c.br.Buffered() > 0 {
		return false
	}
	gone := true // closed
	_ = c.rc.Control(func(fd uintptr) { gone = peerGone(fd) })
	return gone
}

// peerGone is one look at socket fd without waiting: true when the client hung up.
func peerGone(fd uintptr) bool {
	n, errno := peekSocket(fd)
	return errno != syscall.EAGAIN && hungUp(n, errno)
}

// aLongTimeAgo is a read deadline that wakes a parked reader at once.
var aLongTimeAgo = time.Unix(1, 0)

func (x *requestContext) end() {
	x.mu.Lock()
	x.ended = true
	x.cancelLocked()
	watching := x.watching
	x.mu.Unlock()
	if watching {
		_ = x.conn.nc.SetReadDeadline(aLongTimeAgo)
		<-x.watchEnd
		_ = x.conn.nc.SetReadDeadline(time.Time{})
	}
}

// requestBody is a request's body as the handler reads it: what became of it decides
// whether the connection can carry another request.
type requestBody struct {
	rc     io.ReadCloser
	n      int64 // bytes read
	sawEOF bool
	failed bool // a read failed (a broken chunk): the rest cannot be found
	closed bool
	// sized: the body has a Content-Length; as in net/http, its end of stream comes
	// early (ErrUnexpectedEOF) only when the connection's does.
	sized bool
	// conn and length: for the server's BodyTimeout (length is the Content-Length, -1 when
	// chunked); deadline: it is armed.
	conn     *httpConn
	length   int64
	deadline bool
}

// unread tells whether the client may still be sending a body that was not read to its end.
func (b *requestBody) unread() bool {
	return b.length != 0 && !b.sawEOF && b.n != b.length
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if c := b.conn; c != nil && !b.deadline && c.srv.BodyTimeout > 0 && !b.sawEOF &&
		(b.length < 0 || int64(c.br.Buffered()) < b.length-b.n) {
		// The rest of the body is still to come: it has BodyTimeout to arrive.
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.BodyTimeout))
		b.deadline = true
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF) && b.sized:
		b.sawEOF = true
	case err != nil && !errors.Is(err, http.ErrBodyReadAfterClose):
		b.failed = true
	}
	if b.deadline && (b.sawEOF || b.n == b.length) {
		// The body is in: the rest of the request (a long invocation, a watcher of the
		// client hanging up) runs without the deadline, as with net/http.
		_ = b.conn.nc.SetReadDeadline(time.Time{})
		b.deadline = false
	}
	return n, err
}

// Close does not read what is left of the body: net/http's body reader would read all of
// it, with no deadline, for a client that may trickle it. What the handler left is read up
// to httpMaxDiscard by settleBody, else the connection closes (net/http's server rules).
func (b *requestBody) Close() error {
	b.closed = true
	if b.sawEOF || b.length == 0 {
		return b.rc.Close()
	}
	return nil
}

// expectContinueReader sends 100 Continue when the handler first reads the body.
type expectContinueReader struct {
	body   *requestBody
	w      *httpResponse
	closed bool
}

func (e *expectContinueReader) Read(p []byte) (int, error) {
	if e.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if w := e.w; w.canWriteContinue {
		w.canWriteContinue = false
		if _, err := io.WriteString(w.conn.nc, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			w.broken = true
		}
	}
	return e.body.Read(p)
}

func (e *expectContinueReader) Close() error {
	e.closed = true
	return e.body.Close()
}

// headEnd is the length of the request head at the start of b (through the empty line),
// or -1 if b does not hold all of it. Like net/textproto, a line may end in LF alone.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return i // (an empty first line: http.ReadRequest fails on it at once)
		}
	}
}

// hostHeaders counts the Host header lines of a request head (header names are tokens,
// so a Host line starts with "host:" in any case) and returns the value of the first,
// continuation lines (obs-fold) joined as net/textproto joins them: each line without its
// line end and its surrounding blanks, joined with one space; the value's leading blanks
// dropped.
func hostHeaders(head []byte) (n int, value string) {
	_, rest, _ := bytes.Cut(head, []byte("\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if len(line) < 5 || !strings.EqualFold(string(line[:5]), "host:") {
			continue
		}
		n++
		if n > 1 {
			continue
		}
		joined := trimBlanks(line)
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			var cont []byte
			cont, rest, _ = bytes.Cut(rest, []byte("\n"))
			joined = append(append(append([]byte(nil), joined...), ' '), trimBlanks(cont)...)
		}
		value = strings.TrimLeft(string(joined[5:]), " \t")
	}
	return n, value
}

// trimBlanks drops one line-ending CR, then spaces and tabs at both ends.
func trimBlanks(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\r"))
	return bytes.Trim(line, " \t")
}
