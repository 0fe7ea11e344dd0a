// Package keepalive sends HTTP/1.1 requests one at a time per connection over keep-alive
// connections kept per address, writing the request and reading the answer's head on the
// caller's goroutine. The activator's two hops that need no more than that use it: to an
// environment (activator/shimclient: an environment runs one invocation at a time) and to
// the peer replica that owns a namespace (activator/peer). net/http's Transport does far
// more for concurrent requests on shared connections (a reader and a writer goroutine per
// connection, channels between them and the caller), which costs two goroutine hand-offs
// per request. A plain answer's head is parsed with one allocation for its text and one for
// the Response, its bodies and header values (head.go; besides the header map), any other
// by http.ReadResponse. A connection's deadline is rounded up to deadlineStep and kept
// while it is idle, so that the exchanges of a busy connection do not each arm and clear
// a timer.
package keepalive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// IdleTimeout is how long an idle connection is kept; the pool forgets connections of
// addresses not used for longer (environments or replicas that went away).
const IdleTimeout = 30 * time.Second

// deadlineStep is how late an exchange may be cut past its deadline: connections' deadlines
// are rounded up to it. deadlineMargin: an idle connection whose deadline is nearer than
// this has it cleared before it is reused (it would fail the next exchange's first read).
const (
	deadlineStep   = 100 * time.Millisecond
	deadlineMargin = time.Second
)

// ErrNotSent marks an error of Do after which the server cannot have the whole request
// (the connection could not be made, or a write of the request failed: its last bytes
// never left): a server that acts only on a whole request did nothing.
var ErrNotSent = errors.New("the request was not sent")

// Request is what Do sends: a head (request line and headers, up to the blank line that
// ends them), then ContentLength bytes of Body.
type Request struct {
	Addr          string // host:port
	Head          HeadWriter
	Body          io.Reader
	ContentLength int64
	// Until, when not zero, bounds the exchange (body included) as a deadline of ctx
	// would, without a context of its own. The connection's deadline is Until (or ctx's)
	// rounded up to deadlineStep, so that the exchanges of a connection within one step
	// share it instead of each moving a timer twice.
	Until time.Time
	// WatchAfter, when not zero, puts off watching ctx for its cancellation until the
	// exchange has lasted that long (its deadline bounds the exchange from the start, and
	// a ctx already canceled sends nothing). A context whose Done is costly to call (the
	// lean server's request context starts a goroutine that watches the client's socket)
	// then costs nothing to an exchange answered sooner, and its cancellation ends a
	// longer one at most WatchAfter late.
	WatchAfter time.Duration
}

// HeadWriter writes a request's head into a buffered writer (which does not fail: an
// error of the connection shows when it is flushed).
type HeadWriter interface {
	WriteHead(w *bufio.Writer)
}

// Pool keeps idle connections per address. The zero Pool is not usable: make it with New.
type Pool struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	mu    sync.Mutex
	idle  map[string][]*conn
	swept time.Time
}

// New returns a Pool that makes connections with dial.
func New(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Pool {
	return &Pool{dial: dial, idle: map[string][]*conn{}}
}

type conn struct {
	nc     net.Conn
	rc     syscall.RawConn // nil: not a socket (no peek at an idle connection)
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// deadline is the connection's read and write deadline (zero: none): kept past the
	// exchange that set it, and moved only when the next one needs another.
	deadline time.Time
	// peekErr is the result of peek, a method value made once so that checking an idle
	// connection allocates nothing.
	peekErr error
	peek    func(fd uintptr) bool
	// body reads a request's body (write), kept here so that it allocates nothing.
	body io.LimitedReader
}

// get returns a live idle connection to addr, or a new one.
func (p *Pool) get(ctx context.Context, addr string) (*conn, error) {
	for {
		p.mu.Lock()
		list := p.idle[addr]
		var c *conn
		if n := len(list); n > 0 {
			c = list[n-1]
			list[n-1] = nil
			p.idle[addr] = list[:n-1]
		}
		p.mu.Unlock()
		if c == nil {
			break
		}
		if c.alive() {
			return c, nil
		}
		c.nc.Close()
	}
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}
	if sc, ok := nc.(syscall.Conn); ok {
		if c.rc, err = sc.SyscallConn(); err != nil {
			nc.Close()
			return nil, err
		}
	}
	c.peek = c.peekFD
	return c, nil
}

// alive: the connection has not been idle too long, and the server has neither closed it
// nor sent anything on it: a peek that must not block finds nothing to read yet.
func (c *conn) alive() bool {
	now := time.Now()
	if now.Sub(c.idleAt) > IdleTimeout || c.br.Buffered() > 0 {
		return false
	}
	if !c.deadline.IsZero() && c.deadline.Sub(now) < deadlineMargin {
		if c.nc.SetDeadline(time.Time{}) != nil {
			return false
		}
		c.deadline = time.Time{}
	}
	if c.rc == nil {
		return true
	}
	c.peekErr = nil
	err := c.rc.Read(c.peek)
	return err == nil && errors.Is(c.peekErr, syscall.EAGAIN)
}

func (c *conn) peekFD(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil && n == 0:
		err = io.EOF
	case err == nil:
		err = errors.New("unexpected bytes on an idle connection")
	}
	c.peekErr = err
	return true
}

// put keeps c for the next request to addr, and forgets connections idle too long.
func (p *Pool) put(addr string, c *conn) {
	now := time.Now()
	c.idleAt = now
	var stale []*conn
	p.mu.Lock()
	p.idle[addr] = append(p.idle[addr], c)
	if now.Sub(p.swept) > IdleTimeout {
		p.swept = now
		for a, list := range p.idle {
			keep := list[:0]
			for _, x := range list {
				if now.Sub(x.idleAt) > IdleTimeout {
					stale = append(stale, x)
				} else {
					keep = append(keep, x)
				}
			}
			if len(keep) == 0 {
				delete(p.idle, a)
			} else {
				p.idle[a] = keep
			}
		}
	}
	p.mu.Unlock()
	for _, x := range stale {
		x.nc.Close()
	}
}

// Do sends r over a pooled connection and reads the answer's head; the body returns the
// connection to the pool once read to its end (closing it earlier closes the
// connection). ctx's deadline and cancellation bound the whole exchange, body included.
// Errors after which the server cannot have the whole request wrap ErrNotSent.
func (p *Pool) Do(ctx context.Context, r *Request) (*http.Response, error) {
	if r.Body != nil && r.ContentLength < 0 {
		return nil, errors.New("keepalive: a body needs its ContentLength")
	}
	if r.WatchAfter > 0 {
		if err := ctx.Err(); err != nil { // (nothing watches it before WatchAfter)
			return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
		}
	}
	cn, err := p.get(ctx, r.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	dl, ok := ctx.Deadline()
	if !r.Until.IsZero() && (!ok || r.Until.Before(dl)) {
		dl = r.Until
	}
	if dl = roundDeadline(dl); !dl.Equal(cn.deadline) {
		_ = cn.nc.SetDeadline(dl)
		cn.deadline = dl
	}
	var stop func() bool
	switch {
	case r.WatchAfter > 0:
		stop = watchLater(ctx, cn.nc, r.WatchAfter)
	case ctx.Done() != nil: // a context that can end (else the deadline is all)
		stop = context.AfterFunc(ctx, func() { cutOff(cn.nc) })
	default:
		stop = notStopped
	}
	resp, b, err := cn.roundTrip(r)
	if err != nil {
		stop()
		cn.nc.Close()
		if ctx.Err() != nil {
			if errors.Is(err, ErrNotSent) {
				return nil, fmt.Errorf("%w: %w", ErrNotSent, ctx.Err())
			}
			return nil, ctx.Err()
		}
		return nil, err
	}
	if b == nil {
		b = new(body)
	}
	*b = body{r: resp.Body, p: p, c: cn, addr: r.Addr, stop: stop, reuse: !resp.Close}
	resp.Body = b
	return resp, nil
}

// roundDeadline rounds a deadline (not zero) up to a multiple of deadlineStep, keeping its
// monotonic clock reading.
func roundDeadline(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	if r := t.UnixNano() % int64(deadlineStep); r != 0 {
		t = t.Add(deadlineStep - time.Duration(r))
	}
	return t
}

// notStopped is the stop of a context that cannot end: there is nothing to stop.
func notStopped() bool { return true }

// cutOff ends an exchange on nc at once: its reads and writes fail.
func cutOff(nc net.Conn) { _ = nc.SetDeadline(time.Unix(1, 0)) }

// lateWatch watches a context's cancellation once a timer has fired (Request.WatchAfter).
type lateWatch struct {
	ctx   context.Context
	nc    net.Conn
	timer *time.Timer
	mu    sync.Mutex
	ended bool        // stop was called: watch no more
	stop  func() bool // the context.AfterFunc's, once the timer has fired
}

// watchLater cuts nc off when ctx ends, watching it only after d; the stop it returns
// answers false when ctx cut the exchange off (as context.AfterFunc's).
func watchLater(ctx context.Context, nc net.Conn, d time.Duration) func() bool {
	w := &lateWatch{ctx: ctx, nc: nc}
	w.timer = time.AfterFunc(d, w.arm)
	return w.end
}

func (w *lateWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ended && w.ctx.Done() != nil {
		w.stop = context.AfterFunc(w.ctx, func() { cutOff(w.nc) })
	}
}

func (w *lateWatch) end() bool {
	w.timer.Stop()
	w.mu.Lock()
	w.ended = true
	stop := w.stop
	w.mu.Unlock()
	return stop == nil || stop()
}

// roundTrip writes r and reads the answer's head; a plain one comes with room for its
// pooled body (readAnswer).
func (cn *conn) roundTrip(r *Request) (*http.Response, *body, error) {
	if err := cn.write(r); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	return readAnswer(cn.br)
}

// write writes the request. An error means its last bytes were not sent.
func (cn *conn) write(r *Request) error {
	r.Head.WriteHead(cn.bw)
	if br, ok := r.Body.(*bytes.Reader); ok && int64(br.Len()) == r.ContentLength && br.Len() > cn.bw.Available() {
		// A body larger than the buffer goes in one write after the head, instead of
		// through the buffer 4 KB at a time (256 writes per MB).
		if err := cn.bw.Flush(); err != nil {
			return err
		}
		_, err := br.WriteTo(cn.nc)
		return err
	} else if r.Body != nil {
		cn.body = io.LimitedReader{R: r.Body, N: r.ContentLength}
		n, err := io.Copy(cn.bw, &cn.body)
		cn.body.R = nil
		if err != nil {
			return err
		}
		if n != r.ContentLength {
			return errors.New("keepalive: the body is shorter than its ContentLength")
		}
	}
	return cn.bw.Flush()
}

// body is an answer's body over a pooled connection.
type body struct {
	r     io.ReadCloser
	p     *Pool
	c     *conn
	addr  string
	stop  func() bool
	reuse bool
	done  bool
}

func (b *body) Read(q []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(q)
	if errors.Is(err, io.EOF) {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

// Close before the end closes the connection (what is left of the answer is not read).
func (b *body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish gives the connection back (the answer was read to its end) or closes it.
func (b *body) finish(atEOF bool) {
	b.done = true
	// stop false: ctx ended and its func is setting a past deadline; the connection goes.
	// The exchange's deadline stays on the idle connection (alive clears it when due).
	if b.stop() && atEOF && b.reuse {
		b.p.put(b.addr, b.c)
		return
	}
	b.c.nc.Close()
}

// ValidHeaderValue tells whether v may be sent as a header value: no control character
// (it would split the request).
func ValidHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// WriteHeader writes "name: value\r\n" into w when value is not "".
func WriteHeader(w *bufio.Writer, name, value string) {
	if value != "" {
		_, _ = w.WriteString(name)
		_, _ = w.WriteString(": ")
		_, _ = w.WriteString(value)
		_, _ = w.WriteString("\r\n")
	}
}
