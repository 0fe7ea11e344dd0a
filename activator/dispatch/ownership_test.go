package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
)

// Giving a namespace up: new requests are refused at once, waiting ones are refused
// (their callers go to the next owner), and Give returns only once the invocation in
// flight has released its environment. Other namespaces are not touched.
func TestGiveRefusesWaitersAndWaitsForInvocations(t *testing.T) {
	d := New(nil)
	var owned atomic.Bool
	owned.Store(true)
	d.SetOwnership(func(ns string) bool { return ns != "ns" || owned.Load() })
	d.SetEnvironments(key, envs("a"))
	other := fnkey.Key{Namespace: "other", Function: "f", Version: "1"}
	d.SetEnvironments(other, envs("b"))
	ctx := context.Background()
	running, err := d.Acquire(ctx, key, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := d.Acquire(ctx, key, noLimit)
		waited <- err
	}()
	for d.Concurrency("ns", "f") != 2 {
		time.Sleep(time.Millisecond)
	}
	owned.Store(false) // the ownership stops reporting the shard, then calls Give
	gave := make(chan error, 1)
	go func() { gave <- d.Give(ctx, func(ns string) bool { return ns == "ns" }) }()
	if err := <-waited; !errors.Is(err, ErrNotOwner) {
		t.Errorf("the waiting request got %v, want ErrNotOwner", err)
	}
	if _, err := d.Acquire(ctx, key, noLimit); !errors.Is(err, ErrNotOwner) {
		t.Errorf("a new request got %v, want ErrNotOwner", err)
	}
	select {
	case err := <-gave:
		t.Fatalf("Give returned (%v) while an invocation still held an environment", err)
	case <-time.After(50 * time.Millisecond):
	}
	if l, err := d.Acquire(ctx, other, noLimit); err != nil {
		t.Errorf("another namespace: %v", err)
	} else {
		l.Release()
	}
	running.Release()
	select {
	case err := <-gave:
		if err != nil {
			t.Errorf("Give: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Give did not return after the last invocation ended")
	}
	if n := d.Concurrency("ns", "f"); n != 0 {
		t.Errorf("concurrency %d after the handoff, want 0", n)
	}
	// Give's context bounds the wait.
	owned.Store(true)
	l, _ := d.Acquire(ctx, key, noLimit)
	owned.Store(false)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := d.Give(short, func(ns string) bool { return ns == "ns" }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Give with an invocation that never ends: %v, want the context's deadline", err)
	}
	l.Release()
}

// Taking a namespace: its idle environments are asked whether they run an invocation
// (the previous owner's); one that does leaves rotation until its shim is free.
func TestTakeChecksTheEnvironmentsOfTheNamespace(t *testing.T) {
	d := New(nil)
	d.RecheckMin, d.RecheckMax = 5*time.Millisecond, 10*time.Millisecond
	var busyA atomic.Bool
	busyA.Store(true)
	var asked atomic.Int32
	d.Check = func(_ context.Context, e Environment) (bool, error) {
		asked.Add(1)
		return e.Name == "a" && busyA.Load(), nil
	}
	d.SetEnvironments(key, envs("a", "b"))
	d.Take(func(ns string) bool { return ns == "ns" })
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := d.Stats()
		if len(st) == 1 && st[0].BusyElsewhere == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("environment a, busy at its shim, is not out of rotation: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	l, err := d.Acquire(ctx, key, noLimit)
	if err != nil || l.Env.Name != "b" {
		t.Fatalf("acquired %+v (%v), want b while a runs the previous owner's invocation", l, err)
	}
	busyA.Store(false)
	l2, err := d.AcquireWithin(context.Background(), key, noLimit, 2*time.Second)
	if err != nil || l2.Env.Name != "a" {
		t.Fatalf("acquired %+v (%v), want a once its shim is free", l2, err)
	}
	l.Release()
	l2.Release()
}

// A namespace just taken (a rollout's hand-over): the requests its shard held back arrive
// together, more at once than the function's reserved concurrency, though they came over
// the hand-over at a rate the function serves easily. Within the grace they wait for the
// environment and all run (never two at once in it); past the grace a request at the limit
// is throttled at once again, and one that waits through the grace's end is throttled then.
func TestTakeLetsTheHandOverBurstWaitWithinTheLimit(t *testing.T) {
	d := New(nil)
	d.HandoverGrace = 500 * time.Millisecond
	d.SetEnvironments(key, envs("a")) // one environment; reserved concurrency 2
	const reserved, burst = 2, 8
	d.Take(func(ns string) bool { return ns == "ns" })
	ctx := context.Background()
	var running, most, counted atomic.Int32
	sampling := make(chan struct{})
	go func() { // the function's concurrency count never passes the limit
		for {
			select {
			case <-sampling:
				return
			default:
			}
			if n := int32(d.Concurrency("ns", "f")); n > counted.Load() {
				counted.Store(n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	errs := make(chan error, burst)
	for range burst {
		go func() {
			l, err := d.AcquireWithin(ctx, key, reserved, time.Second)
			if err == nil {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				running.Add(-1)
				l.Release()
			}
			errs <- err
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Errorf("a request of the hand-over's burst: %v, want it run", err)
		}
	}
	close(sampling)
	if most.Load() != 1 {
		t.Errorf("%d invocations ran at once in the one environment", most.Load())
	}
	if counted.Load() > reserved {
		t.Errorf("the function's concurrency reached %d, past its reserved %d", counted.Load(), reserved)
	}
	if n := d.Concurrency("ns", "f"); n != 0 {
		t.Errorf("concurrency %d after the burst, want 0", n)
	}

	// Still within the grace: a request past the limit whose environment never frees is
	// throttled when the grace ends, with Lambda's reason.
	hold1, err := d.Acquire(ctx, key, reserved)
	if err != nil {
		t.Fatal(err)
	}
	hold2done := make(chan error, 1)
	go func() { // waits for the busy environment (within the limit)
		l, err := d.AcquireWithin(ctx, key, reserved, 5*time.Second)
		if err == nil {
			l.Release()
		}
		hold2done <- err
	}()
	for d.Concurrency("ns", "f") != 2 {
		time.Sleep(time.Millisecond)
	}
	var te *ThrottleError
	if _, err := d.AcquireWithin(ctx, key, reserved, 5*time.Second); !errors.As(err, &te) || te.Reason != contract.ReasonReservedConcurrency {
		t.Errorf("past the limit at the grace's end: %v, want the reserved-concurrency throttle", err)
	}
	// After the grace: throttled at once.
	start := time.Now()
	if _, err := d.AcquireWithin(ctx, key, reserved, 5*time.Second); !errors.As(err, &te) || time.Since(start) > 50*time.Millisecond {
		t.Errorf("past the limit after the grace: %v after %v, want a throttle at once", err, time.Since(start))
	}
	hold1.Release()
	if err := <-hold2done; err != nil {
		t.Errorf("the request within the limit: %v", err)
	}
	// Another namespace was never in a grace.
	other := fnkey.Key{Namespace: "other", Function: "f", Version: "1"}
	d.SetEnvironments(other, envs("b"))
	l, _ := d.Acquire(ctx, other, 1)
	if _, err := d.AcquireWithin(ctx, other, 1, time.Second); !errors.As(err, &te) {
		t.Errorf("a namespace not taken: %v, want a throttle at once", err)
	}
	l.Release()
}
