package peer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
)

// Forwards reuse one connection to the owner (read to their end, one at a time), and a
// connection the owner closed meanwhile is not used: the next forward dials again.
func TestForwardReusesTheConnectionAndRedialsAClosedOne(t *testing.T) {
	core := &fakeCore{}
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(&Handler{Core: core, Owns: func(string) bool { return true }, Verify: tokens{"peer-token": true}})
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	addr := strings.TrimPrefix(s.URL, "http://")
	c := client("peer-token")
	forward := func() {
		t.Helper()
		out, err := c.Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "f", Payload: []byte(`{"n":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(out.Body)
		out.Close()
		if string(body) != `{"echo":{"n":1}}` {
			t.Fatalf("body %q", body)
		}
	}
	for range 3 {
		forward()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 forwards one after the other, want 1", n)
	}
	s.CloseClientConnections()
	forward()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a new one after the owner closed the first", n)
	}
	if len(core.runs()) != 4 {
		t.Fatalf("the owner ran %d invocations, want 4", len(core.runs()))
	}
}

// A header value that would split the forwarded request is refused before anything is
// sent: the owner runs nothing.
func TestForwardRefusesHeaderSplitting(t *testing.T) {
	core := &fakeCore{}
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, core, &owned)
	_, err := client("peer-token").Forward(context.Background(), strings.TrimPrefix(s.URL, "http://"),
		&invoke.Input{Namespace: "a", Function: "f", TraceID: "Root=1\r\nX-Klambda-Peer-Namespace: b"})
	var e *invoke.Error
	if !errors.As(err, &e) || e.Type != "InvalidParameterValueException" {
		t.Fatalf("a trace id with CR LF: %v", err)
	}
	if len(core.runs()) != 0 {
		t.Fatalf("the owner ran %d invocations", len(core.runs()))
	}
}

// waitingCore waits for its context to end (an owner waiting for an environment) and
// reports when it did.
type waitingCore struct{ ended chan time.Time }

func (c *waitingCore) Invoke(ctx context.Context, _ *invoke.Input) (*invoke.Output, error) {
	select {
	case <-ctx.Done():
		c.ended <- time.Now()
		return nil, invoke.ErrService("request cancelled")
	case <-time.After(10 * time.Second):
		return nil, invoke.ErrService("not canceled")
	}
}

// A caller that hangs up while its forwarded invocation waits on the owner ends the wait
// there, at most WatchCallerAfter (and the owner's own notice) later: the forwarding
// replica's Invoke API and the owner's peer port are the lean server, as in cmd/activator.
func TestACallerHangingUpEndsItsForward(t *testing.T) {
	core := &waitingCore{ended: make(chan time.Time, 1)}
	var owned atomic.Bool
	owned.Store(true)
	owner := peerServer(t, core, &owned)
	c := client("peer-token")
	forwarder := testrig.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := c.Forward(r.Context(), strings.TrimPrefix(owner.URL, "http://"), &invoke.Input{Namespace: "a", Function: "f"})
		if err != nil {
			invoke.AsError(err).Write(w)
			return
		}
		out.Close()
	}))
	t.Cleanup(forwarder.Close)
	conn, err := net.Dial("tcp", forwarder.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the forward waits on the owner
	hungUp := time.Now()
	conn.Close()
	select {
	case at := <-core.ended:
		if d := at.Sub(hungUp); d > WatchCallerAfter+2*time.Second {
			t.Fatalf("the owner's wait ended %v after the caller hung up", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the owner still waits 5 s after the caller hung up")
	}
}
