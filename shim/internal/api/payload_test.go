package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/environment"
)

// countingConn counts the reads and writes the server makes on a connection: with the
// shim's own sockets (transport.Listener) each is one system call, plus one more for a
// read or write that found the socket not ready.
type countingConn struct {
	net.Conn
	c *connCounts
}

type connCounts struct{ reads, writes, readBytes, writtenBytes atomic.Int64 }

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.reads.Add(1)
	c.c.readBytes.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.c.writes.Add(1)
	c.c.writtenBytes.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	c *connCounts
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.c}, nil
}

func countingServer(t *testing.T, h http.Handler, counts *connCounts) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &transport.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(countingListener{transport.Listener{Listener: ln}, counts}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestPayloadSyscallsPerMB: the shim moves payloads in few, large reads and writes, in
// both directions: the invoke's body in and the event out to /next (the request's way),
// the runtime's /response in, sized or chunked (aws-lambda-go's), and the answer out (the
// response's way). It counts the server's reads and writes per MB moved and fails past
// a bound: at most 32 of each per MB (64 for a chunked /response, see below). Before, a chunked
// /response took 72 reads per MB through a 4 KB buffer. A write that meets a full socket
// waits for it and goes on within the same call: what is counted for writes is calls,
// not system calls (the kernel's socket buffers decide those).
func TestPayloadSyscallsPerMB(t *testing.T) {
	const mb = 4
	cfg := environment.Config{FunctionName: "echo", FunctionVersion: "3", MemorySizeMB: 128, Timeout: 10 * time.Second,
		Region: "eu-west-1", AccountID: "123456789012", InitTimeout: environment.DefaultInitTimeout, ShutdownGrace: 20 * time.Millisecond}
	sup := &fakeSupervisor{starts: make(chan uint64, 16)}
	env := environment.NewEnvironment(&cfg, environment.NewLogSink(io.Discard), sup)
	quit := make(chan struct{})
	var rapiCounts, invokeCounts connCounts
	rapi := countingServer(t, NewRuntimeAPI(env, quit), &rapiCounts)
	invoke := countingServer(t, NewInvokeServer(env), &invokeCounts)
	env.Begin()
	<-sup.starts
	t.Cleanup(func() { close(quit); env.Shutdown() })

	payload := []byte(`"` + strings.Repeat("x", mb<<20-2) + `"`)
	// How many bytes a read finds depends on how far the sender got: on a loaded machine
	// reads come back with less. Each case is tried up to five times and the best count
	// kept: a server that reads 4 KB or one chunk at a time is over the bound in every try.
	best := map[string]float64{}
	for try := 0; try < 5; try++ {
		for _, chunked := range []bool{false, true} {
			rapiCounts, invokeCounts = connCounts{}, connCounts{}
			go func() {
				n := request("GET", rapi+"/2018-06-01/runtime/invocation/next", nil, nil)
				var body io.Reader = bytes.NewReader([]byte(n.body))
				if chunked {
					body = struct{ io.Reader }{body} // no length: chunked, as aws-lambda-go posts
				}
				req, _ := http.NewRequest("POST", rapi+"/2018-06-01/runtime/invocation/"+n.header.Get("Lambda-Runtime-Aws-Request-Id")+"/response", body)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			r := do(t, "POST", invoke+"/2015-03-31/functions/function/invocations", nil, payload)
			if r.status != http.StatusOK || r.body != string(payload) {
				t.Fatalf("chunked %v: answer %d, %d bytes", chunked, r.status, len(r.body))
			}
			perMB := func(n *atomic.Int64) float64 { return float64(n.Load()) / mb }
			for _, c := range []struct {
				what  string
				calls *atomic.Int64
				bytes *atomic.Int64
			}{
				{"invoke in (reads)", &invokeCounts.reads, &invokeCounts.readBytes},
				{"/next out (writes)", &rapiCounts.writes, &rapiCounts.writtenBytes},
				{fmt.Sprintf("/response in, chunked %v (reads)", chunked), &rapiCounts.reads, &rapiCounts.readBytes},
				{"answer out (writes)", &invokeCounts.writes, &invokeCounts.writtenBytes},
			} {
				// The counting conn adds a write once the call returns, which may be after
				// the client has read what it wrote: give the count a moment to land.
				for deadline := time.Now().Add(5 * time.Second); c.bytes.Load() < mb<<20 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				if c.bytes.Load() < mb<<20 {
					t.Fatalf("%s: %d bytes moved, want %d or more", c.what, c.bytes.Load(), mb<<20)
				}
				if v, ok := best[c.what]; !ok || perMB(c.calls) < v {
					best[c.what] = perMB(c.calls)
				}
			}
		}
	}
	for what, v := range best {
		t.Logf("%s: %.1f per MB", what, v)
		// net/http's client sends a chunked body in 32 KB chunks: a read per chunk, when
		// each arrives alone (a loaded machine; CI saw 44 per MB at best of five), is 32
		// per MB plus the chunk heads. The 4 KB read buffer this guards against took 72.
		bound := 32.0
		if strings.Contains(what, "chunked true") {
			bound = 64
		}
		if v > bound {
			t.Errorf("%s: %.1f calls per MB at best, want at most %.0f", what, v, bound)
		}
	}
}
