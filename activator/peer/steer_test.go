package peer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/invoke"
)

// steerConnection is one caller connection through s's Handler: each call serves one
// request, whose handler runs route (nil: answered without the Router), and reports
// whether the answer closes the connection.
func steerConnection(s *Steering) func(route func(ctx context.Context)) bool {
	ctx := s.ConnContext(context.Background(), nil)
	return func(route func(ctx context.Context)) bool {
		h := s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if route != nil {
				route(r.Context())
			}
			w.WriteHeader(http.StatusOK)
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil).WithContext(ctx))
		return rec.Header().Get("Connection") == "close"
	}
}

func TestSteeringClosesOnlyAConnectionForwardedTwiceToTheSameOwner(t *testing.T) {
	var closes atomic.Int64
	s := NewSteering(1000, 1000, func() { closes.Add(1) })
	to := func(owner string) func(context.Context) { return func(ctx context.Context) { s.routed(ctx, owner) } }
	for _, tc := range []struct {
		name  string
		steps []func(context.Context)
		want  []bool
	}{
		{"forwarded twice to one owner", []func(context.Context){to("a"), to("a")}, []bool{false, true}},
		{"owners alternate (several namespaces)", []func(context.Context){to("a"), to("b"), to("a"), to("b"), to("a")}, []bool{false, false, false, false, false}},
		{"served here in between", []func(context.Context){to("a"), to(""), to("a"), to(""), to("a")}, []bool{false, false, false, false, false}},
		{"served here only", []func(context.Context){to(""), to(""), to("")}, []bool{false, false, false}},
		{"a refusal in between (no Router)", []func(context.Context){to("a"), nil, to("a"), nil, to("a")}, []bool{false, false, false, false, false}},
		{"moves on to another owner", []func(context.Context){to("a"), to("b"), to("b")}, []bool{false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := closes.Load()
			serve := steerConnection(s)
			var n int64
			for i, step := range tc.steps {
				if got := serve(step); got != tc.want[i] {
					t.Fatalf("request %d: close %v, want %v", i, got, tc.want[i])
				} else if got {
					n++
				}
			}
			if closes.Load()-before != n {
				t.Fatalf("closes counted %d, answered %d", closes.Load()-before, n)
			}
		})
	}
	// A request not served through the Handler (an async worker's) and a nil Steering
	// change nothing.
	s.routed(context.Background(), "a")
	(*Steering)(nil).routed(context.Background(), "a")
}

func TestSteeringClosesWithinItsBudget(t *testing.T) {
	var closes atomic.Int64
	s := NewSteering(1, 2, func() { closes.Add(1) }) // 2 at once, then one a second
	to := func(ctx context.Context) { s.routed(ctx, "a") }
	closed := 0
	for range 5 {
		serve := steerConnection(s)
		serve(to)
		if serve(to) {
			closed++
		}
	}
	if closed != 2 || closes.Load() != 2 {
		t.Fatalf("%d connections closed (%d counted), want the burst of 2", closed, closes.Load())
	}
	// A connection left open keeps being a candidate: the next token closes it.
	serve := steerConnection(s)
	serve(to)
	deadline := time.Now().Add(3 * time.Second)
	for !serve(to) {
		if time.Now().After(deadline) {
			t.Fatal("no close once the budget had refilled")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The Router tells the Steering where each request went: closes follow the owner's
// answers (successes and its error answers), not this replica's own errors, local runs,
// or a namespace without an owner.
func TestRouterSteersAfterTheOwnersAnswersOnly(t *testing.T) {
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, &fakeCore{}, &owned)
	addr := strings.TrimPrefix(s.URL, "http://")
	st := NewSteering(1000, 1000, nil)
	o := &owns{}
	o.owner.Store(addr)
	local := &fakeCore{}
	var forwarded atomic.Int64
	r := &Router{Local: local, Ownership: o, Client: client("peer-token"), Wait: 0, Retry: time.Millisecond, Steer: st,
		Forwarded: func() { forwarded.Add(1) }}
	call := func(in invoke.Input) func(context.Context) {
		return func(ctx context.Context) {
			out, err := r.Invoke(ctx, &in)
			if err == nil && out.Body != nil {
				out.Close()
			}
		}
	}
	echo := call(invoke.Input{Namespace: "a", Function: "echo", InvocationType: invoke.RequestResponse, Payload: []byte(`1`)})
	throttled := call(invoke.Input{Namespace: "a", Function: "throttled", InvocationType: invoke.RequestResponse})
	bad := call(invoke.Input{Namespace: "a", Function: "echo", InvocationType: invoke.RequestResponse, TraceID: "x\ny"})

	serve := steerConnection(st)
	if serve(echo) || !serve(echo) {
		t.Fatal("two answers forwarded to the owner: want the second to close")
	}
	serve = steerConnection(st)
	if serve(throttled) || !serve(throttled) {
		t.Fatal("two error answers of the owner: want the second to close")
	}
	serve = steerConnection(st)
	if closesAny(serve, bad, 3) {
		t.Fatal("closed after this replica's own error")
	}
	serve = steerConnection(st)
	serve(echo)
	here := func(ctx context.Context) { o.mine.Store(true); echo(ctx); o.mine.Store(false) }
	if serve(here) || serve(echo) {
		t.Fatal("closed although the previous request was served here")
	}
	o.owner.Store("")
	serve = steerConnection(st)
	if closesAny(serve, echo, 3) {
		t.Fatal("closed while the owner is unknown")
	}
	if len(local.runs()) != 1 {
		t.Fatalf("ran %d here, want 1", len(local.runs()))
	}
	if forwarded.Load() != 6 { // 2 echo, 2 throttled, 2 echo around the local one
		t.Fatalf("%d counted forwarded, want the 6 the owner answered", forwarded.Load())
	}
}

// closesAny serves n requests running route and reports whether one closed.
func closesAny(serve func(func(context.Context)) bool, route func(context.Context), n int) bool {
	closed := false
	for range n {
		closed = serve(route) || closed
	}
	return closed
}
