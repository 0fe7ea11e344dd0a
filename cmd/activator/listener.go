package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/klambda/klambda/internal/transport"
)

// listener is one of the activator's HTTP listeners (the Invoke API, the peer port).
// Plain HTTP is served by transport.Server, the lean HTTP/1.1 server the runtime shim
// uses (issue 17: net/http's server was about two thirds of the activator's CPU per
// invocation); TLS by net/http's server, which offers HTTP/2 over it and notices a client
// that hangs up (transport.Server cannot see through a TLS connection to its socket).
// Both serve the same http.Handler.
type listener struct {
	addr string
	tls  *tls.Config
	lean *transport.Server // plain HTTP
	std  *http.Server      // TLS
}

// httpTimeouts bound what a client may take: a request head, a whole request (head and
// body: net/http's ReadTimeout; the lean server bounds the body from its first read),
// and an idle kept-alive connection. 0: none.
type httpTimeouts struct {
	readHeader, read, idle time.Duration
}

// newListener serves h on addr, over TLS when tc is set.
func newListener(addr string, h http.Handler, tc *tls.Config, t httpTimeouts) *listener {
	l := &listener{addr: addr, tls: tc}
	if tc != nil {
		l.std = &http.Server{Addr: addr, Handler: h, TLSConfig: tc, ReadHeaderTimeout: t.readHeader, ReadTimeout: t.read, IdleTimeout: t.idle}
		return l
	}
	header := t.readHeader
	if header == 0 {
		header = t.read // as net/http: the read timeout bounds the head too
	}
	l.lean = &transport.Server{Handler: h, ReadHeaderTimeout: header, BodyTimeout: t.read, IdleTimeout: t.idle}
	return l
}

// setConnContext sets the server's ConnContext (before serve): the values of every
// connection's requests.
func (l *listener) setConnContext(f func(context.Context, net.Conn) context.Context) {
	if l.std != nil {
		l.std.ConnContext = f
		return
	}
	l.lean.ConnContext = f
}

// serve listens on the listener's address and serves until Shutdown or Close
// (http.ErrServerClosed).
func (l *listener) serve() error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	return l.serveOn(ln)
}

func (l *listener) serveOn(ln net.Listener) error {
	if l.std != nil {
		return l.std.ServeTLS(ln, "", "")
	}
	return l.lean.Serve(transport.Listener{Listener: ln})
}

// Shutdown stops accepting, closes idle connections and waits (within ctx) for the
// requests in flight.
func (l *listener) Shutdown(ctx context.Context) error {
	if l.std != nil {
		return l.std.Shutdown(ctx)
	}
	return l.lean.Shutdown(ctx)
}

// Close closes the listener and every connection.
func (l *listener) Close() error {
	if l.std != nil {
		return l.std.Close()
	}
	return l.lean.Close()
}
