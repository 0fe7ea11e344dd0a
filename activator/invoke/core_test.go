package invoke_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func input(fn string) *invoke.Input {
	return &invoke.Input{Namespace: testrig.Namespace, Function: fn, Payload: []byte(`{"a":1}`)}
}

// wantCoreError checks that err is the *invoke.Error of Lambda's type, status and reason.
func wantCoreError(t *testing.T, out *invoke.Output, err error, status int, typ, reason string) {
	t.Helper()
	var e *invoke.Error
	if out != nil || !errors.As(err, &e) || e.Status != status || e.Type != typ || e.Reason != reason {
		t.Fatalf("got %+v, %v; want %d %s reason %q", out, err, status, typ, reason)
	}
}

func readAll(t *testing.T, out *invoke.Output) string {
	t.Helper()
	defer out.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCoreRunsAndStreamsTheAnswer(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	shims := r.Environments("f", contract.Latest, 1)
	in := input("f")
	in.LogTail, in.ClientContext, in.TraceID = true, "e30=", "Root=1-abc"
	out, err := r.Core.Invoke(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	// The environment is held until the body is closed.
	if st := r.Dispatcher.Stats(); st[0].InFlight != 1 {
		t.Fatalf("in flight before Close: %+v", st)
	}
	if out.StatusCode != 200 || out.ExecutedVersion != contract.Latest || out.FunctionError != "" || out.LogResult == "" ||
		out.RequestID == "" || out.ContentLength != int64(len(`{"a":1}`)) || readAll(t, out) != `{"a":1}` {
		t.Fatalf("%+v", out)
	}
	if st := r.Dispatcher.Stats(); st[0].InFlight != 0 {
		t.Fatalf("in flight after Close: %+v", st)
	}
	out.Close() // a second Close does nothing
	h := shims[0].LastHeader
	if h.Get(contract.HeaderRequestID) != out.RequestID || h.Get(contract.HeaderClientContext) != "e30=" ||
		h.Get(contract.HeaderTraceID) != "Root=1-abc" || h.Get(contract.HeaderLogType) != contract.LogTypeTail {
		t.Fatalf("shim saw %v", h)
	}

	// A function error is an Output, not an error.
	in = input("f")
	in.Payload = []byte(`{"fail":"boom"}`)
	out, err = r.Core.Invoke(context.Background(), in)
	if err != nil || out.FunctionError != "Unhandled" || !strings.Contains(readAll(t, out), "boom") {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestCoreRequestIDSuppliedOrGenerated(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	shims := r.Environments("f", contract.Latest, 1)
	in := input("f")
	in.RequestID = "evt-42"
	out, err := r.Core.Invoke(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	if out.RequestID != "evt-42" || shims[0].LastHeader.Get(contract.HeaderRequestID) != "evt-42" {
		t.Fatalf("supplied id: output %q, shim %q", out.RequestID, shims[0].LastHeader.Get(contract.HeaderRequestID))
	}
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		out, err := r.Core.Invoke(context.Background(), input("f"))
		if err != nil {
			t.Fatal(err)
		}
		out.Close()
		if len(out.RequestID) != 36 || ids[out.RequestID] || shims[0].LastHeader.Get(contract.HeaderRequestID) != out.RequestID {
			t.Fatalf("generated id %q (seen %v)", out.RequestID, ids)
		}
		ids[out.RequestID] = true
	}
}

func TestCoreErrorsAreTyped(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 50 * time.Millisecond})
	defer r.Close()
	r.Function("f", -1, 1)
	r.Environments("f", contract.Latest, 1)
	r.Function("cold", -1, 0) // no environment
	r.PendingFunction("pending")
	ctx := context.Background()
	with := func(fn string, edit func(*invoke.Input)) *invoke.Input {
		in := input(fn)
		edit(in)
		return in
	}
	for _, c := range []struct {
		name         string
		in           *invoke.Input
		status       int
		typ, message string
	}{
		{"no such function", input("nope"), 404, "ResourceNotFoundException", "function:nope"},
		{"no such qualifier", with("f", func(in *invoke.Input) { in.Qualifier = "7" }), 404, "ResourceNotFoundException", "function:f:7"},
		{"pending", input("pending"), 409, "ResourceConflictException", "Pending"},
		{"not JSON", with("f", func(in *invoke.Input) { in.Payload = []byte(`{no`) }), 400, "InvalidRequestContentException", ""},
		{"too large", with("f", func(in *invoke.Input) {
			in.Payload = []byte(`"` + strings.Repeat("x", contract.MaxSyncPayload) + `"`)
		}), 413, "RequestTooLargeException", "6291456"},
		{"invocation type", with("f", func(in *invoke.Input) { in.InvocationType = "Later" }), 400, "ValidationException", "invocationType"},
		{"event without queue", with("f", func(in *invoke.Input) { in.InvocationType = invoke.Event }), 400, "InvalidParameterValueException", "not enabled"},
		{"no environment", input("cold"), 500, "ServiceException", "became ready"},
	} {
		out, err := r.Core.Invoke(ctx, c.in)
		wantCoreError(t, out, err, c.status, c.typ, "")
		if !strings.Contains(err.Error(), c.message) {
			t.Errorf("%s: %v, want a message with %q", c.name, err, c.message)
		}
	}

	// An Event takes its request id from the queue, and the async payload limit.
	r.Core.Async = &fakeQueue{}
	out, err := r.Core.Invoke(ctx, with("f", func(in *invoke.Input) { in.InvocationType, in.RequestID = invoke.Event, "mine" }))
	wantCoreError(t, out, err, 400, "InvalidParameterValueException", "")
	out, err = r.Core.Invoke(ctx, with("f", func(in *invoke.Input) {
		in.InvocationType, in.Payload = invoke.Event, []byte(`"`+strings.Repeat("x", contract.MaxAsyncPayload)+`"`)
	}))
	wantCoreError(t, out, err, 413, "RequestTooLargeException", "")
	out, err = r.Core.Invoke(ctx, with("f", func(in *invoke.Input) { in.InvocationType = invoke.Event }))
	if err != nil || out.StatusCode != 202 || out.RequestID != "req-1" || out.Body != nil {
		t.Fatalf("event: %+v %v", out, err)
	}
	// DryRun: the version it would run, nothing run.
	out, err = r.Core.Invoke(ctx, with("f", func(in *invoke.Input) { in.InvocationType, in.Qualifier = invoke.DryRun, "1" }))
	if err != nil || out.StatusCode != 204 || out.ExecutedVersion != "1" || out.Body != nil {
		t.Fatalf("dry run: %+v %v", out, err)
	}

	// An environment that refuses our secret is our fault: ServiceException.
	r.Dispatcher.SetEnvironments(keyOf("cold", contract.Latest),
		[]dispatch.Environment{{Name: "x", Addr: r.Shims[keyOf("f", contract.Latest)][0].Addr(), Secret: "wrong"}})
	out, err = r.Core.Invoke(ctx, input("cold"))
	wantCoreError(t, out, err, 500, "ServiceException", "")
}

func TestCoreThrottlesWithLambdasReasons(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: time.Second})
	defer r.Close()
	r.Function("reserved", 1, 0)
	r.Environments("reserved", contract.Latest, 2)
	r.Function("shared", -1, 0)
	r.Environments("shared", contract.Latest, 2)
	ctx := context.Background()

	held, err := r.Core.Invoke(ctx, input("reserved"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Core.Invoke(ctx, input("reserved"))
	wantCoreError(t, out, err, http.StatusTooManyRequests, "TooManyRequestsException", contract.ReasonReservedConcurrency)
	held.Close()

	// The namespace limit is the dispatcher's: 2, of which "reserved" keeps 1.
	r.Dispatcher.SetNamespaceLimit(2, r.Table)
	held, err = r.Core.Invoke(ctx, input("shared"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = r.Core.Invoke(ctx, input("shared"))
	wantCoreError(t, out, err, http.StatusTooManyRequests, "TooManyRequestsException", contract.ReasonAccountConcurrency)
	held.Close()
	if out, err = r.Core.Invoke(ctx, input("shared")); err != nil {
		t.Fatalf("after the release: %v", err)
	}
	out.Close()
}

// The call to the environment is bounded by the function's timeout plus ShimGrace (the
// caller's own context aside): an environment that does not answer by then is an error.
func TestCoreBoundsTheShimCallByTheTimeoutAndGrace(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: "slow"}}
	f.Spec.Timeout = 1
	f.Status.State = lambdav1alpha1.StateActive
	r.Table.SetFunction(f)
	r.Core.ShimGrace = 200 * time.Millisecond
	r.Environments("slow", contract.Latest, 1)
	in := input("slow")
	in.Payload = []byte(`{"sleep_ms":2500}`)
	start := time.Now()
	out, err := r.Core.Invoke(context.Background(), in)
	took := time.Since(start)
	wantCoreError(t, out, err, 500, "ServiceException", "")
	if took < 1100*time.Millisecond || took > 2*time.Second {
		t.Fatalf("the call ended after %v, want about 1.2 s (timeout 1 s + grace 0.2 s)", took)
	}
}

// An environment the invocation cannot be sent to (its connection refused, as a
// NetworkPolicy's REJECT or a restarting container answers) costs the caller nothing:
// nothing reached a shim, so the invocation goes to another environment.
func TestCoreSendsAnUnreachableEnvironmentsInvocationToAnother(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 5 * time.Second})
	defer r.Close()
	r.Function("f", -1, 0)
	live := r.Environments("f", contract.Latest, 1)[0]
	r.Endpoints("f", contract.Latest, refusedAddr(t), live.Addr())
	ctx := context.Background()

	// Two at once: one of them meets the unreachable environment first, and waits for
	// the live one, which the other holds for 300 ms.
	first, err := r.Core.Invoke(ctx, input("f"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		out, err := r.Core.Invoke(ctx, input("f"))
		if err == nil {
			if b := readAll(t, out); b != `{"a":1}` {
				err = errors.New("second answer " + b)
			}
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if b := readAll(t, first); b != `{"a":1}` {
		t.Fatalf("first answer %q", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := live.Calls.Load(); n != 2 {
		t.Fatalf("the live environment ran %d invocations, want 2", n)
	}
}

// The only environment refuses connections for a while (a specialized pool pod whose
// NetworkPolicy has not caught up): the invocation runs there once it answers, within
// the wait deadline, instead of failing with "could not be reached".
func TestCoreWaitsForAnEnvironmentThatRefusesForAWhile(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer r.Close()
	r.Function("f", -1, 0)
	addr := refusedAddr(t)
	r.Endpoints("f", contract.Latest, addr)
	shim := r.Environments("f", "unused", 1)[0] // a fake shim to serve on addr later
	srv := &http.Server{Handler: shim}
	go func() {
		time.Sleep(400 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listening on %s again: %v", addr, err)
			return
		}
		_ = srv.Serve(ln)
	}()
	defer srv.Close()
	start := time.Now()
	out, err := r.Core.Invoke(context.Background(), input("f"))
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, out); b != `{"a":1}` {
		t.Fatalf("answer %q", b)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("answered after %v, before the environment listened", took)
	}
}

// refusedAddr is a loopback address where nothing listens (connections are refused).
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// An activator that has not fed its router yet (informers not synced: a container
// restarted under endpoints that still name its pod) must not answer 404 for a function
// that exists: the invocation waits until the router is synced, then runs; one still
// waiting at the wait deadline is a ServiceException (retryable), never a 404.
func TestCoreWaitsForTheRouterToSync(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 2 * time.Second})
	defer r.Close()
	synced := make(chan struct{})
	r.Core.Synced = synced
	type result struct {
		out *invoke.Output
		err error
	}
	got := make(chan result, 2)
	for _, typ := range []string{invoke.RequestResponse, invoke.DryRun} {
		go func() {
			in := input("f")
			in.InvocationType = typ
			out, err := r.Core.Invoke(context.Background(), in)
			got <- result{out, err}
		}()
	}
	select {
	case res := <-got:
		t.Fatalf("answered before the router was synced: %+v %v", res.out, res.err)
	case <-time.After(200 * time.Millisecond):
	}
	// The informers' first list reaches the router, then the activator says it is synced.
	r.Function("f", -1, 0)
	r.Environments("f", contract.Latest, 1)
	close(synced)
	for range 2 {
		res := <-got
		if res.err != nil {
			t.Fatalf("after the sync: %v", res.err)
		}
		if res.out.StatusCode == http.StatusOK {
			if b := readAll(t, res.out); b != `{"a":1}` {
				t.Fatalf("answer %q", b)
			}
		} else if res.out.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", res.out.StatusCode)
		}
	}

	// Never synced within the wait deadline: a ServiceException, not a 404.
	r2 := testrig.New(testrig.Options{WaitDeadline: 100 * time.Millisecond})
	defer r2.Close()
	r2.Core.Synced = make(chan struct{})
	out, err := r2.Core.Invoke(context.Background(), input("f"))
	wantCoreError(t, out, err, http.StatusInternalServerError, "ServiceException", "")
}
