package invoketest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// With ReusePayloads, each call's handler sees that call's payload, whole, whatever the
// sizes of the calls before it whose buffers are reused; calls are counted, not kept.
func TestReusedPayloadsAreEachCallsOwn(t *testing.T) {
	var seen []string
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		seen = append(seen, string(c.Payload)) // a copy: the buffer is reused
		return invoketest.Outcome{}
	})
	defer fake.Close()
	fake.ReusePayloads()
	inv := fake.Invoker()
	want := []string{`"` + strings.Repeat("a", 5000) + `"`, `"b"`, `"` + strings.Repeat("c", 300) + `"`, `"` + strings.Repeat("d", 9000) + `"`, `"e"`}
	for _, p := range want {
		if _, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "ns", FunctionName: "fn", Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("handler saw %d payloads, not the ones sent (lengths %v)", len(seen), lengths(seen))
	}
	if n, calls := fake.CallCount(), fake.Calls(); n != len(want) || len(calls) != 0 {
		t.Errorf("CallCount %d, %d calls kept; want %d, none", n, len(calls), len(want))
	}
}

func lengths(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}
