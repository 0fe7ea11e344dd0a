package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/shim/internal/environment"
)

// Issue #15, finding 3: an unauthenticated client must not make the shim hold its body.
// Before, transport.Server answered 401 but then read and discarded what the client trickled,
// without a deadline (and the event loop, since removed, grew a connection's buffer to the
// declared Content-Length).

var shimModes = []struct{ name string }{{"transport.Server"}}

// TestUnauthenticatedBodiesAreRefusedAtOnce: 20 connections that send a head with a wrong
// or no secret, a Content-Length of 6 MB (or 100 KB), and then only part of the body, are
// answered 401 and closed at once, and the shim's heap does not grow with what they
// declared.
func TestUnauthenticatedBodiesAreRefusedAtOnce(t *testing.T) {
	for _, mode := range shimModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, func(c *environment.Config) { c.InvokeSecret = "the-secret" })
			addr := strings.TrimPrefix(h.invoke.URL, "http://")
			const n = 20
			var before, during runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			conns := make([]net.Conn, n)
			for i := range conns {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
				secret := ""
				if i%2 == 0 {
					secret = contract.HeaderInvokeSecret + ": wrong\r\n"
				}
				size := contract.MaxSyncPayload
				if i%4 >= 2 {
					size = 100 << 10
				}
				fmt.Fprintf(c, "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s", secret, size, strings.Repeat("{", 1000))
			}
			time.Sleep(300 * time.Millisecond) // the shim has read what they sent
			runtime.GC()
			runtime.ReadMemStats(&during)
			if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
				t.Errorf("the heap grew by %d MB for %d unauthenticated connections", grew>>20, n)
			}
			deadline := time.Now().Add(3 * time.Second)
			for i, c := range conns {
				_ = c.SetReadDeadline(deadline)
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("connection %d: no answer: %v", i, err)
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(contract.HeaderErrorType) != "UnauthorizedException" || !strings.Contains(string(body), contract.HeaderInvokeSecret) {
					t.Fatalf("connection %d: %d %v %s", i, resp.StatusCode, resp.Header, body)
				}
				if !resp.Close {
					t.Errorf("connection %d: the answer does not say Connection: close", i)
				}
				// Then the shim closes: end of stream (or a reset, for the body it did
				// not read), not a timeout.
				if _, err := io.Copy(io.Discard, br); errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("connection %d: still open after its 401", i)
				}
			}
		})
	}
}

// TestTricklingBodyIsCut: an authenticated invoke whose body does not arrive within the
// body timeout is answered 408 and its connection closed; nothing runs.
func TestTricklingBodyIsCut(t *testing.T) {
	for _, mode := range shimModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, func(c *environment.Config) {
				c.InvokeSecret = "the-secret"
				c.BodyTimeout = 300 * time.Millisecond
			})
			c, err := net.Dial("tcp", strings.TrimPrefix(h.invoke.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\n%s: the-secret\r\nContent-Length: 100000\r\n\r\n{", contract.HeaderInvokeSecret)
			stop := make(chan struct{})
			defer close(stop)
			go func() { // a byte every 50 ms: 100 KB would take 80 minutes
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer within 5 s (body timeout 300 ms): %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(contract.HeaderErrorType) != "RequestTimeoutException" || !resp.Close {
				t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
			}
			if _, err := io.Copy(io.Discard, br); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("still open after its 408")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered after %v", d)
			}
			// The shim serves the next caller as before.
			echoRuntime(h)
			r := h.callInvoke(map[string]string{contract.HeaderInvokeSecret: "the-secret"}, `{"a":1}`)
			expect(t, "next invoke", r.status, http.StatusOK)
		})
	}
}

// TestInvokeHeadIsBounded: what a client can make the shim hold before its secret is known
// is bounded by the invoke endpoint's head limit (64 KB, not net/http's 1 MB): 20
// connections sending 900 KB of head each are answered 431 and the heap stays small.
func TestInvokeHeadIsBounded(t *testing.T) {
	for _, mode := range shimModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, func(c *environment.Config) { c.InvokeSecret = "the-secret" })
			addr := strings.TrimPrefix(h.invoke.URL, "http://")
			const n = 20
			var before, during runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			conns := make([]net.Conn, n)
			for i := range conns {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
				go func() { // the head never ends: only the limit stops it
					_, _ = fmt.Fprintf(c, "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nX-Pad: %s", strings.Repeat("a", 900<<10))
				}()
			}
			time.Sleep(500 * time.Millisecond)
			runtime.GC()
			runtime.ReadMemStats(&during)
			if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
				t.Errorf("the heap grew by %d MB for %d connections sending heads", grew>>20, n)
			}
			for i, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("connection %d: %d", i, resp.StatusCode)
				}
			}
		})
	}
}
