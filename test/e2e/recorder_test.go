//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRecorderFunction checks the tool other suites build on: a recorder function hands its
// event to the test and answers what the test says, a result or a function error.
func TestRecorderFunction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster")
	}
	ns := cluster.Namespace(t)
	rec := cluster.StartRecorder(t)
	fn := cluster.RecorderFunction(t, rec, ns, "rec")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := cluster.ScaleFunction(ctx, ns, fn.Name, VersionLatest, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.WaitForReadyPod(ctx, ns, fn.Name, VersionLatest, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	rec.SetAnswer(func(c RecordedCall) Answer { return Answer{Body: append([]byte(`{"echo":`), append(c.Event, '}')...)} })
	res, err := cluster.InvokePod(ctx, pod, []byte(`{"n":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || res.Header.Get("X-Amz-Function-Error") != "" || string(res.Body) != `{"echo":{"n":1}}` {
		t.Fatalf("success: HTTP %d error %q body %s", res.Status, res.Header.Get("X-Amz-Function-Error"), res.Body)
	}
	calls := rec.Calls()
	if len(calls) != 1 || string(calls[0].Event) != `{"n":1}` || calls[0].Function != "rec" || calls[0].RequestID == "" {
		t.Fatalf("recorded %+v", calls)
	}

	rec.SetAnswer(func(RecordedCall) Answer { return Answer{ErrorType: "Test.Failure", Body: []byte("asked to fail")} })
	res, err = cluster.InvokePod(ctx, pod, []byte(`{"n":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Get("X-Amz-Function-Error") == "" || !strings.Contains(string(res.Body), `"errorType":"Test.Failure"`) ||
		!strings.Contains(string(res.Body), "asked to fail") {
		t.Fatalf("function error: HTTP %d error %q body %s", res.Status, res.Header.Get("X-Amz-Function-Error"), res.Body)
	}
	rec.WaitFor(t, time.Second, "two calls", func(c []RecordedCall) bool { return len(c) == 2 })
}
