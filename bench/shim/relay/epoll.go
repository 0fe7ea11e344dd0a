package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// The -epoll relay: the same protocol on one locked OS thread with its own level-triggered
// epoll loop and raw system calls, without Go's network poller, goroutines or per-request
// allocations: a read only when the socket is readable (no read that ends in EAGAIN), no
// goroutine hand-offs between the caller's and the runtime's connections. It shows what a
// server could save with another I/O design, not only another HTTP server.

type epollConn struct {
	fd     int
	caller bool
	buf    []byte
}

type epollRelay struct {
	epfd          int
	conns         map[int]*epollConn
	pendingEvent  []byte
	haveEvent     bool
	nextFd        int // the runtime's waiting /next, or -1
	callerFd      int // the caller waiting for its answer
	seq           int
	out           []byte
	invoke, rtapi int
}

func rawWriteAll(fd int, b []byte) {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			b = b[n:]
		case syscall.EINTR, syscall.EAGAIN:
		default:
			return
		}
	}
}

func (r *epollRelay) answer(fd int, status, headers string, body []byte) {
	r.out = appendAnswer(r.out[:0], status, headers, body)
	rawWriteAll(fd, r.out)
}

func (r *epollRelay) sendEvent(fd int, event []byte) {
	r.seq++
	r.answer(fd, "200 OK", "Lambda-Runtime-Aws-Request-Id: relay-"+strconv.Itoa(r.seq)+"\r\n"+nextHeaders, event)
}

var (
	crlf2         = []byte("\r\n\r\n")
	contentLength = []byte("\r\ncontent-length:")
	transferEnc   = []byte("\r\ntransfer-encoding:")
)

// parseBuffered returns the path and body of the first complete request in b and its
// length (0: not complete yet). Header names are matched case-insensitively.
func parseBuffered(b []byte) (path string, body []byte, used int) {
	end := bytes.Index(b, crlf2)
	if end < 0 {
		return "", nil, 0
	}
	head := b[:end+2]
	if f := bytes.Fields(head[:bytes.IndexByte(head, '\n')]); len(f) >= 2 {
		path = string(f[1])
	}
	lower := bytes.ToLower(head)
	rest := b[end+4:]
	if i := bytes.Index(lower, contentLength); i >= 0 {
		v := lower[i+len(contentLength):]
		v = v[:bytes.IndexByte(v, '\r')]
		n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
		if len(rest) < n {
			return "", nil, 0
		}
		return path, rest[:n], end + 4 + n
	}
	if !bytes.Contains(lower, transferEnc) {
		return path, nil, end + 4
	}
	off := 0
	for {
		e := bytes.Index(rest[off:], []byte("\r\n"))
		if e < 0 {
			return "", nil, 0
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(rest[off:off+e])), 16, 64)
		if err != nil {
			return "", nil, 0
		}
		off += e + 2
		if size == 0 { // trailers up to the empty line
			if bytes.HasPrefix(rest[off:], []byte("\r\n")) {
				return path, body, end + 4 + off + 2
			}
			t := bytes.Index(rest[off:], crlf2)
			if t < 0 {
				return "", nil, 0
			}
			return path, body, end + 4 + off + t + 4
		}
		if len(rest) < off+int(size)+2 {
			return "", nil, 0
		}
		body = append(body, rest[off:off+int(size)]...)
		off += int(size) + 2
	}
}

func (r *epollRelay) handle(c *epollConn) {
	for {
		path, body, used := parseBuffered(c.buf)
		if used == 0 {
			return
		}
		switch {
		case c.caller:
			r.callerFd = c.fd
			if r.nextFd >= 0 {
				r.sendEvent(r.nextFd, body)
				r.nextFd = -1
			} else {
				r.pendingEvent, r.haveEvent = append(r.pendingEvent[:0], body...), true
			}
		case bytes.HasSuffix([]byte(path), []byte("/next")):
			if r.haveEvent {
				r.sendEvent(c.fd, r.pendingEvent)
				r.haveEvent = false
			} else {
				r.nextFd = c.fd
			}
		default: // the runtime's response: the caller's answer first, then the 202
			r.answer(r.callerFd, "200 OK", "", body)
			r.answer(c.fd, "202 Accepted", "", []byte(`{"status":"OK"}`))
		}
		c.buf = append(c.buf[:0], c.buf[used:]...)
	}
}

func listenFD(addr string) (int, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	f, err := ln.(*net.TCPListener).File() // a blocking duplicate
	if err != nil {
		return 0, err
	}
	fd := int(f.Fd())
	return fd, syscall.SetNonblock(fd, true)
}

func (r *epollRelay) add(fd int) error {
	return syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
}

// runEpoll serves until the process ends; it never returns on success.
func runEpoll(invokeAddr, apiAddr string, start func() error) error {
	var err error
	r := &epollRelay{conns: map[int]*epollConn{}, nextFd: -1, callerFd: -1}
	if r.invoke, err = listenFD(invokeAddr); err != nil {
		return err
	}
	if r.rtapi, err = listenFD(apiAddr); err != nil {
		return err
	}
	if err := start(); err != nil {
		return err
	}
	runtime.LockOSThread()
	if r.epfd, err = syscall.EpollCreate1(0); err != nil {
		return err
	}
	for _, fd := range []int{r.invoke, r.rtapi} {
		if err := r.add(fd); err != nil {
			return err
		}
	}
	var events [32]syscall.EpollEvent
	buf := make([]byte, 64<<10)
	for {
		// Blocking without telling the scheduler: nothing else in this process needs to
		// run. At most 100 ms, so that the garbage collector can stop this goroutine.
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(r.epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 100, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("epoll_pwait: %w", e)
		}
		for _, ev := range events[:int(n)] {
			fd := int(ev.Fd)
			if fd == r.invoke || fd == r.rtapi {
				c, _, err := syscall.Accept4(fd, syscall.SOCK_NONBLOCK)
				if err != nil {
					continue
				}
				if err := syscall.SetsockoptInt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
					fmt.Fprintln(os.Stderr, "relay: TCP_NODELAY:", err)
				}
				r.conns[c] = &epollConn{fd: c, caller: fd == r.invoke}
				if err := r.add(c); err != nil {
					return err
				}
				continue
			}
			c := r.conns[fd]
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			switch {
			case e == syscall.EAGAIN || e == syscall.EINTR:
			case e != 0 || m == 0 || c == nil:
				_ = syscall.Close(fd) // also leaves the epoll set
				delete(r.conns, fd)
			default:
				c.buf = append(c.buf, buf[:m]...)
				r.handle(c)
			}
		}
	}
}
