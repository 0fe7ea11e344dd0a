package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// drainRig serves /slow (answers when release is closed), /fast and /readyz on a real
// listener with a drainer.
type drainRig struct {
	url      string
	d        *drainer
	release  chan struct{}
	served   chan error
	drained  chan struct{}
	cancel   context.CancelFunc
	inFlight chan struct{}
}

// drainServers: the drain is tested on both servers the activator runs, the lean one
// (plain HTTP: the Invoke API with --plain-http, the peer port) and net/http's (TLS).
var drainServers = map[string]bool{"lean": false, "net/http": true}

func newDrainRig(t *testing.T, std bool, delay, timeout time.Duration) *drainRig {
	t.Helper()
	r := &drainRig{d: &drainer{delay: delay, timeout: timeout, log: logr.Discard()}, release: make(chan struct{}),
		served: make(chan error, 1), drained: make(chan struct{}), inFlight: make(chan struct{}, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		r.inFlight <- struct{}{}
		<-r.release
		_, _ = w.Write([]byte("slow done"))
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("fast")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if r.d.Draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String()
	var srv shutdowner
	serve := func() error { return nil }
	if std {
		s := &http.Server{Handler: r.d.Handler(mux), ReadHeaderTimeout: time.Second}
		srv, serve = s, func() error { return s.Serve(ln) }
	} else {
		l := newListener("", r.d.Handler(mux), nil, httpTimeouts{readHeader: time.Second, idle: time.Minute})
		srv, serve = l, func() error { return l.serveOn(ln) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.d.run(ctx, srv); close(r.drained) }()
	go func() { r.served <- serve() }()
	t.Cleanup(func() { cancel(); <-r.drained })
	return r
}

func get(t *testing.T, url string) (*http.Response, string, error) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // a test client
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestDrainFinishesInFlightAndKeepsAcceptingDuringTheDelay(t *testing.T) {
	for name, std := range drainServers {
		t.Run(name, func(t *testing.T) {
			r := newDrainRig(t, std, 400*time.Millisecond, 10*time.Second)
			slow := make(chan string, 1)
			go func() {
				_, body, err := get(t, r.url+"/slow")
				if err != nil {
					body = err.Error()
				}
				slow <- body
			}()
			<-r.inFlight
			r.cancel() // SIGTERM

			deadline := time.Now().Add(5 * time.Second)
			for !r.d.Draining() {
				if time.Now().After(deadline) {
					t.Fatal("the drain did not start")
				}
				time.Sleep(time.Millisecond)
			}
			resp, _, err := get(t, r.url+"/readyz")
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("readiness while draining: %v %v, want 503", resp, err)
			}
			// During the delay new requests are still served, and told to reconnect elsewhere.
			resp, body, err := get(t, r.url+"/fast")
			if err != nil || body != "fast" || !resp.Close {
				t.Fatalf("a request during the delay: %q %v (Connection: close %v)", body, err, resp != nil && resp.Close)
			}
			// After the delay the listener closes, but the request in flight is waited for.
			select {
			case err := <-r.served:
				if !errors.Is(err, http.ErrServerClosed) {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the listener was not closed after the delay")
			}
			select {
			case <-r.drained:
				t.Fatal("the drain ended with a request in flight")
			case <-time.After(200 * time.Millisecond):
			}
			close(r.release)
			if got := <-slow; got != "slow done" {
				t.Fatalf("the request in flight during the drain got %q", got)
			}
			<-r.drained
		})
	}
}

func TestDrainCutsWhatOutlivesTheTimeout(t *testing.T) {
	for name, std := range drainServers {
		t.Run(name, func(t *testing.T) {
			r := newDrainRig(t, std, 0, 300*time.Millisecond)
			defer close(r.release)
			go func() { _, _, _ = get(t, r.url+"/slow") }()
			<-r.inFlight
			r.cancel()
			select {
			case <-r.drained:
			case <-time.After(10 * time.Second):
				t.Fatal("the drain did not end at its timeout")
			}
		})
	}
}

// A kept-alive connection idle at SIGTERM stays open through the delay: the client's next
// request on it is served (and told to close), not met by a closed connection.
func TestDrainKeepsIdleConnectionsThroughTheDelay(t *testing.T) {
	for name, std := range drainServers {
		t.Run(name, func(t *testing.T) {
			r := newDrainRig(t, std, 2*time.Second, 10*time.Second)
			defer close(r.release)
			c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			ask := func() (*http.Response, error) {
				if _, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					return nil, err
				}
				resp, err := http.ReadResponse(br, nil)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			if resp, err := ask(); err != nil || resp.Close {
				t.Fatalf("before the drain: %v (close %v)", err, resp != nil && resp.Close)
			}
			r.cancel() // SIGTERM, the connection idle
			for !r.d.Draining() {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			resp, err := ask()
			if err != nil || resp.StatusCode != http.StatusOK || !resp.Close {
				t.Fatalf("the next request on the idle connection during the delay: %v %v (close %v)", resp, err, resp != nil && resp.Close)
			}
		})
	}
}
