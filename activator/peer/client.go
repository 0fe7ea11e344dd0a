package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/klambda/klambda/activator/internal/keepalive"
	"github.com/klambda/klambda/activator/invoke"
)

// Client forwards invocations to peer replicas, over keep-alive connections kept per
// replica (activator/internal/keepalive: the request written and the answer's head read
// on the caller's goroutine). The peer port is plain HTTP inside the cluster.
type Client struct {
	// Token is this replica's credential for the peer port (its ServiceAccount token made
	// for the peer audience; a projected token file is re-read as the kubelet rotates it).
	Token func() (string, error)

	once  sync.Once
	conns *keepalive.Pool
}

// WatchCallerAfter is how long a forward runs before it watches its caller hanging up
// (ctx's cancellation; its deadline bounds it from the start). Watching the caller of a
// request the lean server serves (internal/transport) costs a goroutine parked on the
// caller's socket and two deadline changes; most forwards are answered sooner, and a
// caller's hang-up ends a longer one (waiting for an environment on the owner) at most
// this late.
const WatchCallerAfter = 10 * time.Millisecond

// ErrUnreachable: the request could not be sent to the peer; nothing ran there.
var ErrUnreachable = errors.New("peer: the owning replica could not be reached")

// Forward runs in on the replica at addr. Errors: ErrNotOwner and ErrUnreachable (nothing
// ran: look the owner up again), *invoke.Error (the invocation's answer), anything else (the
// call failed after it was sent: the invocation may have run).
func (c *Client) Forward(ctx context.Context, addr string, in *invoke.Input) (*invoke.Output, error) {
	out, _, err := c.forward(ctx, addr, in)
	return out, err
}

// forward is Forward; answered: the owner answered (out, or its error answer), as opposed
// to this replica failing the forward.
func (c *Client) forward(ctx context.Context, addr string, in *invoke.Input) (out *invoke.Output, answered bool, err error) {
	c.once.Do(func() {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		c.conns = keepalive.New(dialer.DialContext)
	})
	tok, err := c.Token()
	if err != nil {
		return nil, false, invoke.ErrService("this activator has no peer credential: " + err.Error())
	}
	h := head{addr: addr, token: tok, in: in}
	if !h.valid() {
		return nil, false, invoke.ErrInvalidParameter("a header value of the invocation holds a control character")
	}
	resp, err := c.conns.Do(ctx, &keepalive.Request{Addr: addr, Head: &h, Body: bytes.NewReader(in.Payload), ContentLength: int64(len(in.Payload)), //nolint:bodyclose // readOutput closes it, or hands it to the Output whose Close does
		WatchAfter: WatchCallerAfter})
	if err != nil {
		if errors.Is(err, keepalive.ErrNotSent) {
			return nil, false, errors.Join(ErrUnreachable, err)
		}
		return nil, false, invoke.ErrService("the owning activator did not answer: " + err.Error())
	}
	out, err = readOutput(resp)
	return out, !errors.Is(err, ErrNotOwner), err
}

// head is a forwarded invocation's request head: the Input's fields as headers (the
// payload is the body), and the peer credential.
type head struct {
	addr, token string
	in          *invoke.Input
}

func (h *head) valid() bool {
	in := h.in
	for _, v := range [...]string{h.addr, h.token, in.Namespace, in.Function, in.Qualifier, in.InvocationType, in.ClientContext, in.TraceID, in.RequestID} {
		if !keepalive.ValidHeaderValue(v) {
			return false
		}
	}
	return true
}

// WriteHead writes the request line and headers (no allocation).
func (h *head) WriteHead(w *bufio.Writer) {
	var num [20]byte
	in := h.in
	_, _ = w.WriteString("POST " + Path + " HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(h.addr)
	_, _ = w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	_, _ = w.Write(strconv.AppendInt(num[:0], int64(len(in.Payload)), 10))
	_, _ = w.WriteString("\r\nAuthorization: Bearer ")
	_, _ = w.WriteString(h.token)
	_, _ = w.WriteString("\r\n")
	keepalive.WriteHeader(w, hNamespace, in.Namespace)
	keepalive.WriteHeader(w, hFunction, in.Function)
	keepalive.WriteHeader(w, hQualifier, in.Qualifier)
	keepalive.WriteHeader(w, hInvocationType, in.InvocationType)
	keepalive.WriteHeader(w, hClientContext, in.ClientContext)
	keepalive.WriteHeader(w, hTraceID, in.TraceID)
	keepalive.WriteHeader(w, hRequestID, in.RequestID)
	if in.LogTail {
		keepalive.WriteHeader(w, hLogTail, "true")
	}
	if in.ResponseStream {
		keepalive.WriteHeader(w, hResponseStream, "true")
	}
	_, _ = w.WriteString("\r\n")
}
