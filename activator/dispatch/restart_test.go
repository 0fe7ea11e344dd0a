package dispatch_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/shimclient"
	"github.com/klambda/klambda/activator/testrig"
)

func invoke(t *testing.T, url, fn, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/2015-03-31/functions/"+fn+"/invocations", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func checker() dispatch.StateChecker {
	cl := shimclient.New()
	return func(ctx context.Context, e dispatch.Environment) (bool, error) { return cl.Busy(ctx, e.Addr) }
}

func busyElsewhere(d *dispatch.Dispatcher, k fnkey.Key) int {
	for _, s := range d.Stats() {
		if s.Key == k {
			return s.BusyElsewhere
		}
	}
	return 0
}

// After an activator restart a pod may still run the previous activator's invocation: its
// shim answers 429. The request moves to another environment and succeeds (it was a 500
// ServiceException), the busy one is left alone while busy, and it serves again once its
// shim says it is free.
func TestShimBusyMovesRequestToAnotherEnvironment(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 2 * time.Second})
	defer r.Close()
	r.Dispatcher.Check = checker()
	r.Dispatcher.RecheckMin, r.Dispatcher.RecheckMax = 10*time.Millisecond, 20*time.Millisecond
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 2)
	held := shims[1] // the environment the dispatcher hands out first (most recently added)
	held.Hold()
	for i := 0; i < 4; i++ {
		if st, body := invoke(t, r.URL(), "f", `{"n":1}`); st != 200 || body != `{"n":1}` {
			t.Fatalf("call %d: %d %s", i, st, body)
		}
	}
	if n := held.Overlaps.Load(); n != 1 {
		t.Fatalf("the busy environment was sent %d invocations; want 1 (then it counts as busy)", n)
	}
	if shims[0].Calls.Load() != 4 {
		t.Fatalf("the free environment ran %d calls, want 4", shims[0].Calls.Load())
	}
	k := fnkey.Key{Namespace: testrig.Namespace, Function: "f", Version: "$LATEST"}
	if n := busyElsewhere(r.Dispatcher, k); n != 1 {
		t.Fatalf("BusyElsewhere = %d, want 1 (the scaler counts it as demand)", n)
	}
	held.Free()
	deadline := time.Now().Add(2 * time.Second)
	for busyElsewhere(r.Dispatcher, k) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the environment did not come back once its shim was free")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, _ := invoke(t, r.URL(), "f", `{}`); st != 200 || held.Calls.Load() != 1 {
		t.Fatalf("after it was freed: status %d, calls on it %d (want it reused first)", st, held.Calls.Load())
	}
}

// With the only environment busy elsewhere, the request waits for an environment (as when
// there is none idle) instead of failing: here it gets the same one once it is free.
func TestShimBusyOnlyEnvironmentWaits(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 3 * time.Second})
	defer r.Close()
	r.Dispatcher.Check = checker()
	r.Dispatcher.RecheckMin, r.Dispatcher.RecheckMax = 10*time.Millisecond, 20*time.Millisecond
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 1)
	shims[0].Hold()
	go func() { time.Sleep(300 * time.Millisecond); shims[0].Free() }()
	start := time.Now()
	st, body := invoke(t, r.URL(), "f", `{"x":2}`)
	if st != 200 || body != `{"x":2}` {
		t.Fatalf("%d %s", st, body)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("answered after %v, before the environment was free", time.Since(start))
	}
	if shims[0].Calls.Load() != 1 {
		t.Fatalf("calls %d", shims[0].Calls.Load())
	}
}

// The busy view is rebuilt from the shims as environments that predate the activator join:
// one whose shim runs an invocation is busy elsewhere before any request is sent to it.
func TestUnverifiedEnvironmentCheckedAsItJoins(t *testing.T) {
	busy, idle := fakeshim.Start("", "$LATEST"), fakeshim.Start("", "$LATEST")
	defer busy.Close()
	defer idle.Close()
	busy.Hold()
	d := dispatch.New(nil)
	d.Check = checker()
	d.RecheckMin = time.Hour
	k := fnkey.Key{Namespace: "ns", Function: "f", Version: "$LATEST"}
	d.SetEnvironments(k, []dispatch.Environment{
		{Name: "idle", Addr: idle.Addr(), Unverified: true},
		{Name: "busy", Addr: busy.Addr(), Unverified: true},
	})
	deadline := time.Now().Add(2 * time.Second)
	for busyElsewhere(d, k) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the environment busy at its shim was not marked busy elsewhere")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		l, err := d.Acquire(context.Background(), k, -1)
		if err != nil || l.Env.Name != "idle" {
			t.Fatalf("lease %+v %v: want the idle environment", l, err)
		}
		l.Release()
	}
	if busy.Overlaps.Load() != 0 {
		t.Fatal("an invocation was sent to the busy environment")
	}
}
