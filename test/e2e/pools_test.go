//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// poolBootstrap answers each event with what its environment holds: its function's
// variables (one from a Secret), the initialization type, its pod (hostname), and the
// files in /tmp — after listing them, it leaves a marker of its own function there.
const poolBootstrap = `#!/bin/sh
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
	headers=$(mktemp) event=$(mktemp)
	wget -q -S -O "$event" "$api/next" 2>"$headers" || { sleep 0.2; continue; }
	id=$(grep -i 'Lambda-Runtime-Aws-Request-Id:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	rm -f "$headers" "$event"
	tmp=$(ls /tmp | grep marker- | tr '\n' ' ')
	touch "/tmp/marker-$FN"
	wget -q -O /dev/null --post-data "{\"fn\":\"$FN\",\"password\":\"$PASSWORD\",\"init\":\"$AWS_LAMBDA_INITIALIZATION_TYPE\",\"host\":\"$(cat /etc/hostname)\",\"tmp\":\"$tmp\"}" "$api/$id/response"
done
`

func poolZip(t *testing.T) []byte {
	t.Helper()
	return BootstrapZip(t, []byte(poolBootstrap))
}

// TestPoolColdStart enables a pool (provided.al2023, 128 MB, size 1; helm upgrade, restored
// at the end) and checks docs/pools.md on the cluster:
//   - a cold start of an eligible function runs on the pool's generic pod (claimed for its
//     Deployment, which stays at 0 replicas) with the function's code and variables (the
//     Secret's value), AWS_LAMBDA_INITIALIZATION_TYPE on-demand, and Init Duration in its
//     REPORT line;
//   - two functions invoked alternately from zero each get a pod of their own, never one the
//     other used (no marker of the other in /tmp);
//   - a function a pool cannot serve (serviceAccountName) cold-starts from its Deployment.
func TestPoolColdStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (it reinstalls klambda with pools)")
	}
	installWith(ctx, t, "config:\n  pools:\n    - {runtime: provided.al2023, architecture: x86_64, memorySize: 128, size: 1}\n")

	ns := cluster.Namespace(t)
	if err := cluster.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		StringData: map[string]string{"password": "s3cret-" + ns}}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-identity"}}); err != nil {
		t.Fatal(err)
	}
	url, sha, err := cluster.ServeCode(ns+"-pool.zip", poolZip(t))
	if err != nil {
		t.Fatal(err)
	}
	const idle = 20 * time.Second
	mkFunction := func(name, serviceAccount string) {
		t.Helper()
		fn := &lambdav1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{contract.AnnotationIdleTimeout: idle.String()}},
			Spec: lambdav1alpha1.FunctionSpec{
				FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
					ServiceAccountName: serviceAccount,
					Runtime:            "provided.al2023", Handler: "bootstrap", Timeout: 10, MemorySize: 128,
					Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
					Environment: &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{
						{Name: "FN", Value: name},
						{Name: "PASSWORD", ValueFrom: &lambdav1alpha1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
					}},
				}},
		}
		if err := cluster.Client.Create(ctx, fn); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.WaitForFunctionActive(ctx, ns, name, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	mkFunction("alpha", "")
	mkFunction("beta", "")
	mkFunction("identity", "own-identity")
	for _, name := range []string{"alpha", "beta"} {
		d, err := cluster.FunctionDeployment(ctx, ns, name, VersionLatest)
		if err != nil {
			t.Fatal(err)
		}
		if d.Annotations[contract.AnnotationSpecialization] == "" {
			t.Fatalf("%s is not pool-eligible: %q", name, d.Annotations[contract.AnnotationPoolIneligible])
		}
	}
	if d, err := cluster.FunctionDeployment(ctx, ns, "identity", VersionLatest); err != nil {
		t.Fatal(err)
	} else if d.Annotations[contract.AnnotationPoolIneligible] == "" {
		t.Fatalf("a function with serviceAccountName is pool-eligible (annotations %v)", d.Annotations)
	}

	sdk := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	type answer struct {
		Fn, Password, Init, Host, Tmp string
	}
	invoke := func(name string) (answer, string) {
		t.Helper()
		start := time.Now()
		out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`), LogType: types.LogTypeTail})
		if err != nil {
			t.Fatalf("invoke %s: %v", name, err)
		}
		if out.FunctionError != nil {
			t.Fatalf("invoke %s: function error %s: %s", name, *out.FunctionError, out.Payload)
		}
		var a answer
		if err := json.Unmarshal(out.Payload, &a); err != nil {
			t.Fatalf("answer of %s %s: %v", name, out.Payload, err)
		}
		tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		t.Logf("%s answered in %s from %s: %+v", name, time.Since(start), a.Host, a)
		return a, string(tail)
	}
	// servedFromPool: the pod that answered was taken from a pool for name's Deployment, and
	// the Deployment was not scaled for it.
	servedFromPool := func(name string, a answer) {
		t.Helper()
		var p corev1.Pod
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.Host}, &p); err != nil {
			t.Fatalf("the pod that answered %s: %v", name, err)
		}
		if p.Annotations[contract.AnnotationSpecializedFrom] == "" || p.Labels[contract.LabelPool] != "" {
			t.Fatalf("%s ran on %s, not a pool's pod (labels %v annotations %v)", name, p.Name, p.Labels, p.Annotations)
		}
		d, err := cluster.FunctionDeployment(ctx, ns, name, VersionLatest)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != d.UID {
			t.Fatalf("%s's pod %s is owned by %+v, not its Deployment", name, p.Name, p.OwnerReferences)
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas != 0 {
			t.Errorf("%s's Deployment was scaled to %d for a pool hit", name, *d.Spec.Replicas)
		}
	}
	waitGone := func(pod string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, idle+2*time.Minute, true, func(ctx context.Context) (bool, error) {
			var p corev1.Pod
			err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, &p)
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("pod %s still there after the idle time: %v", pod, err)
		}
	}

	// A pool hit: the right code, variables and Secret value, a Lambda-shaped cold start.
	waitForGenericPod(ctx, t, ns)
	a1, tail := invoke("alpha")
	if a1.Fn != "alpha" || a1.Password != "s3cret-"+ns || a1.Init != "on-demand" || a1.Tmp != "" {
		t.Fatalf("alpha's first answer %+v", a1)
	}
	if !strings.Contains(tail, "Init Duration:") || !strings.Contains(tail, "REPORT RequestId:") {
		t.Errorf("alpha's cold start log:\n%s", tail)
	}
	servedFromPool("alpha", a1)
	if a, _ := invoke("alpha"); a.Host != a1.Host || !strings.Contains(a.Tmp, "marker-alpha") {
		t.Errorf("a warm invoke of alpha: %+v, want its own environment again", a)
	}

	// beta, from zero: a pod of its own, never alpha's.
	waitForGenericPod(ctx, t, ns)
	b1, _ := invoke("beta")
	if b1.Fn != "beta" || b1.Host == a1.Host || b1.Tmp != "" {
		t.Fatalf("beta's first answer %+v (alpha ran on %s)", b1, a1.Host)
	}
	servedFromPool("beta", b1)

	// alpha again from zero (its environment idled out and was deleted, never returned to
	// the pool): a third pod, holding neither function's files.
	waitGone(a1.Host)
	waitForGenericPod(ctx, t, ns)
	a2, _ := invoke("alpha")
	if a2.Fn != "alpha" || a2.Host == a1.Host || a2.Host == b1.Host || a2.Tmp != "" {
		t.Fatalf("alpha from zero again: %+v (before: alpha %s, beta %s)", a2, a1.Host, b1.Host)
	}
	servedFromPool("alpha", a2)

	// A function a pool cannot serve cold-starts from its own Deployment.
	waitForGenericPod(ctx, t, ns)
	i1, _ := invoke("identity")
	if i1.Fn != "identity" || i1.Password != "s3cret-"+ns {
		t.Fatalf("identity's answer %+v", i1)
	}
	var p corev1.Pod
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: i1.Host}, &p); err != nil {
		t.Fatal(err)
	}
	if p.Annotations[contract.AnnotationSpecializedFrom] != "" || p.Spec.ServiceAccountName != "own-identity" {
		t.Fatalf("identity ran on %s (annotations %v, serviceAccountName %q)", p.Name, p.Annotations, p.Spec.ServiceAccountName)
	}
}

// waitForGenericPod waits for a Ready generic (unclaimed) pool pod in ns.
func waitForGenericPod(ctx context.Context, t testing.TB, ns string) {
	t.Helper()
	waitForGenericPods(ctx, t, ns, 1)
}
