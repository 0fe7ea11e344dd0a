package async

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"

	"github.com/klambda/klambda/activator/invoke"
)

// OpeningQueue is the queue on an external NATS that may not answer yet (a NATS cluster
// starting after the activator, or down): the activator serves synchronous invocations
// meanwhile, and an Event invocation gets a retryable ServiceException instead of a hang
// or a crash. OpenInBackground connects and opens the queue, trying again with backoff
// until it succeeds or its context ends.
type OpeningQueue struct {
	q       atomic.Pointer[Queue]
	opened  chan struct{}
	mu      sync.Mutex
	lastErr error
	metrics *Metrics
}

// OpenOptions say how to reach the queue's NATS and how patiently.
type OpenOptions struct {
	// Connect dials the NATS once (ExternalNATS.ConnectQueue); the connection it returns
	// reconnects by itself once established.
	Connect func() (*nats.Conn, error)
	Queue   QueueOptions
	// Backoff between attempts: from InitialBackoff (default 500ms), doubled each time up
	// to MaxBackoff (default 30s), ±20% jitter.
	InitialBackoff, MaxBackoff time.Duration
	Log                        logr.Logger
}

// errNotOpenYet is Err's answer before the first attempt ended.
var errNotOpenYet = errors.New("connecting to NATS")

// OpenInBackground checks the queue's options (limits, replicas: an error, as from
// NewQueue, needs no NATS and no retry), starts opening the queue and returns at once.
// opened runs once, with the open queue, before Enqueue stores anything (the caller starts
// its workers there).
func OpenInBackground(ctx context.Context, o OpenOptions, opened func(*Queue)) (*OpeningQueue, error) {
	checked := o.Queue
	checked.defaults()
	if err := checked.Limits.validate(); err != nil {
		return nil, err
	}
	if err := validateReplicas(checked.Replicas); err != nil {
		return nil, err
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = max(30*time.Second, o.InitialBackoff)
	}
	m := o.Queue.Metrics
	if m == nil {
		m = NewMetrics(nil)
		o.Queue.Metrics = m
	}
	oq := &OpeningQueue{opened: make(chan struct{}), lastErr: errNotOpenYet, metrics: m}
	m.QueueOpen.Set(0)
	go oq.run(ctx, o, opened)
	return oq, nil
}

func (oq *OpeningQueue) run(ctx context.Context, o OpenOptions, opened func(*Queue)) {
	var nc *nats.Conn
	wait := o.InitialBackoff
	for attempt := 1; ; attempt++ {
		var err error
		if nc != nil && nc.IsClosed() {
			nc = nil // closed for good (e.g. refused credentials): dial again
		}
		if nc == nil {
			if nc, err = o.Connect(); err != nil {
				nc = nil
				err = fmt.Errorf("NATS not reachable: %w", err)
			}
		}
		if nc != nil {
			var q *Queue
			if q, err = NewQueue(ctx, nc, o.Queue); err == nil {
				opened(q)
				oq.q.Store(q)
				oq.setErr(nil)
				close(oq.opened)
				o.Log.Info("Asynchronous invocation queue open: Event invocations are accepted", "attempts", attempt)
				return
			}
			// The connection stays: it reconnects by itself; only the queue is tried again.
		}
		if ctx.Err() != nil {
			if nc != nil {
				nc.Close()
			}
			return
		}
		oq.setErr(err)
		d := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		o.Log.Error(err, "Asynchronous invocation queue not open yet: Event invocations get ServiceException; trying again",
			"attempt", attempt, "retryIn", d.Round(time.Millisecond).String())
		select {
		case <-time.After(d):
		case <-ctx.Done():
			if nc != nil {
				nc.Close()
			}
			return
		}
		wait = min(2*wait, o.MaxBackoff)
	}
}

func (oq *OpeningQueue) setErr(err error) {
	oq.mu.Lock()
	oq.lastErr = err
	oq.mu.Unlock()
}

// Queue is the open queue, nil until it is.
func (oq *OpeningQueue) Queue() *Queue { return oq.q.Load() }

// Opened is closed once the queue is open.
func (oq *OpeningQueue) Opened() <-chan struct{} { return oq.opened }

// Err is nil while the queue is open and its connection up; else why Event invocations
// are refused (the last attempt's error, or the lost connection).
func (oq *OpeningQueue) Err() error {
	if q := oq.q.Load(); q != nil {
		if !q.nc.IsConnected() {
			return fmt.Errorf("NATS connection %s", q.nc.Status())
		}
		return nil
	}
	oq.mu.Lock()
	defer oq.mu.Unlock()
	return oq.lastErr
}

var _ invoke.EventQueue = (*OpeningQueue)(nil)

// Enqueue stores the event once the queue is open (Acceptor); before, it refuses it
// with ServiceException (500, Retry-After: 1): nothing was stored, the caller retries, as
// the AWS SDKs do with a 5xx.
func (oq *OpeningQueue) Enqueue(ctx context.Context, ev invoke.AsyncEvent) (string, error) {
	q := oq.q.Load()
	if q == nil {
		e := invoke.ErrService("The asynchronous invocation queue is not available yet (this activator is connecting to its NATS); nothing was queued, retry.")
		e.RetryAfterSeconds = 1
		return "", e
	}
	return Acceptor{Queue: q}.Enqueue(ctx, ev)
}
