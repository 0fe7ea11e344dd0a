//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestHelloGoInvoked is the cheap end-to-end check CI runs: the cluster is up, klambda is
// installed, and the aws-lambda-go example answers an invocation inside a pod run by the
// kubelet.
func TestHelloGoInvoked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (the package is served from its node)")
	}
	ns := cluster.Namespace(t)

	fn := cluster.HelloGoFunction(ctx, t, ns, "hello-go")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatalf("creating the function: %v", err)
	}
	start := time.Now()
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("function Active after %v", time.Since(start).Round(time.Millisecond))

	// Until the activator owns replicas, the test scales $LATEST to one environment.
	if err := cluster.ScaleFunction(ctx, ns, fn.Name, VersionLatest, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.WaitForReadyPod(ctx, ns, fn.Name, VersionLatest, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s Ready after %v", pod.Name, time.Since(start).Round(time.Millisecond))

	res, err := cluster.InvokePod(ctx, pod, []byte(`{"name":"e2e"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 {
		t.Fatalf("invoke: HTTP %d %s: %s", res.Status, res.Header.Get("X-Amzn-Errortype"), res.Body)
	}
	var got struct {
		Message   string `json:"message"`
		RequestID string `json:"requestId"`
		Function  string `json:"function"`
	}
	if err := json.Unmarshal(res.Body, &got); err != nil {
		t.Fatalf("invoke answered %q: %v", res.Body, err)
	}
	if got.Message != "Hello, e2e!" || got.RequestID == "" || got.Function != fn.Name {
		t.Errorf("invoke answered %s; want message \"Hello, e2e!\", a request id and function %q", res.Body, fn.Name)
	}
	if fe := res.Header.Get("X-Amz-Function-Error"); fe != "" {
		t.Errorf("X-Amz-Function-Error = %q", fe)
	}
}
