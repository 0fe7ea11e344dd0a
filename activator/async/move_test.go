package async

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSwitchFromEmbeddedQueueMovesEveryEvent: an install switches from the embedded queue
// to an external NATS while the embedded store holds events — some never delivered, some
// waiting out a retry (a throttle, a function error) with their attempts in the state
// bucket. The first start on the external NATS moves them all, signed for the external
// queue; each runs exactly once more (the function error's retries continue where they
// were: 2 attempts left of 3), none is lost, an event an earlier start had published
// before it died runs once, and a second start moves nothing.
func TestSwitchFromEmbeddedQueueMovesEveryEvent(t *testing.T) {
	dir := t.TempDir()
	const delivered, undelivered = 60, 60
	hour := time.Hour
	fns := map[string]Config{"fn": cfg(2, 6*hour), "flaky": cfg(2, 6*hour)}

	// The embedded queue: every "fn" event of the first batch is throttled once and
	// "flaky" fails once; then they wait an hour. The second batch is never delivered.
	srv, err := StartServer(ServerOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := NewQueue(ctx, nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := newInvoker(func(req InvokeRequest, _ int) InvokeResult {
		if req.Function == "flaky" {
			return functionError
		}
		return throttle
	})
	var ids []string
	enqueue := func(fn string) string {
		id, err := q.Enqueue(ctx, Event{Namespace: "default", Function: fn, Payload: []byte(`{"fn":"` + fn + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	flaky := enqueue("flaky")
	for range delivered {
		ids = append(ids, enqueue("fn"))
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	w := NewWorkers(q, old, configs(fns), NewDeliverer(q, nil, testDestinations), WorkerOptions{Concurrency: 8, AckWait: 5 * time.Second,
		ShutdownGrace: time.Second, Retry: RetryPolicy{FunctionErrorDelays: []time.Duration{hour, hour}, ThrottleBase: hour, ThrottleMax: hour},
		Log: testr.New(t)})
	workersDone := make(chan struct{})
	go func() { defer close(workersDone); _ = w.Run(wctx) }()
	for deadline := time.Now().Add(20 * time.Second); old.total() < delivered+1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("embedded workers ran %d of %d events", old.total(), delivered+1)
		}
	}
	time.Sleep(200 * time.Millisecond) // the retries' state is written before the NAK
	stopWorkers()
	<-workersDone
	for range undelivered {
		ids = append(ids, enqueue("fn"))
	}
	if n, err := q.Pending(ctx); err != nil || n != delivered+undelivered+1 {
		t.Fatalf("embedded store holds %d events (%v), want %d", n, err, delivered+undelivered+1)
	}
	nc.Close()
	srv.Shutdown()

	// The external NATS, with signed events.
	ext := startJetStreamOn(t, -1, t.TempDir())
	enc, err := nats.Connect(ext.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	signer, err := NewSigner(bytes.Repeat([]byte("k"), MinSigningKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	q2, err := NewQueue(ctx, enc, QueueOptions{Signer: signer, Metrics: m, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	inv := newInvoker(func(req InvokeRequest, _ int) InvokeResult {
		if req.Function == "flaky" {
			return functionError
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	w2ctx, stopW2 := context.WithCancel(ctx)
	defer stopW2()
	w2 := NewWorkers(q2, inv, configs(fns), NewDeliverer(q2, nil, testDestinations), WorkerOptions{Concurrency: 8, AckWait: 5 * time.Second,
		ShutdownGrace: time.Second, Retry: fastRetry(), Log: testr.New(t), Metrics: m})
	w2Done := make(chan struct{})
	go func() { defer close(w2Done); _ = w2.Run(w2ctx) }()
	defer func() { stopW2(); <-w2Done }()

	if pending, err := EmbeddedStorePending(dir); err != nil || !pending {
		t.Fatalf("EmbeddedStorePending(%s) = %v, %v before the move", dir, pending, err)
	}
	// An earlier start published the first event and was killed before deleting it from
	// the old store: JetStream drops the second copy (within its 2-minute window).
	first := Event{RequestID: ids[0], Namespace: "default", Function: "fn", Payload: []byte(`{"fn":"fn"}`), Received: time.Now()}
	if _, err := q2.store(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	moveStart := time.Now()
	moved, err := MoveEmbeddedStore(ctx, dir, q2, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved %d events in %s", moved, time.Since(moveStart).Round(time.Millisecond))
	if moved != delivered+undelivered+1 {
		t.Errorf("moved %d events, want %d", moved, delivered+undelivered+1)
	}
	if _, err := os.Stat(filepath.Join(dir, DrainedMarker)); err != nil {
		t.Errorf("the store is not marked drained: %v", err)
	}

	// Every event runs once on the external queue; flaky's 2 remaining attempts.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		done := len(inv.callTimes(flaky)) >= 2
		for _, id := range ids {
			done = done && len(inv.callTimes(id)) >= 1
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every moved event ran within 30 s: %d calls", inv.total())
		}
	}
	moreMoved, err := MoveEmbeddedStore(ctx, dir, q2, testr.New(t)) // a second start
	if err != nil || moreMoved != 0 {
		t.Errorf("second start moved %d (%v), want 0", moreMoved, err)
	}
	time.Sleep(time.Second) // a duplicate, or flaky's (wrong) third attempt, would run now
	for _, id := range ids {
		if n := len(inv.callTimes(id)); n != 1 {
			t.Errorf("event %s ran %d times on the external queue, want 1", id, n)
		}
	}
	if n := len(inv.callTimes(flaky)); n != 2 {
		t.Errorf("flaky ran %d times on the external queue after 1 attempt on the embedded one; want 2 (maximumRetryAttempts 2)", n)
	}
	if got := testutil.ToFloat64(m.Received.WithLabelValues("default", "fn")); got != 0 {
		t.Errorf("klambda_async_events_received_total counts %v moved events as received again", got)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues(RejectUnsigned)); got != 0 {
		t.Errorf("%v moved events were not signed for the external queue", got)
	}
	if n, err := q2.Pending(ctx); err != nil || n != 0 {
		t.Errorf("external stream holds %d events (%v) after they ran", n, err)
	}

	// The embedded queue used again (the install switched back): no longer drained.
	srv, err = StartServer(ServerOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	if pending, err := EmbeddedStorePending(dir); err != nil || !pending {
		t.Errorf("after the embedded server ran again, EmbeddedStorePending = %v, %v", pending, err)
	}
}
