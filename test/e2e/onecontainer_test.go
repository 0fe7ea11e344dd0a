//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// insideBootstrap answers each event with what the environment looks like from inside: can
// it write /var/task, and what CPU quota its cgroup has. {"sleep":N} sleeps N seconds first.
const insideBootstrap = `#!/bin/sh
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
quota() {
	for f in /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us; do
		[ -r "$f" ] && { cat "$f"; return; }
	done
	[ -r /sys/fs/cgroup/cpu.max ] && cut -d' ' -f1 /sys/fs/cgroup/cpu.max && return
	echo unknown
}
while true; do
	headers=$(mktemp) event=$(mktemp)
	wget -q -S -O "$event" "$api/next" 2>"$headers" || { sleep 0.2; continue; }
	id=$(grep -i 'Lambda-Runtime-Aws-Request-Id:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	s=$(sed -n 's/.*"sleep": *\([0-9]*\).*/\1/p' "$event")
	[ -n "$s" ] && sleep "$s"
	if touch /var/task/written 2>/dev/null; then w=true; else w=false; fi
	wget -q -O /dev/null --post-data "{\"taskWritable\":$w,\"quota\":\"$(quota)\",\"pid\":$$}" "$api/$id/response"
	rm -f "$headers" "$event"
done
`

// TestOneContainerEnvironment: on the local cluster the base image carries the shim, so a
// Zip function's pod is one container: the shim (its entrypoint) unpacks the ConfigMap code,
// /var/task is read-only to the function, the environment starts with the init CPU and the
// activator resizes it in place to Lambda's share once it is ready (the kubelet applies it
// to the cgroup), and a timeout resets the runtime inside the container — no kubelet
// restart.
func TestOneContainerEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (its base images carry the shim)")
	}
	ns := cluster.Namespace(t)
	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe-code"},
		Data:       map[string]string{"bootstrap": insideBootstrap},
	}); err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "inside"},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 2, MemorySize: 128,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "probe-code"}}},
		}},
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, VersionLatest)
	if err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 || !strings.HasSuffix(spec.Containers[0].Command[0], "/runtime-shim") {
		t.Fatalf("pod shape: %d init containers, containers %+v", len(spec.InitContainers), spec.Containers)
	}
	if got := d.Spec.Template.Annotations[contract.AnnotationCPULimit]; got != "122m" {
		t.Fatalf("cpu-limit annotation %q", got)
	}

	sdk := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	type inside struct {
		TaskWritable bool   `json:"taskWritable"`
		Quota        string `json:"quota"`
		PID          int    `json:"pid"`
	}
	invoke := func(payload string) (*lambda.InvokeOutput, inside) {
		t.Helper()
		out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("invoke %s: %v", payload, err)
		}
		var in inside
		if out.FunctionError == nil {
			if err := json.Unmarshal(out.Payload, &in); err != nil {
				t.Fatalf("answer %s: %v", out.Payload, err)
			}
		}
		return out, in
	}
	_, first := invoke(`{}`) // from zero
	if first.TaskWritable {
		t.Error("the function could write /var/task")
	}

	// The activator resizes the ready environment to 122m (Lambda's 72m at 128 MB and the
	// shim's 50m allowance); the kubelet writes the quota.
	var pod *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := functionPods(ctx, ns, fn.Name, VersionLatest)
		if err != nil || len(pods) != 1 {
			return false, nil
		}
		pod = &pods[0]
		q := pod.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU]
		return q.String() == "122m", nil
	})
	if err != nil {
		t.Fatalf("the pod's CPU limit was never resized to 122m: %v", err)
	}
	var last inside
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, last = invoke(`{}`)
		return last.Quota == "12200", nil // 122m of a 100 ms period
	})
	if err != nil {
		t.Fatalf("the cgroup quota stayed %q (first invoke saw %q)", last.Quota, first.Quota)
	}
	t.Logf("CPU quota: %s µs per 100 ms at the first invoke, %s after the resize", first.Quota, last.Quota)

	// A timeout resets the environment: the shim restarts the runtime in the same container.
	out, _ := invoke(`{"sleep":4}`)
	if out.FunctionError == nil || !strings.Contains(string(out.Payload), "Task timed out after 2.00 seconds") {
		t.Fatalf("timeout answer %q %s", aws.ToString(out.FunctionError), out.Payload)
	}
	_, after := invoke(`{}`)
	if after.PID == last.PID || after.Quota != "12200" {
		t.Fatalf("after the reset: pid %d (before %d), quota %s", after.PID, last.PID, after.Quota)
	}
	var now corev1.Pod
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), &now); err != nil {
		t.Fatal(err)
	}
	if now.UID != pod.UID || now.Status.ContainerStatuses[0].RestartCount != 0 {
		cs := now.Status.ContainerStatuses[0]
		t.Fatalf("the pod was replaced (UID %s, was %s) or its container restarted (%d restarts, last state %+v): %s",
			now.UID, pod.UID, cs.RestartCount, cs.LastTerminationState.Terminated, podSummary(&now))
	}
}
