package async

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// quotaLimits fit a 16 MiB store: the stream 12 MiB, a namespace 2 MiB (8 events of
// 256 KB).
var quotaLimits = Limits{MaxBytes: 12 << 20, MaxMessages: 1000, NamespaceMaxBytes: 2 << 20, NamespaceMaxMessages: 100, StateMaxBytes: 4 << 20}

// TestNamespaceOverQuotaGets429WhileOthersRun floods namespace "default" with 256 KB events
// through the Invoke API until it is refused: the refusal is 429 TooManyRequestsException
// (before: the store filled up, then 500 ServiceException for every namespace), namespace
// "b" is still accepted and runs, every accepted event of the flood runs, and after a
// restart of the server and queue the quota still holds (it is read from the stream).
func TestNamespaceOverQuotaGets429WhileOthersRun(t *testing.T) {
	dir := t.TempDir()
	srv, err := StartServer(ServerOptions{StoreDir: dir, MaxStoreBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := NewQueue(ctx, nc, QueueOptions{Metrics: NewMetrics(prometheus.NewRegistry()), Limits: quotaLimits})
	if err != nil {
		t.Fatal(err)
	}
	rig := testrig.New(testrig.Options{})
	defer rig.Close()
	rig.Function("flood", -1, 0)
	fb := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "other"}}
	fb.Status.State = lambdav1alpha1.StateActive
	rig.Table.SetFunction(fb)
	rig.Core.Async = Acceptor{Queue: q}

	body := `{"pad":"` + strings.Repeat("x", contract.MaxAsyncPayload-20) + `"}`
	post := func(ns, fn string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, rig.URL()+"/namespaces/"+ns+"/2015-03-31/functions/"+fn+"/invocations", strings.NewReader(body))
		req.Header.Set("X-Amz-Invocation-Type", "Event")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), string(b)
	}

	accepted := 0
	var status int
	var typ, msg string
	for i := 0; i < 200; i++ {
		if status, typ, msg = post(testrig.Namespace, "flood"); status != http.StatusAccepted {
			break
		}
		accepted++
	}
	if status != http.StatusTooManyRequests || typ != "TooManyRequestsException" {
		t.Fatalf("after %d accepted events the flood got %d %s %s; want 429 TooManyRequestsException", accepted, status, typ, msg)
	}
	if !strings.Contains(msg, "quota") {
		t.Errorf("429 message %s does not say the namespace is over its quota", msg)
	}
	if want := int(quotaLimits.NamespaceMaxBytes) / len(body); accepted != want {
		t.Errorf("accepted %d events before the quota; want %d", accepted, want)
	}
	if s, typ, msg := post("b", "other"); s != http.StatusAccepted {
		t.Fatalf("namespace b's event while default is over its quota: %d %s %s", s, typ, msg)
	}

	// Restart: the quota is read back from the stream.
	nc.Close()
	srv.Shutdown()
	if srv, err = StartServer(ServerOptions{StoreDir: dir, MaxStoreBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if nc, err = srv.Connect(); err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if q, err = NewQueue(ctx, nc, QueueOptions{Metrics: NewMetrics(prometheus.NewRegistry()), Limits: quotaLimits}); err != nil {
		t.Fatal(err)
	}
	rig.Core.Async = Acceptor{Queue: q}
	if m, _ := q.Usage(testrig.Namespace); m != int64(accepted) {
		t.Errorf("after a restart the queue counts %d events of namespace default; want %d", m, accepted)
	}
	if s, typ, _ := post(testrig.Namespace, "flood"); s != http.StatusTooManyRequests || typ != "TooManyRequestsException" {
		t.Errorf("after a restart the flood got %d %s; want 429 TooManyRequestsException", s, typ)
	}

	// Every accepted event runs, and then the namespace has room again.
	inv := newInvoker(success(`"ok"`))
	w := NewWorkers(q, inv, configs(map[string]Config{"flood": cfg(0, time.Hour), "other": cfg(0, time.Hour)}), NewDeliverer(q, nil, testDestinations),
		WorkerOptions{Concurrency: 4, AckWait: 5 * time.Second, ShutdownGrace: time.Second, Retry: fastRetry(), Log: testr.New(t)})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for inv.total() < accepted+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	inv.mu.Lock()
	ran := map[string]int{}
	for _, f := range inv.order {
		ran[f]++
	}
	inv.mu.Unlock()
	if ran["flood"] != accepted || ran["other"] != 1 {
		t.Fatalf("ran %v; want flood %d, other 1", ran, accepted)
	}
	for time.Now().Before(deadline) {
		if m, b := q.Usage(testrig.Namespace); m == 0 && b == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s, typ, msg := post(testrig.Namespace, "flood"); s != http.StatusAccepted {
		t.Errorf("once its events ran, namespace default still refused: %d %s %s", s, typ, msg)
	}
}

// TestQuotaCountsConcurrentEvents: concurrent events cannot overrun a namespace's message
// quota, and a function's subject is bounded by JetStream itself.
func TestQuotaCountsConcurrentEvents(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lim := quotaLimits
	lim.NamespaceMaxMessages = 10
	q, err := NewQueue(context.Background(), nc, QueueOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := q.Enqueue(context.Background(), Event{Namespace: "a", Function: fmt.Sprint("f", i%3), Payload: []byte("{}")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case isQueueFull(err):
				full++
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || full != 30 {
		t.Errorf("%d accepted, %d refused; want 10, 30", ok, full)
	}
	if n, err := q.Pending(context.Background()); err != nil || n != 10 {
		t.Errorf("stream holds %d (%v); want 10", n, err)
	}
	// The stream's own per-subject bound refuses what an activator's accounting would miss
	// (another activator replica, a client publishing directly).
	js := q.js
	for i := 0; i < 2; i++ {
		m := (&Event{RequestID: fmt.Sprint("direct-", i), Namespace: "c", Function: "g", Received: time.Now()}).toMsg(q.subject("c", "g"))
		m.Data = bytes.Repeat([]byte("x"), 10)
		_, err = js.PublishMsg(context.Background(), m)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		m := (&Event{RequestID: fmt.Sprint("more-", i), Namespace: "c", Function: "g", Received: time.Now()}).toMsg(q.subject("c", "g"))
		_, err = js.PublishMsg(context.Background(), m)
	}
	if lerr := limitError(err, "c"); lerr == nil || !isQueueFull(lerr) {
		t.Errorf("12th event on one subject: %v; want JetStream's per-subject refusal", err)
	}
}

func isQueueFull(err error) bool {
	_, ok := err.(*QueueFullError)
	return ok
}

// TestFullStreamRefusesAndKeepsWhatItHolds: past the stream's own bound every namespace is
// refused with a QueueFullError (429), and nothing stored is deleted to make room (the
// stream's discard policy is DiscardNew, not the default DiscardOld).
func TestFullStreamRefusesAndKeepsWhatItHolds(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lim := quotaLimits
	lim.MaxMessages, lim.NamespaceMaxMessages = 5, 5
	q, err := NewQueue(context.Background(), nc, QueueOptions{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for i, ns := range []string{"a", "a", "b", "b", "c"} {
		id, err := q.Enqueue(context.Background(), Event{Namespace: ns, Function: "f", Payload: []byte("{}")})
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if i == 0 {
			first = id
		}
	}
	_, err = q.Enqueue(context.Background(), Event{Namespace: "c", Function: "f", Payload: []byte("{}")})
	var full *QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, ErrQueueFull) || !strings.Contains(full.Reason, "queue is full") {
		t.Fatalf("6th event into a stream of 5: %v; want a QueueFullError", err)
	}
	if n, _ := q.Pending(context.Background()); n != 5 {
		t.Errorf("stream holds %d events; want 5", n)
	}
	if m, err := q.stream.GetMsg(context.Background(), 1); err != nil || m.Header.Get(hdrRequestID) != first {
		t.Errorf("the first event is gone (%v)", err)
	}
	if m, _ := q.Usage("c"); m != 1 {
		t.Errorf("namespace c counts %d events after the refusal; want 1", m)
	}
}

// TestSharedStreamQuotaFollowsOtherReplicas: two activator replicas on one NATS. Replica A
// fills namespace x's quota; replica B's workers run and settle the events; A's count
// follows the stream (its workers' next look at it), so x is accepted again on A.
func TestSharedStreamQuotaFollowsOtherReplicas(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	lim := quotaLimits
	lim.NamespaceMaxMessages = 3
	replica := func() *Queue {
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		q, err := NewQueue(context.Background(), nc, QueueOptions{Limits: lim, Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	a, b := replica(), replica()
	enqueue := func(q *Queue) error {
		_, err := q.Enqueue(context.Background(), Event{Namespace: "x", Function: "f", Payload: []byte("{}")})
		return err
	}
	for i := 0; i < 3; i++ {
		if err := enqueue(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := enqueue(a); !isQueueFull(err) {
		t.Fatalf("4th event on replica A: %v; want QueueFullError", err)
	}
	run := func(q *Queue, inv *fakeInvoker) func() {
		w := NewWorkers(q, inv, configs(map[string]Config{"f": cfg(0, time.Hour)}), NewDeliverer(q, nil, testDestinations),
			WorkerOptions{Concurrency: 4, AckWait: 5 * time.Second, ShutdownGrace: time.Second, DiscoverInterval: 100 * time.Millisecond,
				Retry: fastRetry(), Log: testr.New(t)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	invB := newInvoker(success(`"ok"`))
	stopB := run(b, invB)
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := a.Pending(context.Background()); n > 0 && time.Now().Before(deadline); n, _ = a.Pending(context.Background()) {
		time.Sleep(20 * time.Millisecond)
	}
	stopB()
	if invB.total() != 3 {
		t.Fatalf("replica B ran %d events; want 3", invB.total())
	}
	stopA := run(a, newInvoker(success(`"ok"`)))
	defer stopA()
	for m, _ := a.Usage("x"); m > 0 && time.Now().Before(deadline); m, _ = a.Usage("x") {
		time.Sleep(20 * time.Millisecond)
	}
	if err := enqueue(a); err != nil {
		t.Errorf("replica A after replica B settled namespace x's events: %v; want accepted", err)
	}
}
