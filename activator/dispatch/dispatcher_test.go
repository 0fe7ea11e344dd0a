package dispatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
)

var key = fnkey.Key{Namespace: "ns", Function: "f", Version: "1"}

// noLimit: no reserved concurrency (and, without SetNamespaceLimit, no namespace limit).
const noLimit = -1

type countingWaker struct{ n atomic.Int32 }

func (w *countingWaker) Wake(fnkey.Key) { w.n.Add(1) }

func envs(names ...string) []Environment {
	var out []Environment
	for _, n := range names {
		out = append(out, Environment{Name: n, Addr: n + ":9000"})
	}
	return out
}

func TestOneInvocationPerEnvironment(t *testing.T) {
	d := New(nil)
	d.SetEnvironments(key, envs("a", "b"))
	var busy sync.Map
	var wg sync.WaitGroup
	var overlaps atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l, err := d.Acquire(ctx, key, noLimit)
			if err != nil {
				t.Error(err)
				return
			}
			if _, loaded := busy.LoadOrStore(l.Env.Name, true); loaded {
				overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			busy.Delete(l.Env.Name)
			l.Release()
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d invocations overlapped on one environment", overlaps.Load())
	}
	if c := d.Concurrency("ns", "f"); c != 0 {
		t.Fatalf("concurrency after all released = %d", c)
	}
}

func TestWaitsForNewEnvironmentAndWakesScaler(t *testing.T) {
	w := &countingWaker{}
	d := New(w)
	done := make(chan *Lease)
	go func() {
		l, err := d.Acquire(context.Background(), key, noLimit)
		if err != nil {
			t.Error(err)
		}
		done <- l
	}()
	deadline := time.Now().Add(2 * time.Second)
	for w.n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if w.n.Load() == 0 {
		t.Fatal("scaler was not woken")
	}
	if s := d.Stats(); len(s) != 1 || s[0].Waiting != 1 {
		t.Fatalf("stats %+v", s)
	}
	d.SetEnvironments(key, envs("a")) // scale-up arrives
	l := <-done
	if l.Env.Name != "a" || !l.FirstUse || l.Waited <= 0 {
		t.Fatalf("lease %+v", l)
	}
	l.Release()
	l2, _ := d.Acquire(context.Background(), key, noLimit)
	if l2.FirstUse {
		t.Error("second use reported as first")
	}
	l2.Release()
}

func TestWaitDeadline(t *testing.T) {
	d := New(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Acquire(ctx, key, noLimit)
	if !errors.Is(err, ErrNoEnvironment) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("waited too long")
	}
	if c := d.Concurrency("ns", "f"); c != 0 {
		t.Fatalf("a timed-out waiter still counts: %d", c)
	}
	// The environment that arrives later is idle, not given to the gone waiter.
	d.SetEnvironments(key, envs("a"))
	l, err := d.Acquire(context.Background(), key, noLimit)
	if err != nil || l.Env.Name != "a" {
		t.Fatalf("%v %+v", err, l)
	}
}

func TestCallerCancelWhileWaiting(t *testing.T) {
	d := New(nil)
	d.SetEnvironments(key, envs("a"))
	l, _ := d.Acquire(context.Background(), key, noLimit)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := d.Acquire(ctx, key, noLimit); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	l.Release()
	if s := d.Stats(); s[0].Waiting != 0 || s[0].InFlight != 0 {
		t.Fatalf("stats after cancel %+v", s)
	}
}

// A lease is held until Release: the environment stays busy after the client is gone
// and is free again only then.
func TestReleaseFreesEnvironment(t *testing.T) {
	d := New(nil)
	d.SetEnvironments(key, envs("a"))
	l, _ := d.Acquire(context.Background(), key, noLimit)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Acquire(ctx, key, noLimit); !errors.Is(err, ErrNoEnvironment) {
		t.Fatalf("busy environment handed out: %v", err)
	}
	l.Release()
	l.Release() // idempotent
	l2, err := d.Acquire(context.Background(), key, noLimit)
	if err != nil || l2.Env.Name != "a" {
		t.Fatal(err)
	}
	if c := d.Concurrency("ns", "f"); c != 1 {
		t.Fatalf("double release miscounted: %d", c)
	}
}

func TestReservedConcurrencyThrottlesAtOnce(t *testing.T) {
	const n, k = 4, 3
	d := New(nil)
	d.SetEnvironments(key, envs("a", "b", "c", "d"))
	lim := int32(n)
	var throttled, ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	hold := make(chan struct{})
	for i := 0; i < n+k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			l, err := d.Acquire(context.Background(), key, lim)
			var te *ThrottleError
			if errors.As(err, &te) {
				if te.Reason != contract.ReasonReservedConcurrency || time.Since(t0) > 100*time.Millisecond {
					t.Errorf("throttle %v after %v", te, time.Since(t0))
				}
				throttled.Add(1)
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			ok.Add(1)
			<-hold // a slow invocation
			l.Release()
		}()
	}
	close(start)
	deadline := time.Now().Add(2 * time.Second)
	for throttled.Load()+ok.Load() < n+k && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if throttled.Load() != k || ok.Load() != n {
		t.Fatalf("throttled %d, ran %d; want %d and %d", throttled.Load(), ok.Load(), k, n)
	}
}

func TestReservedZeroAndNamespaceLimit(t *testing.T) {
	d := New(nil)
	var te *ThrottleError
	if _, err := d.Acquire(context.Background(), key, 0); !errors.As(err, &te) || te.Reason != contract.ReasonReservedConcurrency {
		t.Fatalf("reserved 0: %v", err)
	}
	d.SetEnvironments(key, envs("a"))
	other := fnkey.Key{Namespace: "ns", Function: "g", Version: "$LATEST"}
	d.SetEnvironments(other, envs("g1"))
	// A namespace limit of 3, of which another function reserves 2: one left to share.
	res := fakeReservations{key.Namespace: 2}
	d.SetNamespaceLimit(3, res)
	if d.NamespaceLimit() != 3 {
		t.Fatalf("NamespaceLimit %d", d.NamespaceLimit())
	}
	const lim = noLimit
	l, err := d.Acquire(context.Background(), key, lim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Acquire(context.Background(), other, lim); !errors.As(err, &te) || te.Reason != contract.ReasonAccountConcurrency {
		t.Fatalf("namespace pool: %v", err)
	}
	l.Release()
	l2, err := d.Acquire(context.Background(), other, lim)
	if err != nil {
		t.Fatal(err)
	}
	// A reservation in the namespace is not drawn from the shared pool.
	l3, err := d.Acquire(context.Background(), key, 1)
	if err != nil {
		t.Fatalf("a function's own reservation: %v", err)
	}
	l2.Release()
	l3.Release()
	// The reservations are read at each Acquire: with 3 reserved, nothing is left.
	res[key.Namespace] = 3
	if _, err := d.Acquire(context.Background(), other, lim); !errors.As(err, &te) || te.Reason != contract.ReasonAccountConcurrency {
		t.Fatalf("namespace pool all reserved: %v", err)
	}
	d.SetNamespaceLimit(-1, res)
	l4, err := d.Acquire(context.Background(), other, lim)
	if err != nil || d.NamespaceLimit() != -1 {
		t.Fatalf("no namespace limit: %v", err)
	}
	l4.Release()
}

// fakeReservations is the reserved concurrency per namespace (router.Table's role).
type fakeReservations map[string]int32

func (f fakeReservations) UnreservedLimit(ns string, limit int32) int32 { return max(0, limit-f[ns]) }

func TestEnvironmentsLeaveAndDrain(t *testing.T) {
	d := New(nil)
	d.SetEnvironments(key, envs("a", "b"))
	l, _ := d.Acquire(context.Background(), key, noLimit) // b (LIFO)
	busy := l.Env.Name
	idle := "a"
	if busy == "a" {
		idle = "b"
	}
	if got := d.Drain(key, []string{"a", "b"}); len(got) != 1 || got[0] != idle {
		t.Fatalf("drained %v, want only the idle %s", got, idle)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Acquire(ctx, key, noLimit); !errors.Is(err, ErrNoEnvironment) {
		t.Fatalf("drained environment handed out: %v", err)
	}
	d.Undrain(key, []string{idle})
	l2, err := d.Acquire(context.Background(), key, noLimit)
	if err != nil || l2.Env.Name != idle {
		t.Fatal(err)
	}
	d.SetEnvironments(key, nil) // both pods gone
	l.Release()
	l2.Release()
	if s := d.Stats(); len(s[0].Environments) != 0 {
		t.Fatalf("gone environments still listed: %+v", s)
	}
}
