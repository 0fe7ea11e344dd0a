package invoke_test

import (
	"strings"
	"testing"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// A version whose environments the cluster cannot place answers Lambda's 429 with its
// reason at once, not a ServiceException after the wait deadline; the cluster's words stay
// out of the answer.
func TestInvokeThrottledWhenClusterIsFull(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	full := &dispatch.CapacityError{Reason: contract.ReasonAccountConcurrency, Cause: dispatch.CauseUnschedulable, Detail: "0/3 nodes are available: 3 Insufficient cpu."}
	r.Dispatcher.SetPlacement(keyOf("f", contract.Latest), 0, full)
	a := call(t, r.URL(), invPath("f"), `{}`, nil)
	wantError(t, a, 429, "TooManyRequestsException", "Rate Exceeded. The cluster cannot place")
	if !strings.Contains(a.body, `"Reason":"ConcurrentInvocationLimitExceeded"`) || a.header.Get("Retry-After") == "" || strings.Contains(a.body, "nodes") {
		t.Fatalf("throttle body %s", a.body)
	}
	// The scaling rate's refusal (the scaler's Refuse hands waiters the same error): its reason and hint.
	r.Function("g", -1, 0)
	rate := &dispatch.CapacityError{Reason: contract.ReasonFunctionRate, Cause: dispatch.CauseScalingRate}
	r.Dispatcher.SetPlacement(keyOf("g", contract.Latest), 0, rate)
	a = call(t, r.URL(), invPath("g"), `{}`, nil)
	wantError(t, a, 429, "TooManyRequestsException", "maximum rate")
	if !strings.Contains(a.body, `"Reason":"FunctionInvocationRateLimitExceeded"`) {
		t.Fatalf("throttle body %s", a.body)
	}
}
