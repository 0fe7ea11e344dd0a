package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loopback connections whose reads and writes skip the Go scheduler's system-call
// bookkeeping.
//
// A net.Conn read or write is a "blocking" system call to the Go runtime
// (entersyscall/exitsyscall), although the socket is non-blocking and the call returns at
// once. That bookkeeping is what costs here: the first such call after the process was idle
// wakes the sysmon thread, which then polls every 20 µs; and with GOMAXPROCS=1, a write
// that wakes the peer (the runtime, the caller) and gets preempted by it on the same CPU
// stays "in a system call" for more than a sysmon tick, so sysmon hands the P to another
// thread, and the writer parks when its call returns. Every warm invocation paid several
// thread wake-ups for that, and on a virtual machine a wake-up costs tens of microseconds.
//
// The calls here are made with RawSyscall from inside the poller's RawConn callbacks: a
// non-blocking read or write never blocks, so the scheduler loses nothing by not being told,
// and EAGAIN still parks the goroutine on the network poller (deadlines included), exactly
// as net.Conn does.

// Listener wraps a TCP listener so that its connections are rawConns.
type Listener struct{ net.Listener }

func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return newRawConn(tc), nil
	}
	return c, nil
}

// RawDial wraps a dial function so that the TCP connections it makes are rawConns (the
// activator's keep-alive connections to environments: the client side of the same
// loopback or pod-network hop).
func RawDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			return newRawConn(tc), nil
		}
		return c, err
	}
}

// newRawConn is tc with rawConn's Read and Write (tc itself if it has no RawConn).
func newRawConn(tc *net.TCPConn) net.Conn {
	rc, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	c := &rawConn{TCPConn: tc, rc: rc, r: newRawReader(rc)}
	c.writeFn = c.writeFD
	return c
}

// rawConn is a *net.TCPConn with Read and Write replaced; everything else (deadlines,
// Close, CloseWrite, addresses) is the TCPConn's, on the same poller descriptor.
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  *rawReader
	// Write's state, for its callback writeFn (a method value made once, so that a write
	// allocates nothing); wmu serializes writers (the descriptor's own write lock would too).
	wmu     sync.Mutex
	wp      []byte
	written int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

func (c *rawConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *rawConn) Read(p []byte) (int, error) {
	n, err := c.r.read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = c.opError("read", err)
	}
	return n, err
}

// rawReader reads from a non-blocking descriptor registered with the poller. Its callback
// is a method value made once (newRawReader), so that a read allocates nothing; mu
// serializes readers (the descriptor's own read lock would too).
type rawReader struct {
	rc    syscall.RawConn
	mu    sync.Mutex
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newRawReader(rc syscall.RawConn) *rawReader {
	r := &rawReader{rc: rc}
	r.fn = r.readFD
	return r
}

func (r *rawReader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.fn)
	n, errno := r.n, r.errno
	r.p = nil
	r.mu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (r *rawReader) readFD(fd uintptr) bool {
	p := r.p
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller (edge-triggered: only after EAGAIN)
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// rawFileReader reads a pipe through a rawReader (the runtime's output, exec mode).
type rawFileReader struct{ r *rawReader }

func NewRawFileReader(f *os.File) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	return rawFileReader{newRawReader(rc)}
}

func (r rawFileReader) Read(p []byte) (int, error) { return r.r.read(p) }

// nowaitWriter writes to a file (the shim's stdout: a pipe in a pod) with
// pwritev2(RWF_NOWAIT), a write that fails with EAGAIN instead of blocking, without
// setting O_NONBLOCK on a descriptor the shim may share with others (a terminal, the
// container's log pipe). What it cannot write at once (the reader is slow, or the kernel or
// file does not support RWF_NOWAIT) goes through the ordinary blocking write, which the
// scheduler must know about.
type nowaitWriter struct {
	f        *os.File
	rc       syscall.RawConn
	disabled bool
}

func NewNowaitWriter(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return w
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return w
	}
	return &nowaitWriter{f: f, rc: rc}
}

// Write is not safe for concurrent use (LogSink serialises it).
func (w *nowaitWriter) Write(p []byte) (int, error) {
	done := 0
	for !w.disabled && done < len(p) {
		var n int
		var errno syscall.Errno
		iov := syscall.Iovec{Base: &p[done]}
		iov.SetLen(len(p) - done)
		_ = w.rc.Control(func(fd uintptr) {
			off := int64(-1) // the current position (the only one a pipe has)
			r, _, e := syscall.RawSyscall6(unix.SYS_PWRITEV2, fd, uintptr(unsafe.Pointer(&iov)), 1, uintptr(off), 0, unix.RWF_NOWAIT)
			n, errno = int(r), e
		})
		switch errno {
		case 0:
			done += n
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			// EOPNOTSUPP (a terminal, an old kernel), ESPIPE, EINVAL...: never again.
			w.disabled = true
		}
		break
	}
	if done == len(p) {
		return done, nil
	}
	n, err := w.f.Write(p[done:])
	return done + n, err
}

func (c *rawConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wp, c.written, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	written, errno := c.written, c.werrno
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return written, c.opError("write", err)
	case errno != 0:
		return written, c.opError("write", errno)
	}
	return written, nil
}

// writeFD writes what is left of c.wp to fd; false when it must wait for room.
func (c *rawConn) writeFD(fd uintptr) bool {
	p := c.wp
	for c.written < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.written])), uintptr(len(p)-c.written))
		switch e {
		case 0:
			c.written += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// RawPread reads from fd at offset 0 without the scheduler's system-call bookkeeping (see
// above); fd must not block (a /proc file).
func RawPread(fd uintptr, buf []byte) int {
	if len(buf) == 0 {
		return 0
	}
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_PREAD64, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0
		}
		return int(r)
	}
}

// RawInq is the number of unread bytes in the pipe or socket fd (FIONREAD), without the
// scheduler's system-call bookkeeping.
func RawInq(fd uintptr) int {
	var n int32
	_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, uintptr(unix.TIOCINQ), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0
	}
	return int(n)
}

// writeBuffers writes bufs in order with one writev when c is a rawConn (no copy of a
// large body into the head's buffer), else through net.Buffers.
func writeBuffers(c net.Conn, bufs [][]byte) error {
	rc, ok := c.(*rawConn)
	if !ok {
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(c)
		return err
	}
	var iov [3]syscall.Iovec
	var errno syscall.Errno
	err := rc.rc.Write(func(fd uintptr) bool {
		for {
			n := 0
			for _, b := range bufs {
				if len(b) > 0 && n < len(iov) {
					iov[n] = syscall.Iovec{Base: &b[0]}
					iov[n].SetLen(len(b))
					n++
				}
			}
			if n == 0 {
				return true
			}
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
			switch e {
			case 0:
				consumeBuffers(bufs, int(r))
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
	})
	switch {
	case err != nil:
		return rc.opError("write", err)
	case errno != 0:
		return rc.opError("write", errno)
	}
	return nil
}

// consumeBuffers drops the first n bytes of bufs.
func consumeBuffers(bufs [][]byte, n int) {
	for i := range bufs {
		k := min(n, len(bufs[i]))
		bufs[i] = bufs[i][k:]
		n -= k
	}
}
