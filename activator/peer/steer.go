package peer

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Steering moves a caller's kept-alive connection towards the replica that owns what it
// invokes (activator/README.md, "Several replicas", connection steering). A request that
// reaches a replica not owning its namespace is forwarded to the owner, which costs about
// as much again as serving it. When a connection's requests keep being forwarded to the
// same owner, the replica answers the latest one with "Connection: close" (the answer is
// complete: net/http's HTTP/1 and the lean server (internal/transport) close after it,
// net/http's HTTP/2 sends GOAWAY and ends the connection once its streams are done); the
// caller's next request opens a new connection, which the Service places on a random
// replica, possibly the owner, where it then stays (a replica never closes a connection
// whose requests it served itself).
//
// The rule, per connection: close after a forwarded answer when the connection's previous
// request was forwarded to the same owner too (two in a row), so a connection carrying
// several namespaces owned by different replicas is not churned; never after a request
// served here, an answer this replica made itself (a refusal, an error of the forward),
// or while the owner is unknown; and at most Rate closes a second (a token bucket of Burst):
// each close costs the caller a new connection (a TLS handshake over TLS).
//
// Use: Handler wraps the Invoke API's handler, ConnContext is its server's (net/http's
// Server.ConnContext, internal/transport's Server.ConnContext), and the Router that
// handler invokes has it as Steer. A nil *Steering steers nothing.
type Steering struct {
	limiter *rate.Limiter
	closed  func()
}

// NewSteering steers at most perSecond connections a second (burst at once); closed, if
// set, is called for each close (a metric).
func NewSteering(perSecond float64, burst int, closed func()) *Steering {
	return &Steering{limiter: rate.NewLimiter(rate.Limit(perSecond), burst), closed: closed}
}

// steerConn is one caller connection's state.
type steerConn struct {
	mu sync.Mutex
	// last is the owner the previous routed request was forwarded to ("" when it was not
	// forwarded, or its answer was not the owner's).
	last    string
	closing bool // answered with Connection: close already
	req     steerReq
}

// steerReq is one request's: the answer's header (Connection: close goes there before it
// is written) and whether the Router saw the request. An HTTP/1 connection carries one
// request at a time and reuses its steerConn's; an HTTP/2 stream gets its own.
type steerReq struct {
	conn   *steerConn
	header http.Header
	routed bool
}

type steerKey struct{}

// ConnContext gives a new connection its state.
func (s *Steering) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	c := &steerConn{}
	c.req.conn = c
	return context.WithValue(ctx, steerKey{}, &c.req)
}

// Handler lets the Router steer the connections of h's requests.
func (s *Steering) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr, _ := r.Context().Value(steerKey{}).(*steerReq)
		if sr == nil {
			h.ServeHTTP(w, r)
			return
		}
		if r.ProtoMajor != 1 { // HTTP/2: streams run at once on one connection
			sr = &steerReq{conn: sr.conn}
			r = r.WithContext(context.WithValue(r.Context(), steerKey{}, sr))
		}
		sr.header, sr.routed = w.Header(), false
		h.ServeHTTP(w, r)
		if !sr.routed { // answered without the Router (a refusal, a probe): the streak ends
			sr.conn.note("")
		}
		sr.header = nil
	})
}

// note records where the connection's latest request went (owner "": not forwarded) and
// reports whether it is the second in a row forwarded to that owner.
func (c *steerConn) note(owner string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	again := owner != "" && c.last == owner && !c.closing
	c.last = owner
	return again
}

// routed records that the request of ctx was answered by owner (a peer's address) or, for
// "", by this replica (or not by the owner), and closes its connection after the answer
// when the rule and the budget allow.
func (s *Steering) routed(ctx context.Context, owner string) {
	if s == nil {
		return
	}
	sr, _ := ctx.Value(steerKey{}).(*steerReq)
	if sr == nil || sr.header == nil {
		return // not a request of the steered handler (an async worker's, a poller's)
	}
	sr.routed = true
	if !sr.conn.note(owner) || !s.limiter.AllowN(time.Now(), 1) {
		return
	}
	sr.conn.mu.Lock()
	sr.conn.closing = true
	sr.conn.mu.Unlock()
	sr.header["Connection"] = []string{"close"}
	if s.closed != nil {
		s.closed()
	}
}

// Limit is the budget: closes a second, and at once.
func (s *Steering) Limit() (perSecond float64, burst int) {
	return float64(s.limiter.Limit()), s.limiter.Burst()
}
