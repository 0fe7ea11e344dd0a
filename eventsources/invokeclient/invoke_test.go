package invokeclient_test

import (
	"context"
	"testing"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

func TestLambdaInvokerAgainstFakeActivator(t *testing.T) {
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
	inv := fake.Invoker()
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
	// Without ReportBatchItemFailures, a partial response is a success.
	resp, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "team-a", FunctionName: "fn", Payload: []byte(`"partial"`)})
	if got := invokeclient.Classify(resp, err, false, known); got.Outcome != batch.OutcomeSuccess {
		t.Errorf("partial without the flag: %v", got.Outcome)
	}
}
