package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// eventLoop serves the warm path of both endpoints (an invoke, the runtime's /next, its
// /response or /error) on one goroutine with its own epoll loop and raw system calls,
// the way bench/shim/relay -epoll measured it (bench/README.md). A goroutine per
// connection costs more than the shim's own work there: a read that ends in EAGAIN before
// every wait, the scheduler's netpoll path for each connection, and a goroutine hand-off
// between the caller's and the runtime's connections on every invocation. Here the
// caller's invoke, the event it becomes on the runtime's waiting /next, the runtime's
// answer and the caller's answer are all written by the goroutine that read them, and a
// socket is read only when epoll says it is readable.
//
// The loop only serves requests of a strict subset of HTTP/1.1 (parseLoopRequest) on the
// routes of the warm path. At the first request it does not serve, it hands the
// connection over to httpServer (handOver) with what it read of it, and httpServer
// serves it from then on exactly as before: every other endpoint, chunked bodies with
// trailers, Expect, oversize bodies, malformed requests, slow heads. An invoke the environment
// cannot start at once (init, a reset) waits on a goroutine, and its answer comes back to
// the loop.
//
// The loop's goroutine waits for its epoll set on Go's network poller (an epoll descriptor
// is readable while events are ready; see wait), so it parks like any goroutine reading
// a socket, and the shim needs no more than its one P.
type eventLoop struct {
	epfd   int
	epf    *os.File        // epfd on Go's network poller (see wait)
	eprc   syscall.RawConn // epf's
	wakefd int             // an eventfd: other goroutines wake the loop through it
	lns    map[int]*loopListener
	conns  map[int]*loopConn
	invoke *InvokeServer
	api    *RuntimeAPI

	mu       sync.Mutex
	inbox    []func() // work for the loop from other goroutines, or posted during its own
	sleeping bool     // the loop waits for events (a post must wake it)

	stopping bool // shutdown began (the loop's goroutine alone reads and writes it)
	started  bool // run was started (before it runs, shutdown only closes)
	done     chan struct{}

	head    []byte // an answer's head being built
	evs     [64]unix.EpollEvent
	discard [16 << 10]byte // what draining connections send goes here
}

// loopDrainTime and httpMaxDiscard bound how long, and how much, a refused connection is
// read (and dropped) after its answer before it closes, so that closing with unread bytes
// does not reset it before the client has read the answer (net/http's closeWriteAndWait).
const loopDrainTime = 500 * time.Millisecond

// loopYieldEvery: the loop's goroutine yields at least this often when it never has to
// wait, so that the shim's other goroutines (timers, the runtime's output) run, before
// sysmon would preempt it (10 ms).
const loopYieldEvery = 8 * time.Millisecond

// loopListener is a listening socket of the loop, and the server it hands over to.
type loopListener struct {
	fd     int
	ln     net.Listener // the socket's Go side, closed at the end
	srv    *httpServer
	invoke bool // the invoke endpoint (else the Runtime API)
}

// loopConn is a connection the loop serves.
type loopConn struct {
	fd   int
	ln   *loopListener
	req  loopRequest
	in   []byte // read and not yet served
	out  []byte // answer bytes the socket did not take yet
	busy bool   // a request is being served: later ones wait in in
	// serving: serve is on the stack (an answer given during it must not serve the
	// next request before this one is consumed).
	serving bool
	closed  bool // closed, or handed over
	pollOut bool // EPOLLOUT is asked for
	paused  bool // EPOLLIN is not asked for (too much read ahead, or the end of stream)
	eof     bool // the client closed its side: close once what it sent is answered
	wait    *NextWait
	// served and lastPost: what httpServer needs to know on a hand-over.
	served   bool
	lastPost bool
	// draining: the connection was refused (an unauthenticated invoke, a body that took
	// too long); once its answer is out, what the client still sends is read and dropped,
	// for loopDrainTime at most, and the connection closes.
	draining bool
	drained  int
	// deadline: when the invoke's body must have arrived (or the drain end); timer fires
	// then (see setDeadline).
	deadline time.Time
	timer    *time.Timer
}

// newEventLoop serves the invoke endpoint on invokeLn and the Runtime API on apiLn (the
// listeners stay theirs until shutdown); invokeSrv and apiSrv serve what it hands over.
func newEventLoop(invoke *InvokeServer, api *RuntimeAPI, invokeLn, apiLn net.Listener, invokeSrv, apiSrv *httpServer) (*eventLoop, error) {
	l, err := newEmptyLoop(invoke, api)
	if err != nil {
		return nil, err
	}
	if err := l.listen(invokeLn, invokeSrv, true); err != nil {
		l.closeFDs()
		return nil, err
	}
	if err := l.listen(apiLn, apiSrv, false); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

func newEmptyLoop(invoke *InvokeServer, api *RuntimeAPI) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &eventLoop{epfd: epfd, wakefd: wakefd, lns: map[int]*loopListener{}, conns: map[int]*loopConn{},
		invoke: invoke, api: api, done: make(chan struct{})}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN); err != nil {
		l.closeFDs()
		return nil, err
	}
	// An epoll descriptor is itself pollable: readable while events are ready.
	if err := unix.SetNonblock(epfd, true); err != nil {
		l.closeFDs()
		return nil, err
	}
	l.epf = os.NewFile(uintptr(epfd), "epoll")
	if l.eprc, err = l.epf.SyscallConn(); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

func (l *eventLoop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// listen adds a TCP listener; srv serves the connections handed over.
func (l *eventLoop) listen(ln net.Listener, srv *httpServer, invoke bool) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("the event loop needs a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	// A duplicate descriptor of the same socket (non-blocking, as the original: the flag
	// belongs to the socket).
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); err != nil {
		_ = unix.Close(fd)
		return err
	}
	l.lns[fd] = &loopListener{fd: fd, ln: ln, srv: srv, invoke: invoke}
	return nil
}

// post runs f on the loop: soon, and in order. Callable from any goroutine, also from
// the loop itself (f then runs before the loop waits again) and with the environment
// locked.
func (l *eventLoop) post(f func()) {
	l.mu.Lock()
	l.inbox = append(l.inbox, f)
	wake := l.sleeping
	l.sleeping = false
	l.mu.Unlock()
	if wake {
		one := uint64(1)
		_, _ = unix.Write(l.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
}

// runInbox runs what was posted, until nothing is left.
func (l *eventLoop) runInbox() {
	for {
		l.mu.Lock()
		work := l.inbox
		l.inbox = nil // not reused: runInbox may run inside one of work's functions
		l.mu.Unlock()
		if len(work) == 0 {
			return
		}
		for _, f := range work {
			f()
		}
	}
}

// start runs the loop on its own goroutine.
func (l *eventLoop) start() {
	l.started = true
	go l.run()
}

// run serves until shutdown.
func (l *eventLoop) run() {
	defer close(l.done)
	defer l.closeFDs()
	lastYield := time.Now()
	for {
		l.runInbox()
		l.mu.Lock()
		if len(l.inbox) > 0 {
			l.mu.Unlock()
			continue
		}
		if l.stopping && len(l.conns) == 0 {
			l.mu.Unlock()
			return
		}
		l.sleeping = true
		l.mu.Unlock()
		n, errno, err := l.wait()
		if err != nil {
			return // the epoll descriptor was closed
		}
		l.mu.Lock()
		l.sleeping = false
		l.mu.Unlock()
		if now := time.Now(); now.Sub(lastYield) > loopYieldEvery {
			// Through the scheduler now and then when the loop never has to wait:
			// sysmon preempts a goroutine it has not seen scheduled for 10 ms (a signal),
			// and then polls every 20 µs for a while.
			lastYield = now
			runtime.Gosched()
		}
		if errno != 0 {
			if errno != syscall.EINTR {
				fmt.Fprintln(os.Stderr, "runtime-shim: epoll_pwait:", errno)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		for i := 0; i < int(n); i++ {
			ev := l.evs[i]
			fd := int(ev.Fd)
			if fd == l.wakefd {
				var b [8]byte
				_, _ = unix.Read(l.wakefd, b[:])
				continue
			}
			if ln := l.lns[fd]; ln != nil {
				l.accept(ln)
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				l.flushOut(c)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 && !c.closed {
				l.read(c)
			}
		}
	}
}

// wait takes the ready events, waiting on Go's network poller for the epoll set itself
// to become readable when there are none: the goroutine parks as any reader of a socket
// does, so the scheduler, the garbage collector and sysmon see nothing unusual, and the
// shim's other goroutines share its one P. (Waiting in epoll_pwait as a blocking system
// call instead needs a second P, and entering and leaving that call cost more on every
// warm invocation: bench/README.md.)
func (l *eventLoop) wait() (n uintptr, errno syscall.Errno, err error) {
	err = l.eprc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0)
			if errno != syscall.EINTR {
				return errno != 0 || n > 0
			}
		}
	})
	return n, errno, err
}

func (l *eventLoop) accept(ln *loopListener) {
	for i := 0; i < 16; i++ {
		fd, _, err := unix.Accept4(ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			// EAGAIN: no more. EMFILE and the like: level-triggered, so this comes back;
			// a short pause keeps it from spinning (as net/http backs off).
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ECONNABORTED) && !errors.Is(err, unix.EINTR) {
				time.Sleep(5 * time.Millisecond)
			}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if l.stopping {
			_ = unix.Close(fd)
			continue
		}
		if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); err != nil {
			_ = unix.Close(fd)
			continue
		}
		l.conns[fd] = &loopConn{fd: fd, ln: ln}
	}
}

// read takes what the socket has (one read: the epoll set is level-triggered) and serves
// it.
func (l *eventLoop) read(c *loopConn) {
	if c.draining {
		l.drain(c)
		return
	}
	if cap(c.in)-len(c.in) < 4096 {
		c.in = slices.Grow(c.in, max(cap(c.in), 16<<10))
	}
	free := c.in[len(c.in):cap(c.in)]
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&free[0])), uintptr(len(free)))
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return
	case errno != 0:
		l.hangUp(c)
		return
	case n == 0:
		// The end of the client's stream. A waiting /next has nobody left (as Next's
		// gone). Otherwise the client may only have closed its side, as net/http's server
		// allows: what it sent is still answered, then the connection closes (serve).
		if c.wait != nil {
			l.hangUp(c)
			return
		}
		c.eof = true
		l.pause(c, true)
		if !c.busy {
			l.serve(c)
		}
		return
	}
	c.in = c.in[:len(c.in)+int(n)]
	if c.busy {
		if len(c.in) > httpHeadLimit {
			// A client that keeps sending while its request is served: stop reading
			// until the answer (hang-ups are still seen).
			l.pause(c, true)
		}
		return
	}
	l.serve(c)
}

// pause stops (or resumes) asking for EPOLLIN.
func (l *eventLoop) pause(c *loopConn, paused bool) {
	if c.paused != paused {
		c.paused = paused
		_ = l.ctl(unix.EPOLL_CTL_MOD, c.fd, c.events())
	}
}

func (c *loopConn) events() uint32 {
	var ev uint32
	if !c.paused {
		ev |= unix.EPOLLIN
	}
	if c.pollOut {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// serve serves the requests in c.in, one at a time, until one has to wait (for the
// environment, for the rest of its bytes, for the socket to take an answer).
func (l *eventLoop) serve(c *loopConn) {
	if c.serving {
		return
	}
	c.serving = true
	defer func() { c.serving = false }()
	if c.paused && !c.busy && !c.eof {
		l.pause(c, false)
	}
	for !c.closed && !c.busy && !c.draining && len(c.out) == 0 && len(c.in) > 0 {
		if c.lastPost && (c.in[0] == '\r' || c.in[0] == '\n') {
			l.handOver(c) // stray line ends after a POST: httpServer's rule
			return
		}
		r := &c.req
		res := parseLoopRequest(c.in, r)
		if r.headDone && c.ln.invoke && r.headLen > invokeMaxHeaderBytes && res != loopHandOver {
			l.handOver(c) // httpServer answers 431
			return
		}
		switch res {
		case loopIncomplete:
			route, _ := l.routeOf(c, r)
			if r.headDone && route == routeInvoke {
				// The secret is checked as soon as the head is in: an unauthenticated
				// client is answered before anything of its body is read or made room
				// for.
				if a := l.invoke.unauthorized(&r.header); a != nil {
					c.in = nil
					l.refuse(c, a)
					return
				}
			}
			if c.eof || !r.headDone || !l.fits(c, r) || route == routeNotFound {
				// A head that did not arrive in one piece: httpServer has the time
				// limit for it. A body too large: httpServer answers it. A request the
				// loop does not serve: httpServer reads its body (perhaps a stream). A
				// request cut short by the end of the stream: httpServer answers it as
				// net/http would.
				l.handOver(c)
				return
			}
			if !r.chunked {
				c.in = slices.Grow(c.in, r.size-len(c.in)) // room for the whole body
			}
			if c.ln.invoke && c.deadline.IsZero() {
				l.setDeadline(c, l.invoke.cfg.bodyTimeout()) // the rest of the body has this long
			}
			return
		case loopHandOver:
			l.handOver(c)
			return
		}
		l.clearDeadline(c)
		if !l.fits(c, r) || !l.route(c, r) {
			l.handOver(c)
			return
		}
		c.served, c.lastPost = true, r.post
		c.in = c.in[:copy(c.in, c.in[r.size:])]
		if len(c.in) == 0 && cap(c.in) > 1<<20 {
			c.in = nil // a 6 MB payload should not stay
		}
	}
	if c.draining {
		c.in = nil // nothing more is served
	}
	if c.eof && !c.closed && !c.busy && len(c.out) == 0 {
		l.hangUp(c) // everything the client sent before its end of stream is answered
	}
}

// refuse answers a and closes the connection: once the answer is out, the client's side
// is drained for a while (drain), then closed.
func (l *eventLoop) refuse(c *loopConn, a *answer) {
	c.draining = true
	l.clearDeadline(c)
	l.send(c, a)
	if !c.closed && len(c.out) == 0 {
		l.startDrain(c)
	} // else flushOut starts it once the answer is out
}

// startDrain ends the answers (FIN) and reads what the client still sends, for
// loopDrainTime at most.
func (l *eventLoop) startDrain(c *loopConn) {
	_ = unix.Shutdown(c.fd, unix.SHUT_WR)
	if c.eof {
		l.hangUp(c)
		return
	}
	l.pause(c, false)
	l.setDeadline(c, loopDrainTime)
}

// drain reads what a refused client sends and drops it; its end of stream, an error or
// more than httpMaxDiscard bytes close the connection.
func (l *eventLoop) drain(c *loopConn) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&l.discard[0])), uintptr(len(l.discard)))
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return
	case errno != 0:
		l.hangUp(c)
		return
	case n == 0:
		if len(c.out) > 0 { // the answer is not out yet: it still goes
			c.eof = true
			l.pause(c, true)
			return
		}
		l.hangUp(c)
		return
	}
	if c.drained += int(n); c.drained > httpMaxDiscard {
		l.hangUp(c)
	}
}

// setDeadline makes c's timer fire in d (deadlineHit).
func (l *eventLoop) setDeadline(c *loopConn, d time.Duration) {
	c.deadline = time.Now().Add(d)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, func() { l.post(func() { l.deadlineHit(c) }) })
		return
	}
	c.timer.Reset(d)
}

func (l *eventLoop) clearDeadline(c *loopConn) {
	if !c.deadline.IsZero() {
		c.deadline = time.Time{}
		c.timer.Stop()
	}
}

// deadlineHit: a refused connection's drain is over, or an invoke's body did not arrive
// in time (408, and the connection closes).
func (l *eventLoop) deadlineHit(c *loopConn) {
	if c.closed || c.deadline.IsZero() {
		return
	}
	if left := time.Until(c.deadline); left > 0 {
		c.timer.Reset(left) // re-armed since
		return
	}
	c.deadline = time.Time{}
	if c.draining {
		l.hangUp(c)
		return
	}
	c.in = nil
	l.refuse(c, l.invoke.bodyTimedOut())
}

// fits tells whether the body r declares is within what the loop serves on r's route.
func (l *eventLoop) fits(c *loopConn, r *loopRequest) bool {
	limit := MaxResponsePayload
	if c.ln.invoke {
		limit = MaxRequestPayload
	}
	return r.bodyLen <= limit
}

// routeInvoke is the invoke endpoint's route in routeOf.
const routeInvoke = routePipeExit + 1

// routeOf is r's route (and request id) if the loop serves it, else routeNotFound.
func (l *eventLoop) routeOf(c *loopConn, r *loopRequest) (apiRoute, string) {
	if c.ln.invoke {
		if r.post && bytes.HasPrefix(r.path, []byte(invokePathPrefix)) && bytes.HasSuffix(r.path, []byte("/invocations")) {
			return routeInvoke, ""
		}
		return routeNotFound, ""
	}
	method := http.MethodGet
	if r.post {
		method = http.MethodPost
	}
	route, id, err := parseRuntimeAPIPath(method, string(r.path))
	if err != nil {
		return routeNotFound, ""
	}
	switch route {
	case routeNext, routeResponse, routeError:
		return route, id
	}
	return routeNotFound, ""
}

// route serves r if it is a request of the warm path; false leaves it to httpServer.
// r's slices are valid only during the call.
func (l *eventLoop) route(c *loopConn, r *loopRequest) bool {
	switch route, id := l.routeOf(c, r); route {
	case routeInvoke:
		l.serveInvoke(c, r)
	case routeNext:
		l.serveNext(c)
	case routeResponse:
		l.serveResponse(c, id, r)
	case routeError:
		l.serveError(c, id, r)
	default:
		return false
	}
	return true
}

func (l *eventLoop) serveInvoke(c *loopConn, r *loopRequest) {
	s := l.invoke
	if a := s.unauthorized(&r.header); a != nil {
		l.refuse(c, a)
		return
	}
	if a := s.dryRun(&r.header); a != nil {
		l.send(c, a)
		return
	}
	inv := NewInvocation()
	r.writeBody(inv.Payload)
	if a := s.fill(inv, &r.header, string(r.rawQuery)); a != nil {
		inv.Release()
		l.send(c, a)
		return
	}
	c.busy = true
	finish := func(err error) {
		c.busy = false
		if !c.closed {
			l.send(c, s.result(inv, err))
		}
		inv.Release()
		l.resume(c)
	}
	s.env.InvokeAsync(inv, func(err error) { l.post(func() { finish(err) }) })
}

func (l *eventLoop) serveNext(c *loopConn) {
	c.busy = true
	env := l.api.env
	var w *NextWait
	since := time.Now()
	finish := func(inv *Invocation, err error) {
		if c.wait == w {
			c.wait = nil
		}
		c.busy = false
		if inv != nil && !c.closed && time.Since(since) > nextPeerCheckAfter && peerGone(uintptr(c.fd)) {
			l.hangUp(c) // as Next's gone: a runtime that hung up leaves its event
		}
		switch {
		case c.closed:
			if inv != nil {
				env.GiveBack(inv)
				inv = nil
			}
		case err != nil:
			l.send(c, stateMachineError(err))
		default:
			l.send(c, nextEvent(inv))
		}
		if inv != nil {
			inv.Release()
		}
		l.resume(c)
	}
	inv, w, err := env.NextAsync(nil, func(inv *Invocation, err error) {
		l.post(func() { finish(inv, err) })
	})
	if w != nil {
		c.wait = w
		return
	}
	finish(inv, err)
}

func (l *eventLoop) serveResponse(c *loopConn, id string, r *loopRequest) {
	env := l.api.env
	wantTail, err := env.CheckAnswer(id)
	if err != nil {
		l.send(c, stateMachineError(err))
		return
	}
	buf := getBuffer()
	r.writeBody(buf)
	if err := l.api.takeResponse(id, buf, false, wantTail); err != nil {
		l.send(c, stateMachineError(err))
		return
	}
	// The caller's answer (posted by the invocation's done) first, then the runtime's.
	l.runInbox()
	l.send(c, accepted)
	env.WritePendingReport()
}

func (l *eventLoop) serveError(c *loopConn, id string, r *loopRequest) {
	if _, err := l.api.env.CheckAnswer(id); err != nil {
		l.send(c, stateMachineError(err))
		return
	}
	if err := l.api.takeError(id, r.header.Get("Lambda-Runtime-Function-Error-Type"), r.bodyBytes(), r.bodyLen > MaxErrorPayload); err != nil {
		l.send(c, stateMachineError(err))
		return
	}
	l.runInbox()
	l.send(c, accepted)
}

// resume serves what waited behind a request that was answered later (pipelined).
func (l *eventLoop) resume(c *loopConn) {
	if c.closed {
		return
	}
	l.serve(c)
	l.closeIfStopping(c)
}

// send writes a's head and body, as httpResponse would write them (Content-Length and
// Date added); what the socket does not take now is kept for EPOLLOUT.
func (l *eventLoop) send(c *loopConn, a *answer) {
	if c.closed {
		return
	}
	b := append(l.head[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(a.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(a.status)...)
	b = append(b, "\r\n"...)
	for _, f := range a.hdr {
		b = append(b, f.k...)
		b = append(b, ": "...)
		b = appendHeaderValue(b, f.v)
		b = append(b, "\r\n"...)
	}
	body := a.body
	if bodyAllowedForStatus(a.status) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	} else {
		body = nil
	}
	b = append(b, "Date: "...)
	b = append(b, httpDate()[0]...)
	b = append(b, "\r\n\r\n"...)
	l.head = b
	l.write(c, b, body)
}

// write writes head and body with one writev; the rest is copied into c.out.
func (l *eventLoop) write(c *loopConn, head, body []byte) {
	if len(c.out) == 0 {
		var iov [2]unix.Iovec
		iov[0].Base = &head[0]
		iov[0].SetLen(len(head))
		cnt := 1
		if len(body) > 0 {
			iov[1].Base = &body[0]
			iov[1].SetLen(len(body))
			cnt = 2
		}
		for {
			n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt))
			if errno == syscall.EINTR {
				continue
			}
			if errno == syscall.EAGAIN {
				break
			}
			if errno != 0 {
				l.hangUp(c)
				return
			}
			k := int(n)
			if k >= len(head)+len(body) {
				return
			}
			if k >= len(head) {
				body, head = body[k-len(head):], nil
			} else {
				head = head[k:]
			}
			break
		}
	}
	c.out = append(append(c.out, head...), body...)
	if !c.pollOut {
		c.pollOut = true
		_ = l.ctl(unix.EPOLL_CTL_MOD, c.fd, c.events())
	}
}

// flushOut writes what c.out holds, once the socket can take it.
func (l *eventLoop) flushOut(c *loopConn) {
	for len(c.out) > 0 {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&c.out[0])), uintptr(len(c.out)))
		if errno == syscall.EINTR {
			continue
		}
		if errno == syscall.EAGAIN {
			return
		}
		if errno != 0 {
			l.hangUp(c)
			return
		}
		c.out = c.out[int(n):]
	}
	c.out = nil
	c.pollOut = false
	_ = l.ctl(unix.EPOLL_CTL_MOD, c.fd, c.events())
	if c.draining {
		l.startDrain(c)
		return
	}
	l.resume(c)
}

// hangUp closes c: the client hung up, or a write failed. A waiting /next is taken
// back, so that its event goes to the runtime's next call; an invocation still runs to
// its end (its answer has nobody to go to).
func (l *eventLoop) hangUp(c *loopConn) {
	if c.closed {
		return
	}
	if c.wait != nil {
		l.api.env.CancelNext(c.wait)
		c.wait = nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	delete(l.conns, c.fd)
	_ = unix.Close(c.fd)
}

// handOver gives c to its listener's httpServer, with what was read and not served.
func (l *eventLoop) handOver(c *loopConn) {
	c.closed = true
	if c.timer != nil {
		c.timer.Stop() // httpServer has its own
	}
	delete(l.conns, c.fd)
	_ = l.ctl(unix.EPOLL_CTL_DEL, c.fd, 0)
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f) // a duplicate, on Go's poller
	_ = f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "runtime-shim: handing a connection over:", err)
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		nc = newRawConn(tc)
	}
	prefix := append([]byte(nil), c.in...)
	lastMethod := ""
	if c.lastPost {
		lastMethod = http.MethodPost
	}
	c.ln.srv.adopt(nc, prefix, c.served, lastMethod)
}

// closeIfStopping closes an idle connection once the loop stops.
func (l *eventLoop) closeIfStopping(c *loopConn) {
	if l.stopping && !c.closed && !c.busy && len(c.out) == 0 {
		l.hangUp(c)
	}
}

// shutdown stops accepting and closes idle connections; the others close after their
// answers. It waits until none is left, or until ctx ends (then all are closed).
func (l *eventLoop) shutdown(ctx context.Context) {
	if !l.started {
		l.closeFDs()
		return
	}
	l.post(func() {
		l.stopping = true
		for fd, ln := range l.lns {
			_ = l.ctl(unix.EPOLL_CTL_DEL, fd, 0)
			_ = unix.Close(fd)
			_ = ln.ln.Close()
			delete(l.lns, fd)
		}
		for _, c := range l.conns {
			l.closeIfStopping(c)
		}
	})
	select {
	case <-l.done:
	case <-ctx.Done():
		l.post(func() {
			for _, c := range l.conns {
				l.hangUp(c)
			}
		})
		<-l.done
	}
}

func (l *eventLoop) closeFDs() {
	for fd, ln := range l.lns {
		_ = unix.Close(fd)
		_ = ln.ln.Close()
	}
	for fd := range l.conns {
		_ = unix.Close(fd)
	}
	_ = unix.Close(l.wakefd)
	if l.epf != nil {
		_ = l.epf.Close()
	} else {
		_ = unix.Close(l.epfd)
	}
}
