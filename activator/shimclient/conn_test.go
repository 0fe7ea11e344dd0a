package shimclient

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/internal/keepalive"
	"github.com/klambda/klambda/api/contract"
)

// A warm invocation reuses its environment's connection; one the shim closed is not used.
func TestDoReusesConnectionsAndSendsTheCall(t *testing.T) {
	var conns atomic.Int32
	var got http.Header
	var body string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		if r.URL.Path != contract.InvokePath || r.Method != http.MethodPost {
			w.WriteHeader(404)
			return
		}
		w.Header().Set(contract.HeaderFunctionError, "Unhandled")
		_, _ = w.Write([]byte(`{"ok":1}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	cl := New()
	addr := srv.Listener.Addr().String()
	call := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := &Call{Addr: addr, Secret: "s", RequestID: "r-1", InvokedARN: "arn:x", Deadline: time.UnixMilli(1234),
			ClientContext: "e30=", TraceID: "Root=1", LogTail: true, Body: strings.NewReader(`{"a":1}`), ContentLength: 7}
		resp, err := cl.Do(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `{"ok":1}` || resp.Header.Get(contract.HeaderFunctionError) != "Unhandled" {
			t.Fatalf("%d %s %v", resp.StatusCode, b, resp.Header)
		}
	}
	for i := 0; i < 3; i++ {
		call()
	}
	if conns.Load() != 1 {
		t.Fatalf("%d connections for 3 sequential invocations, want 1", conns.Load())
	}
	if body != `{"a":1}` || got.Get(contract.HeaderInvokeSecret) != "s" || got.Get(contract.HeaderRequestID) != "r-1" ||
		got.Get(contract.HeaderInvokedARN) != "arn:x" || got.Get(contract.HeaderDeadlineMs) != "1234" ||
		got.Get(contract.HeaderClientContext) != "e30=" || got.Get(contract.HeaderTraceID) != "Root=1" ||
		got.Get(contract.HeaderLogType) != contract.LogTypeTail || got.Get("Content-Type") != "application/json" {
		t.Fatalf("shim saw %v %q", got, body)
	}
	// The shim closes its idle connections: the next invocation dials anew.
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	call()
	if conns.Load() != 2 {
		t.Fatalf("%d connections, want a new one after the shim closed the first", conns.Load())
	}
}

func TestDoRefusesHeaderSplittingAndHonoursTheDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(300 * time.Millisecond)
	}))
	defer srv.Close()
	cl := New()
	addr := srv.Listener.Addr().String()
	if _, err := cl.Do(context.Background(), &Call{Addr: addr, TraceID: "x\r\nX-Evil: 1"}); err == nil {
		t.Fatal("a header value with CR LF was sent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := cl.Do(ctx, &Call{Addr: addr}); err == nil || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("past the deadline: %v after %v", err, time.Since(start))
	}
}

// countingConn counts the Write calls made on a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestLargePayloadGoesInFewWrites: a payload is written to the shim in one write after the
// head (two in all), not through the 4 KB buffer (over a thousand for 4 MB); a small one
// goes with the head in one.
func TestLargePayloadGoesInFewWrites(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
	}))
	defer srv.Close()
	var writes atomic.Int32
	d := &net.Dialer{}
	cl := &Client{HTTP: http.DefaultClient, conns: keepalive.New(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	})}
	for _, size := range []int{7, 4 << 20} {
		writes.Store(0)
		payload := []byte(`"` + strings.Repeat("x", size-2) + `"`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := cl.Do(ctx, &Call{Addr: srv.Listener.Addr().String(), Body: bytes.NewReader(payload), ContentLength: int64(size)})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		want := int32(2)
		if size < 4096 {
			want = 1
		}
		if got.Load() != int64(size) || writes.Load() != want {
			t.Errorf("%d-byte payload: shim got %d bytes in %d writes, want %d writes", size, got.Load(), writes.Load(), want)
		}
	}
}
