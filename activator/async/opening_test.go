package async

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klambda/klambda/activator/invoke"
)

// freePort is a TCP port nothing listens on (yet).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startJetStreamOn runs a real nats-server with JetStream on 127.0.0.1:port.
func startJetStreamOn(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// TestQueueOpensWhenNATSStartsLater: the activator's queue is opened before its NATS runs
// (the chart's NATS cluster starting after the activator). Meanwhile Event invocations get
// a retryable ServiceException at once, not a hang; once the server is up the queue opens
// by itself, and events are stored and run, with no restart; a server lost later shows in
// Err again.
func TestQueueOpensWhenNATSStartsLater(t *testing.T) {
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	m := NewMetrics(prometheus.NewRegistry())
	inv := newInvoker(success(`"ok"`))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workersDone := make(chan struct{})
	var attempts atomic.Int32
	oq, err := OpenInBackground(ctx, OpenOptions{
		Connect: func() (*nats.Conn, error) {
			attempts.Add(1)
			return nats.Connect(url, nats.MaxReconnects(-1))
		},
		Queue:          QueueOptions{Metrics: m, SetupPatience: time.Second},
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Log: testr.New(t),
	}, func(q *Queue) {
		w := NewWorkers(q, inv, configs(map[string]Config{"fn": cfg(2, time.Hour)}), NewDeliverer(q, nil, testDestinations),
			WorkerOptions{Concurrency: 4, AckWait: 5 * time.Second, ShutdownGrace: time.Second, Retry: fastRetry(), Log: testr.New(t)})
		go func() { defer close(workersDone); _ = w.Run(ctx) }()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-oq.Opened(); <-workersDone })

	ev := invoke.AsyncEvent{Namespace: "default", Function: "fn", Payload: []byte(`{"n":1}`), Received: time.Now()}
	// Before the server exists: refused at once, Lambda-shaped, retryable.
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	_, err = oq.Enqueue(ctx, ev)
	var e *invoke.Error
	if !errors.As(err, &e) || e.Status != http.StatusInternalServerError || e.Type != "ServiceException" || e.RetryAfterSeconds != 1 {
		t.Fatalf("Enqueue before NATS runs = %v, want ServiceException 500 with Retry-After", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the refusal took %s", d)
	}
	if oq.Err() == nil || oq.Queue() != nil {
		t.Fatalf("Err() = nil or a queue before NATS runs")
	}
	if got := testutil.ToFloat64(m.QueueOpen); got != 0 {
		t.Errorf("klambda_async_queue_open = %v before NATS runs", got)
	}
	if n := attempts.Load(); n < 3 {
		t.Errorf("%d connection attempts in 300 ms; want the backoff to keep trying", n)
	}

	ns := startJetStreamOn(t, port, t.TempDir())
	select {
	case <-oq.Opened():
	case <-time.After(15 * time.Second):
		t.Fatalf("queue not open 15 s after NATS started; last error: %v", oq.Err())
	}
	if err := oq.Err(); err != nil {
		t.Fatalf("Err() = %v once open", err)
	}
	if got := testutil.ToFloat64(m.QueueOpen); got != 1 {
		t.Errorf("klambda_async_queue_open = %v once open", got)
	}
	id, err := oq.Enqueue(ctx, ev)
	if err != nil {
		t.Fatalf("Enqueue once open: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(inv.callTimes(id)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the event %s was not run", id)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// NATS lost after opening: the queue says so (/readyz/async) while it reconnects.
	ns.Shutdown()
	for deadline := time.Now().Add(5 * time.Second); oq.Err() == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Err() still nil 5 s after the NATS server stopped")
		}
	}
}

// Options that no NATS can make valid are refused at once, not retried.
func TestOpenInBackgroundRefusesBadOptions(t *testing.T) {
	connect := func() (*nats.Conn, error) { t.Error("dialled"); return nil, errors.New("no") }
	for want, qo := range map[string]QueueOptions{
		"JetStream allows 1 to 5":               {Replicas: 6},
		"cannot exceed the whole queue's limit": {Limits: Limits{MaxMessages: 10, NamespaceMaxMessages: 20}},
	} {
		oq, err := OpenInBackground(context.Background(), OpenOptions{Connect: connect, Queue: qo, Log: testr.New(t)}, func(*Queue) {})
		if oq != nil || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, %v; want an error containing %q", qo, oq, err, want)
		}
	}
}
