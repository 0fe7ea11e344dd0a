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

	"github.com/klambda/klambda/activator/invoke"
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
	if len(core.ran) != 4 {
		t.Fatalf("the owner ran %d invocations, want 4", len(core.ran))
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
	if len(core.ran) != 0 {
		t.Fatalf("the owner ran %d invocations", len(core.ran))
	}
}
