package async

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/netguard"
)

// env is an embedded JetStream in a temp dir with a queue, a deliverer and workers.
type env struct {
	t       *testing.T
	dir     string
	srv     *Server
	nc      *nats.Conn
	dnc     *nats.Conn // the destinations account's connection
	q       *Queue
	dst     *Deliverer
	metrics *Metrics
	inv     *fakeInvoker
	configs *staticConfigs
	cancel  context.CancelFunc
	done    chan struct{}
}

// testDestinations let destinations reach brokers on loopback, where the tests run them.
var testDestinations = DestinationOptions{Egress: netguard.Policy{AllowLoopback: true}}

// fastRetry is Lambda's policy shrunk to test time.
func fastRetry() RetryPolicy {
	return RetryPolicy{
		FunctionErrorDelays: []time.Duration{300 * time.Millisecond, 600 * time.Millisecond},
		ThrottleBase:        50 * time.Millisecond,
		ThrottleMax:         200 * time.Millisecond,
		DeliveryAttempts:    3,
		DeliveryBackoff:     20 * time.Millisecond,
		DeliveryTimeout:     500 * time.Millisecond,
	}
}

func startEnv(t *testing.T, dir string, inv *fakeInvoker, configs *staticConfigs) *env {
	t.Helper()
	return startEnvWith(t, dir, inv, configs, QueueOptions{})
}

// startEnvWorkers is startEnv with a number of workers.
func startEnvWorkers(t *testing.T, dir string, inv *fakeInvoker, configs *staticConfigs, workers int) *env {
	t.Helper()
	return startEnvFull(t, dir, inv, configs, QueueOptions{}, workers)
}

// startEnvWith is startEnv with queue options (signing); its Metrics are the env's.
func startEnvWith(t *testing.T, dir string, inv *fakeInvoker, configs *staticConfigs, qopts QueueOptions) *env {
	t.Helper()
	return startEnvFull(t, dir, inv, configs, qopts, 32)
}

func startEnvFull(t *testing.T, dir string, inv *fakeInvoker, configs *staticConfigs, qopts QueueOptions, workers int) *env {
	t.Helper()
	e := &env{t: t, dir: dir, inv: inv, configs: configs, metrics: NewMetrics(prometheus.NewRegistry())}
	srv, err := StartServer(ServerOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	if e.nc, err = srv.Connect(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	qopts.Metrics = e.metrics
	if e.q, err = NewQueue(ctx, e.nc, qopts); err != nil {
		t.Fatal(err)
	}
	if e.dnc, err = srv.ConnectDestinations(); err != nil {
		t.Fatal(err)
	}
	e.dst = NewDeliverer(e.q, nil, testDestinations)
	e.dst.SetLocalNATS(e.dnc, false)
	w := NewWorkers(e.q, inv, configs, e.dst, WorkerOptions{
		Concurrency: workers, AckWait: 5 * time.Second, ShutdownGrace: 2 * time.Second,
		Retry: fastRetry(), Log: testr.New(t),
	})
	wctx, cancel := context.WithCancel(ctx)
	e.cancel, e.done = cancel, make(chan struct{})
	go func() { defer close(e.done); _ = w.Run(wctx) }()
	t.Cleanup(e.stop)
	return e
}

// stop shuts workers, connection and server down gracefully (idempotent).
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.dst.Close()
	e.dnc.Close()
	e.nc.Close()
	e.srv.Shutdown()
	e.cancel = nil
}

func (e *env) enqueue(fn string, payload string) string {
	e.t.Helper()
	id, err := e.q.Enqueue(context.Background(), Event{Namespace: "default", Function: fn, Payload: []byte(payload)})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// subscribe collects messages on a NATS subject of the env's server, in the account NATS
// destinations without servers are published in.
func (e *env) subscribe(subject string) chan *nats.Msg {
	e.t.Helper()
	ch := make(chan *nats.Msg, 100)
	if _, err := e.dnc.ChanSubscribe(subject, ch); err != nil {
		e.t.Fatal(err)
	}
	if err := e.dnc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return ch
}

func receive[T any](t *testing.T, ch <-chan T, within time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		var zero T
		t.Fatalf("nothing received within %s", within)
		return zero
	}
}

// fakeInvoker answers with a scripted function and records every call.
type fakeInvoker struct {
	mu     sync.Mutex
	answer func(req InvokeRequest, n int) InvokeResult // n: this request's call number, from 1
	calls  map[string][]time.Time
	order  []string
}

func newInvoker(answer func(req InvokeRequest, n int) InvokeResult) *fakeInvoker {
	return &fakeInvoker{answer: answer, calls: map[string][]time.Time{}}
}

func (f *fakeInvoker) Invoke(_ context.Context, req InvokeRequest) (InvokeResult, error) {
	f.mu.Lock()
	f.calls[req.RequestID] = append(f.calls[req.RequestID], time.Now())
	f.order = append(f.order, req.Function)
	n := len(f.calls[req.RequestID])
	f.mu.Unlock()
	return f.answer(req, n), nil
}

func (f *fakeInvoker) callTimes(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[id]...)
}

func (f *fakeInvoker) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

func success(payload string) func(InvokeRequest, int) InvokeResult {
	return func(InvokeRequest, int) InvokeResult {
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(payload)}
	}
}

var functionError = InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled",
	Payload: []byte(`{"errorMessage":"something went wrong!","errorType":"errorString"}`)}

var throttle = InvokeResult{StatusCode: 429,
	Payload: []byte(`{"Type":"User","message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}`)}

// staticConfigs is a ConfigSource of fixed configurations per function.
type staticConfigs struct {
	mu  sync.Mutex
	fns map[string]Config
}

func configs(m map[string]Config) *staticConfigs { return &staticConfigs{fns: m} }

func (s *staticConfigs) AsyncConfig(_ context.Context, ns, fn, qualifier string) (Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.fns[fn]
	if !ok {
		return Config{}, ErrFunctionNotFound
	}
	if c.Version == "" {
		c.Version = "$LATEST"
	}
	return c, nil
}

func (s *staticConfigs) DeadLetterConfig(_ context.Context, ns, fn, version string) (*lambdav1alpha1.DeadLetterConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fns[fn].DeadLetter, nil
}

func cfg(retries int, age time.Duration) Config {
	return Config{MaximumRetryAttempts: retries, MaximumEventAge: age}
}

func natsDest(subject string) *lambdav1alpha1.Destination {
	return &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{Subject: subject}}
}

func decodeRecord(t *testing.T, b []byte) Record {
	t.Helper()
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("record %s: %v", b, err)
	}
	return r
}

// newBoundedTestDeliverer keeps at most max destination clients and lets them reach
// loopback.
func newBoundedTestDeliverer(q *Queue, max int) *Deliverer {
	o := testDestinations
	o.MaxClients = max
	return NewDeliverer(q, nil, o)
}
