package testrig

import (
	"context"
	"net"
	"net/http"

	"github.com/klambda/klambda/internal/transport"
)

// Server serves an http.Handler on a loopback port as cmd/activator serves plain HTTP
// (the Invoke API with --plain-http, the peer port): with transport.Server, the lean
// HTTP/1.1 server. httptest.Server's counterpart, so that the activator's handlers are
// tested on the server that serves them.
type Server struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port
	// ConnContext, set before Start, is the server's (transport.Server.ConnContext).
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	ln          net.Listener
	srv         *transport.Server
}

// NewServer serves h.
func NewServer(h http.Handler) *Server {
	s := NewUnstartedServer()
	s.Start(h)
	return s
}

// NewUnstartedServer listens, so its address is known, and serves once Start is called.
func NewUnstartedServer() *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("testrig: listening: " + err.Error())
	}
	return &Server{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), ln: ln}
}

// Start serves h.
func (s *Server) Start(h http.Handler) {
	s.srv = &transport.Server{Handler: h, ConnContext: s.ConnContext}
	go func() { _ = s.srv.Serve(transport.Listener{Listener: s.ln}) }()
}

// Close closes the listener and every connection.
func (s *Server) Close() {
	if s.srv == nil {
		_ = s.ln.Close()
		return
	}
	_ = s.srv.Close()
	_ = s.ln.Close() // (Close may come before Serve has the listener)
}
