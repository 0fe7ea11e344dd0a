package async

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
)

// Issue 15, finding 5 (async): an event whose function does not exist (deleted since it
// was accepted, or a message the activator never accepted, whose headers name anything)
// must not make a series per made-up name.
func TestUnknownFunctionsMakeNoSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	countSeries := func() int {
		mfs, _ := reg.Gather()
		n := 0
		for _, mf := range mfs {
			n += len(mf.GetMetric())
		}
		return n
	}
	base := countSeries() // series made in advance, with fixed labels
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
	ctx := context.Background()
	q, err := NewQueue(ctx, nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inv := newInvoker(func(InvokeRequest, int) InvokeResult {
		return InvokeResult{StatusCode: 404, Payload: []byte(`{"Type":"User","message":"Function not found"}`)}
	})
	dst := NewDeliverer(q, nil)
	defer dst.Close()
	w := NewWorkers(q, inv, configs(map[string]Config{}), dst, WorkerOptions{
		Concurrency: 8, AckWait: 5 * time.Second, ShutdownGrace: time.Second, Retry: fastRetry(), Log: testr.New(t), Metrics: m,
	})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	defer func() { cancel(); <-done }()

	const n = 30
	for i := 0; i < n; i++ {
		if _, err := q.Enqueue(ctx, Event{Namespace: fmt.Sprintf("ns-%x", rand.Uint64()), Function: fmt.Sprintf("fn-%x", rand.Uint64()), Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	dropped := func() (series int, total float64) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "klambda_async_events_dropped_total" {
				for _, s := range mf.GetMetric() {
					series++
					total += s.GetCounter().GetValue()
				}
			}
		}
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, total := dropped(); total >= n {
			break
		}
		if time.Now().After(deadline) {
			_, total := dropped()
			t.Fatalf("only %v of %d events for unknown functions were dropped", total, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if added := countSeries() - base; added > 4 {
		t.Fatalf("%d events for made-up functions made %d series", n, added)
	}
}
