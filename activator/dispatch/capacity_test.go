package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
)

var unschedulable = &CapacityError{Reason: contract.ReasonAccountConcurrency, Cause: CauseUnschedulable, Detail: "0/3 nodes are available"}

// waitFor starts n requests that wait for an environment of key, one after the other (so
// their order in the queue is known), and answers where each one's result arrives.
func waitFor(t *testing.T, d *Dispatcher, n int, lim int32) []chan error {
	t.Helper()
	out := make([]chan error, n)
	for i := range out {
		out[i] = make(chan error, 1)
		go func(ch chan error) {
			l, err := d.AcquireWithin(context.Background(), key, lim, 10*time.Second)
			if err == nil {
				l.Release()
			}
			ch <- err
		}(out[i])
		waiting(t, d, i+1)
	}
	return out
}

// waiting waits until key has n requests waiting.
func waiting(t *testing.T, d *Dispatcher, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, s := range d.Stats() {
			if s.Key == key && s.Waiting == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d waiting requests", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func result(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no result within 5 s")
		return nil
	}
}

func TestUnplaceableRefusesWaitersBeyondStarting(t *testing.T) {
	d := New(nil)
	d.SetNamespaceLimit(10, fakeReservations{})
	lim := int32(noLimit)
	ch := waitFor(t, d, 3, lim)
	// One environment is placed and starting, the next cannot be placed: the two newest
	// waiters are refused at once, the oldest keeps waiting for the starting one.
	d.SetPlacement(key, 1, unschedulable)
	for _, c := range ch[1:] {
		var ce *CapacityError
		if err := result(t, c); !errors.As(err, &ce) || ce.Cause != CauseUnschedulable || ce.Reason != contract.ReasonAccountConcurrency {
			t.Fatalf("waiter beyond the starting environment: %v, want the unschedulable CapacityError", err)
		}
	}
	waiting(t, d, 1)
	// A new request finds no idle environment and the starting one spoken for: refused at once.
	if _, err := d.AcquireWithin(context.Background(), key, lim, 10*time.Second); !errors.Is(err, error(unschedulable)) {
		t.Fatalf("new request while unplaceable: %v", err)
	}
	// Counts of refused requests are undone: only the waiting one counts, also in the namespace.
	if c := d.Concurrency("ns", "f"); c != 1 {
		t.Fatalf("concurrency = %d, want the 1 waiting", c)
	}
	if n := d.ns["ns"].Load(); n != 1 {
		t.Fatalf("namespace count = %d, want 1", n)
	}
	// The starting environment arrives: the oldest waiter gets it.
	d.SetEnvironments(key, envs("a"))
	d.SetPlacement(key, 0, unschedulable)
	if err := result(t, ch[0]); err != nil {
		t.Fatalf("oldest waiter: %v", err)
	}
	// An idle environment still serves while the cluster is full.
	l, err := d.AcquireWithin(context.Background(), key, lim, time.Second)
	if err != nil {
		t.Fatalf("idle environment while unplaceable: %v", err)
	}
	l.Release()
	if c := d.Concurrency("ns", "f"); c != 0 {
		t.Fatalf("concurrency = %d after all done", c)
	}
}

func TestPlacementClearedRequestsWaitAgain(t *testing.T) {
	d := New(nil)
	d.SetPlacement(key, 0, unschedulable)
	if _, err := d.AcquireWithin(context.Background(), key, noLimit, time.Second); !errors.As(err, new(*CapacityError)) {
		t.Fatalf("while unplaceable: %v", err)
	}
	d.SetPlacement(key, 0, nil)
	ch := waitFor(t, d, 1, noLimit)
	d.SetEnvironments(key, envs("a"))
	if err := result(t, ch[0]); err != nil {
		t.Fatalf("after the condition cleared: %v", err)
	}
}

func TestRefuseNewestWaiters(t *testing.T) {
	d := New(nil)
	ch := waitFor(t, d, 4, noLimit)
	rate := &CapacityError{Reason: contract.ReasonFunctionRate, Cause: CauseScalingRate}
	if n := d.Refuse(key, 2, rate); n != 2 {
		t.Fatalf("refused %d, want 2", n)
	}
	for _, c := range ch[2:] {
		if err := result(t, c); !errors.Is(err, error(rate)) {
			t.Fatalf("newest waiter: %v, want the rate's CapacityError", err)
		}
	}
	waiting(t, d, 2)
	// More than are waiting: only those waiting.
	if n := d.Refuse(key, 5, rate); n != 2 {
		t.Fatalf("refused %d, want the 2 waiting", n)
	}
	for _, c := range ch[:2] {
		if err := result(t, c); !errors.Is(err, error(rate)) {
			t.Fatalf("oldest waiters: %v", err)
		}
	}
	if c := d.Concurrency("ns", "f"); c != 0 {
		t.Fatalf("concurrency = %d, want 0", c)
	}
	// Not refused while no placement problem is known: a new request waits.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Acquire(ctx, key, noLimit); !errors.Is(err, ErrNoEnvironment) {
		t.Fatalf("new request after Refuse: %v, want it to wait", err)
	}
}
