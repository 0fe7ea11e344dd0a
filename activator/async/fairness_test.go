package async

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestFloodOfOneFunctionDoesNotDelayAnother: function "flood" has 120 events of 200 ms
// each waiting when function "other" gets one event; with 8 workers, "other" used to
// wait behind the whole flood (120 × 200 ms / 8 ≈ 3 s); now "flood" holds at most its
// share of the workers and "other" starts at once. The delay is logged
// (go test -v -run TestFloodOfOneFunction).
func TestFloodOfOneFunctionDoesNotDelayAnother(t *testing.T) {
	const n, slow, workers = 120, 200 * time.Millisecond, 8
	inv := newInvoker(func(req InvokeRequest, _ int) InvokeResult {
		if req.Function == "flood" {
			time.Sleep(slow)
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	e := startEnvWorkers(t, t.TempDir(), inv, configs(map[string]Config{"flood": cfg(0, time.Hour), "other": cfg(0, time.Hour)}), workers)
	for i := 0; i < n; i++ {
		e.enqueue("flood", fmt.Sprint(i))
	}
	// The flood is running.
	deadline := time.Now().Add(10 * time.Second)
	for inv.total() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sent := time.Now()
	id := e.enqueue("other", "{}")
	for len(inv.callTimes(id)) == 0 && time.Since(sent) < 20*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	calls := inv.callTimes(id)
	if len(calls) == 0 {
		t.Fatal("the other function's event never ran")
	}
	delay := calls[0].Sub(sent)
	inv.mu.Lock()
	floodRan := len(inv.order) - 1
	inv.mu.Unlock()
	t.Logf("other function's event started %v after it was accepted (%d of %d flood events had started; %d workers, %v each)",
		delay.Round(time.Millisecond), floodRan, n, workers, slow)
	// Bounded by one flood event's duration plus pulling, not by the flood's length.
	if bound := slow + 500*time.Millisecond; delay > bound {
		t.Errorf("the other function's event waited %v behind the flood; want at most %v", delay.Round(time.Millisecond), bound)
	}
}

// TestLongEventsHoldOnlyTheirFunctionsShare: a function's events that run for a long time
// (15 minutes in Lambda; here until the test releases them) hold at most its share of the
// workers, so another function's event runs meanwhile. Before, they held every worker and
// the other event waited for them.
func TestLongEventsHoldOnlyTheirFunctionsShare(t *testing.T) {
	const workers = 4
	release := make(chan struct{})
	var running, most atomic.Int64
	inv := newInvoker(func(req InvokeRequest, _ int) InvokeResult {
		if req.Function == "long" {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			running.Add(-1)
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	e := startEnvWorkers(t, t.TempDir(), inv, configs(map[string]Config{"long": cfg(0, time.Hour), "other": cfg(0, time.Hour)}), workers)
	defer close(release)
	for i := 0; i < 20; i++ {
		e.enqueue("long", fmt.Sprint(i))
	}
	time.Sleep(500 * time.Millisecond) // the long events take what they may
	id := e.enqueue("other", "{}")
	deadline := time.Now().Add(3 * time.Second)
	for len(inv.callTimes(id)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(inv.callTimes(id)) == 0 {
		t.Fatalf("the other function's event did not run within 3 s while %d long events held the workers", running.Load())
	}
	if m := most.Load(); m > workers/4 {
		t.Errorf("the long function held %d workers at once; want at most its share, %d", m, workers/4)
	}
}
