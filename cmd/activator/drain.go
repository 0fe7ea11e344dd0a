package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// drainer takes a replica out of service without failing a request (issue 17): when its
// context ends (SIGTERM), readiness goes false at once; the server goes on accepting for
// delay, answering with "Connection: close" (Handler), so that the Service's endpoints and
// every kube-proxy stop sending new connections here and kept-alive clients reconnect
// elsewhere after their next answer; then Shutdown closes the listener and idle
// connections and waits for the requests in flight, each of which ends with its
// invocation (the longest function timeout being served), at most timeout.
//
// Idle kept-alive connections are left open during the delay, not closed at SIGTERM: a
// client may be sending its next request on one at that very moment, and a POST that
// meets a closed connection fails (clients do not resend it). Only those still idle after
// the delay are closed.
type drainer struct {
	delay, timeout time.Duration
	draining       atomic.Bool
	log            logr.Logger
}

// Draining tells the readiness probe to fail.
func (d *drainer) Draining() bool { return d.draining.Load() }

// shutdowner is a server that can stop gracefully (net/http's or the lean one).
type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// run waits for ctx to end, then drains servers; it returns once they are shut down.
func (d *drainer) run(ctx context.Context, servers ...shutdowner) {
	<-ctx.Done()
	d.draining.Store(true)
	d.log.Info("draining: readiness is false; still accepting while the endpoints update", "delay", d.delay, "timeout", d.timeout)
	time.Sleep(d.delay)
	shutdown, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	done := make(chan struct{}, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.Shutdown(shutdown); err != nil {
				d.log.Error(err, "requests still in flight at the end of the drain were cut", "timeout", d.timeout)
			}
			done <- struct{}{}
		}()
	}
	for range servers {
		<-done
	}
	d.log.Info("drained")
}

// Handler answers every request with "Connection: close" while draining.
func (d *drainer) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header()["Connection"] = []string{"close"}
		}
		h.ServeHTTP(w, r)
	})
}
