package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
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
