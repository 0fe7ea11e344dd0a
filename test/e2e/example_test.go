//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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
	// The cluster behaves like one: the function's log is read as kubectl logs reads it
	// (the API server streams it from the kubelet), with the line the function wrote and
	// the invocation's REPORT.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		rc, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			t.Logf("logs of %s: %v", pod.Name, err)
			return false, nil
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
		return strings.Contains(string(b), "greeting e2e") && strings.Contains(string(b), "REPORT RequestId: "+got.RequestID), nil
	})
	if err != nil {
		t.Errorf("the function pod's log (pods/log, as kubectl logs) never showed its greeting and REPORT: %v", err)
	}
}
