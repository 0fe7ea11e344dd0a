package keepalive

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// plainHead is a request head with no body.
type plainHead struct{ addr string }

func (h plainHead) WriteHead(w *bufio.Writer) {
	_, _ = w.WriteString("POST /x HTTP/1.1\r\nHost: " + h.addr + "\r\nContent-Length: 0\r\n\r\n")
}

// doneCounter is a cancelable context that counts the calls of Done (the lean server's
// request context starts watching the client's socket at the first).
type doneCounter struct {
	context.Context
	calls atomic.Int32
}

func (c *doneCounter) Done() <-chan struct{} {
	c.calls.Add(1)
	return c.Context.Done()
}

// TestWatchAfterPutsOffTheCancellationWatch: with WatchAfter, an exchange answered sooner
// never asks its context for Done; one that lasts longer is cut off by the context's
// cancellation once WatchAfter has passed; a context already canceled sends nothing.
func TestWatchAfterPutsOffTheCancellationWatch(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// (a dial that does not look at the context: only the watch does)
	p := New(func(_ context.Context, network, addr string) (net.Conn, error) { return net.Dial(network, addr) })
	const after = 50 * time.Millisecond

	parent, cancel := context.WithCancel(context.Background())
	ctx := &doneCounter{Context: parent}
	for range 3 {
		resp, err := p.Do(ctx, &Request{Addr: addr, Head: plainHead{addr}, WatchAfter: after})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	time.Sleep(2 * after) // (a timer left running would call Done now)
	if n := ctx.calls.Load(); n != 0 {
		t.Fatalf("Done was called %d times for exchanges answered before WatchAfter", n)
	}

	// A server that does not answer: the cancellation ends the exchange after WatchAfter.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }() // reads, never answers
		}
	}()
	silent := ln.Addr().String()
	time.AfterFunc(5*time.Millisecond, cancel)
	start := time.Now()
	_, err = p.Do(ctx, &Request{Addr: silent, Head: plainHead{silent}, WatchAfter: after, Until: start.Add(3 * time.Second)})
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) || took < after || took > after+2*time.Second {
		t.Fatalf("canceled exchange: %v after %v, want context.Canceled after about %v", err, took, after)
	}
	if ctx.calls.Load() == 0 {
		t.Fatal("the exchange outlasted WatchAfter without watching its context")
	}

	before := requests.Load()
	_, err = p.Do(ctx, &Request{Addr: addr, Head: plainHead{addr}, WatchAfter: after})
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.Canceled) {
		t.Fatalf("already canceled: %v, want ErrNotSent and context.Canceled", err)
	}
	if requests.Load() != before {
		t.Fatalf("a request was sent for a canceled context: %v", err)
	}
}
