package shimclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// An environment runs one invocation at a time, so an invocation needs none of what
// net/http's Transport does for concurrent requests on shared connections (a reader and
// a writer goroutine per connection, channels between them and the caller). Do writes
// the request and reads the answer on the caller's goroutine, over keep-alive
// connections kept per environment address.

// idleTimeout is how long an idle connection is kept; the pool forgets connections of
// addresses not used for longer (environments that went away).
const idleTimeout = 30 * time.Second

type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// conns holds idle connections per address.
type conns struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	mu    sync.Mutex
	idle  map[string][]*conn
	swept time.Time
}

func newConns(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *conns {
	return &conns{dial: dial, idle: map[string][]*conn{}}
}

// get returns a live idle connection to addr, or a new one.
func (p *conns) get(ctx context.Context, addr string) (*conn, error) {
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
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// alive: the connection has not been idle too long, and the shim has neither closed it
// nor sent anything on it: a peek that must not block finds nothing to read yet.
func (c *conn) alive() bool {
	if time.Since(c.idleAt) > idleTimeout || c.br.Buffered() > 0 {
		return false
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		var n int
		n, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if peekErr == nil && n == 0 {
			peekErr = io.EOF
		} else if peekErr == nil {
			peekErr = errors.New("unexpected bytes on an idle connection")
		}
		return true
	})
	return err == nil && errors.Is(peekErr, syscall.EAGAIN)
}

// put keeps c for the next invocation of addr, and forgets connections idle too long.
func (p *conns) put(addr string, c *conn) {
	now := time.Now()
	c.idleAt = now
	var stale []*conn
	p.mu.Lock()
	p.idle[addr] = append(p.idle[addr], c)
	if now.Sub(p.swept) > idleTimeout {
		p.swept = now
		for a, list := range p.idle {
			keep := list[:0]
			for _, x := range list {
				if now.Sub(x.idleAt) > idleTimeout {
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

// do sends c over a pooled connection and reads the answer's head; the body returns the
// connection to the pool once read to its end (closing it earlier closes the connection).
func (p *conns) do(ctx context.Context, c *Call) (*http.Response, error) {
	if err := validHeaders(c); err != nil {
		return nil, err
	}
	cn, err := p.get(ctx, c.Addr)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = cn.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = cn.nc.SetDeadline(time.Unix(1, 0)) })
	resp, err := cn.roundTrip(c)
	if err != nil {
		stop()
		cn.nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp.Body = &body{r: resp.Body, p: p, c: cn, addr: c.Addr, stop: stop, reuse: !resp.Close}
	return resp, nil
}

func (cn *conn) roundTrip(c *Call) (*http.Response, error) {
	writeHead(cn.bw, c)
	if r, ok := c.Body.(*bytes.Reader); ok && int64(r.Len()) == c.ContentLength && r.Len() > cn.bw.Available() {
		// A payload larger than the buffer goes in one write after the head, instead of
		// through the buffer 4 KB at a time (256 writes per MB).
		if err := cn.bw.Flush(); err != nil {
			return nil, err
		}
		if _, err := r.WriteTo(cn.nc); err != nil {
			return nil, err
		}
	} else if c.Body != nil {
		n, err := io.Copy(cn.bw, io.LimitReader(c.Body, c.ContentLength))
		if err != nil {
			return nil, err
		}
		if n != c.ContentLength {
			return nil, errors.New("shimclient: the body is shorter than its ContentLength")
		}
	}
	if err := cn.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(cn.br, nil)
}

// validHeaders refuses a header value with a control character (it would split the
// request).
func validHeaders(c *Call) error {
	if c.Body != nil && c.ContentLength < 0 {
		return errors.New("shimclient: a body needs its ContentLength")
	}
	for _, v := range [...]string{c.Addr, c.Secret, c.RequestID, c.InvokedARN, c.ClientContext, c.TraceID} {
		for i := 0; i < len(v); i++ {
			if b := v[i]; b < 0x20 && b != '\t' || b == 0x7f {
				return errors.New("shimclient: a header value holds a control character")
			}
		}
	}
	return nil
}

// writeHead writes c's request line and headers into w (a bufio.Writer: no allocation).
func writeHead(w *bufio.Writer, c *Call) {
	var num [20]byte
	_, _ = w.WriteString("POST " + contract.InvokePath + " HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(c.Addr)
	_, _ = w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	_, _ = w.Write(strconv.AppendInt(num[:0], max(c.ContentLength, 0), 10))
	_, _ = w.WriteString("\r\n")
	header := func(name, value string) {
		if value != "" {
			_, _ = w.WriteString(name)
			_, _ = w.WriteString(": ")
			_, _ = w.WriteString(value)
			_, _ = w.WriteString("\r\n")
		}
	}
	header(contract.HeaderInvokeSecret, c.Secret)
	header(contract.HeaderRequestID, c.RequestID)
	header(contract.HeaderInvokedARN, c.InvokedARN)
	if !c.Deadline.IsZero() {
		_, _ = w.WriteString(contract.HeaderDeadlineMs + ": ")
		_, _ = w.Write(strconv.AppendInt(num[:0], c.Deadline.UnixMilli(), 10))
		_, _ = w.WriteString("\r\n")
	}
	header(contract.HeaderClientContext, c.ClientContext)
	header(contract.HeaderTraceID, c.TraceID)
	if c.LogTail {
		header(contract.HeaderLogType, contract.LogTypeTail)
	}
	if c.ResponseStream {
		header(contract.HeaderResponseStream, "1")
	}
	_, _ = w.WriteString("\r\n")
}

// body is an answer's body over a pooled connection.
type body struct {
	r     io.ReadCloser
	p     *conns
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
	if b.stop() && atEOF && b.reuse && b.c.nc.SetDeadline(time.Time{}) == nil {
		b.p.put(b.addr, b.c)
		return
	}
	b.c.nc.Close()
}
