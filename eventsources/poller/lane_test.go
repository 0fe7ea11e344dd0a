package poller

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient"
)

// funcInvoker is an Invoker made of a function.
type funcInvoker func(ctx context.Context, req invokeclient.Request) (invokeclient.Response, error)

func (f funcInvoker) Invoke(ctx context.Context, req invokeclient.Request) (invokeclient.Response, error) {
	return f(ctx, req)
}

// A stop that lands right after the function answered must not lose the answer: the batch
// is settled (here: the checkpoint moves) before the poller returns, so a disable right
// after a batch does not make the source redeliver finished records.
func TestAnAnsweredBatchIsSettledWhenThePollerStopsMeanwhile(t *testing.T) {
	src := &memSource{pending: []Message{msg(0, 10), msg(1, 10)}}
	ctx, cancel := context.WithCancel(context.Background())
	inv := funcInvoker(func(context.Context, invokeclient.Request) (invokeclient.Response, error) {
		cancel() // the mapping is disabled while the function answers
		return invokeclient.Response{StatusCode: 200, Payload: []byte(`null`)}, nil
	})
	p := New(Config{Namespace: "ns", Name: "stop", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, src, inv, testr.New(t))
	_ = p.Run(ctx)
	if cp := src.checkpoint(); cp != 1 {
		t.Fatalf("checkpoint %d after the stop, want 1: the answered batch was not settled", cp)
	}
}

// An invocation in flight when the poller stops (its replica shutting down) runs to its
// answer within StopGrace, and the answer is settled before the source closes: the
// partition's next owner neither replays the batch nor invokes the partition while the
// function still runs it.
func TestAnInvocationInFlightFinishesWhenThePollerStops(t *testing.T) {
	src := &memSource{pending: []Message{msg(0, 10), msg(1, 10)}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var invErr error
	inv := funcInvoker(func(ictx context.Context, _ invokeclient.Request) (invokeclient.Response, error) {
		close(started)
		select {
		case <-ictx.Done(): // cut short: the answer would be lost
			invErr = ictx.Err()
			return invokeclient.Response{}, ictx.Err()
		case <-time.After(300 * time.Millisecond): // the function takes a while
		}
		return invokeclient.Response{StatusCode: 200, Payload: []byte(`null`)}, nil
	})
	p := New(Config{Namespace: "ns", Name: "stop", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, src, inv, testr.New(t))
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	<-started
	cancel() // the replica stops while the function runs the batch
	<-done
	if invErr != nil {
		t.Fatalf("the invocation in flight was cut short by the stop: %v", invErr)
	}
	if cp := src.checkpoint(); cp != 1 {
		t.Fatalf("checkpoint %d after the stop, want 1: the finished batch was not settled", cp)
	}
}

// finishOnStop's context ends grace after its parent, or when released.
func TestFinishOnStopEndsAGraceAfterTheStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	inv, finished := finishOnStop(ctx, 50*time.Millisecond)
	defer finished()
	cancel()
	select {
	case <-inv.Done():
		t.Fatal("ended with its parent, not a grace after it")
	case <-time.After(20 * time.Millisecond):
	}
	select {
	case <-inv.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("did not end after the grace")
	}
	inv2, finished2 := finishOnStop(context.Background(), time.Hour)
	finished2()
	if inv2.Err() == nil {
		t.Fatal("still running after it was released")
	}
}

// With a zero window, records fetched while the lane was busy invoking go out together in the
// next batch (up to the batch size), not one batch per poll.
func TestPollsQueuedBehindABusyLaneShareTheNextBatch(t *testing.T) {
	src := &memSource{pending: []Message{msg(0, 10)}}
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]string
	inv := funcInvoker(func(_ context.Context, req invokeclient.Request) (invokeclient.Response, error) {
		var ids []string
		_ = json.Unmarshal(req.Payload, &ids)
		mu.Lock()
		batches = append(batches, ids)
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return invokeclient.Response{StatusCode: 200, Payload: []byte(`null`)}, nil
	})
	p := New(Config{Namespace: "ns", Name: "coalesce", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, src, inv, testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wait(t, "the first batch", func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })
	// Three polls of one record each while the first batch is being invoked.
	for off := int64(1); off <= 3; off++ {
		src.mu.Lock()
		src.pending = append(src.pending, msg(off, 10))
		src.mu.Unlock()
		wait(t, "the poll", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return len(src.pending) == 0 })
	}
	close(release)
	wait(t, "checkpoint 3", func() bool { return src.checkpoint() == 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || len(batches[1]) != 3 {
		t.Fatalf("batches %v, want [[0] [1 2 3]]", batches)
	}
}
