package keepalive

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// roundDeadline rounds up to a multiple of deadlineStep, by less than a step, and keeps
// the monotonic clock reading.
func TestRoundDeadline(t *testing.T) {
	if !roundDeadline(time.Time{}).IsZero() {
		t.Fatal("a zero deadline must stay zero (none)")
	}
	now := time.Now()
	for _, d := range []time.Duration{0, 1, deadlineStep - 1, deadlineStep, 15*time.Second + 3*time.Millisecond} {
		in := now.Add(d)
		got := roundDeadline(in)
		if got.Before(in) || got.Sub(in) >= deadlineStep || got.UnixNano()%int64(deadlineStep) != 0 {
			t.Errorf("%v → %v", in, got)
		}
		if !strings.Contains(got.String(), " m=") { // (String shows the monotonic reading as m=)
			t.Errorf("%v lost its monotonic clock reading", got)
		}
	}
}

// A connection keeps the deadline of its last exchange while idle; one whose deadline has
// passed (or is near) is still reused, its deadline cleared, and the next exchange gets
// its own.
func TestAnIdleConnectionsDeadlineDoesNotFailItsReuse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	var dials atomic.Int32
	p := New(func(_ context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return net.Dial(network, addr)
	})
	do := func(until time.Time) {
		t.Helper()
		resp, err := p.Do(context.Background(), &Request{Addr: addr, Head: plainHead{addr}, Until: until})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	do(time.Now().Add(time.Minute))
	do(time.Now().Add(time.Minute)) // (most often within the same step: the deadline stays)
	do(time.Now().Add(100 * time.Millisecond))
	time.Sleep(300 * time.Millisecond) // the idle connection's deadline passes
	do(time.Time{})
	do(time.Now().Add(time.Minute))
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections made, want 1 (reused throughout)", n)
	}
}
