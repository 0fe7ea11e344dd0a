package invokeclient_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

func TestLambdaInvokerAgainstFakeActivator(t *testing.T) {
	testInvoker(t, func(f *invoketest.Server) invokeclient.Invoker { return f.SDKInvoker() })
}

// The lean client sends what the SDK sends and reads the answers alike.
func TestHTTPInvokerAgainstFakeActivator(t *testing.T) {
	testInvoker(t, func(f *invoketest.Server) invokeclient.Invoker { return f.HTTPInvoker() })
}

func testInvoker(t *testing.T, newInvoker func(*invoketest.Server) invokeclient.Invoker) {
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		switch string(c.Payload) {
		case `"fail"`:
			return invoketest.Outcome{FunctionError: "Unhandled", Body: []byte(`{"errorMessage":"boom"}`)}
		case `"throttle"`:
			return invoketest.Outcome{Status: 429}
		case `"down"`:
			return invoketest.Outcome{Status: 503}
		case `"partial"`:
			return invoketest.Outcome{Body: []byte(`{"batchItemFailures":[{"itemIdentifier":"b"}]}`)}
		}
		return invoketest.Outcome{Body: []byte(`{"ok":true}`)}
	})
	defer fake.Close()
	inv := newInvoker(fake)
	known := func(id string) bool { return id == "a" || id == "b" }
	cases := map[string]batch.Outcome{
		`"ok"`:       batch.OutcomeSuccess,
		`"fail"`:     batch.OutcomeFunctionError,
		`"throttle"`: batch.OutcomeThrottled,
		`"down"`:     batch.OutcomeSystemError,
		`"partial"`:  batch.OutcomePartialFailure,
	}
	for payload, want := range cases {
		resp, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: "fn:live", Payload: []byte(payload)})
		got := invokeclient.Classify(resp, err, true, known)
		if got.Outcome != want {
			t.Errorf("%s: got %v (err %v), want %v", payload, got.Outcome, err, want)
		}
	}
	calls := fake.Calls()
	if len(calls) != len(cases) {
		t.Fatalf("%d calls, want %d (the SDK must not retry)", len(calls), len(cases))
	}
	c := calls[0]
	if c.Namespace != "team-a" || c.Function != "fn" || c.Qualifier != "live" || c.InvocationType != "RequestResponse" || c.Token != "test-token" {
		t.Errorf("call %+v", c)
	}
	resp, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: "fn", Payload: []byte(`"fail"`)})
	if err != nil || resp.StatusCode != 200 || resp.FunctionError != "Unhandled" || resp.ExecutedVersion != "$LATEST" || resp.RequestID == "" ||
		string(resp.Payload) != `{"errorMessage":"boom"}` {
		t.Errorf("function error answer %+v, %v", resp, err)
	}
	_, err = inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: "fn", Payload: []byte(`"throttle"`)})
	var thr *invokeclient.ThrottledError
	if !errors.As(err, &thr) || !strings.Contains(thr.Message, "Rate Exceeded") {
		t.Errorf("throttle: %v", err)
	}
	// An ARN goes whole in the path; Event invocations are accepted with 202.
	arn := "arn:aws:lambda:us-east-1:000000000000:function:fn:live"
	resp, err = inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: arn, Payload: []byte(`{}`), Async: true})
	if err != nil || resp.StatusCode != 202 {
		t.Errorf("async: %+v, %v", resp, err)
	}
	calls = fake.Calls()
	if c := calls[len(calls)-1]; c.Function != arn || c.InvocationType != "Event" || c.Qualifier != "" {
		t.Errorf("ARN call %+v", c)
	}
	// Without ReportBatchItemFailures, a partial response is a success.
	resp, err = inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: "fn", Payload: []byte(`"partial"`)})
	if got := invokeclient.Classify(resp, err, false, known); got.Outcome != batch.OutcomeSuccess {
		t.Errorf("partial without the flag: %v", got.Outcome)
	}
}

// Release is called once per invocation, after the payload went out whole, whatever the
// answer (and also when the request never left): the poller then reuses the buffer.
func TestHTTPInvokerReleasesThePayloadOnce(t *testing.T) {
	testRelease(t, func(f *invoketest.Server) invokeclient.Invoker { return f.HTTPInvoker() },
		invokeclient.NewHTTPInvoker("http://127.0.0.1:1", nil, nil))
}

// testRelease checks Release with invokers from newInvoker, and down, an invoker of a
// closed port.
func testRelease(t *testing.T, newInvoker func(*invoketest.Server) invokeclient.Invoker, down invokeclient.Invoker) {
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		if len(c.Payload) != 64<<10 {
			return invoketest.Outcome{Status: 503}
		}
		return invoketest.Outcome{}
	})
	defer fake.Close()
	inv := newInvoker(fake)
	payload := []byte(`"` + strings.Repeat("x", 64<<10-2) + `"`)
	for range 20 {
		var released atomic.Int32
		resp, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "ns", FunctionName: "fn", Payload: payload,
			Release: func() { released.Add(1) }})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("invoke: %+v %v", resp, err)
		}
		// The transport may close the body just after the answer came back.
		for deadline := time.Now().Add(2 * time.Second); released.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if n := released.Load(); n != 1 {
			t.Fatalf("released %d times, want 1", n)
		}
	}
	// A request that cannot be sent (no server) releases too.
	var released atomic.Int32
	if _, err := down.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: payload, Release: func() { released.Add(1) }}); err == nil {
		t.Fatal("no error from a closed port")
	}
	for deadline := time.Now().Add(2 * time.Second); released.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times after a failed request, want 1", n)
	}
}
