//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestVersionCodeOutlivesItsSourceOnTheCluster: issue 18's durable code on the local
// cluster, whose install runs the chart's bundled code store. A function's code is served
// from a URL; version 1 is published; then the artifact at that URL is replaced by other
// code, and then deleted. Both $LATEST and version 1, scaled to zero and invoked again,
// start new environments that still run the code they were resolved with: their pods load
// it from the code store, never from the URL again.
func TestVersionCodeOutlivesItsSourceOnTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)
	name := ns + "-durable.zip"
	url, sha, err := cluster.ServeCode(name, BootstrapZip(t, []byte(answerBootstrap("A"))))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{}
	fn.Namespace, fn.Name = ns, "durable"
	fn.Annotations = map[string]string{contract.AnnotationIdleTimeout: "2s"}
	fn.Spec.Runtime, fn.Spec.Handler, fn.Spec.Timeout = "provided.al2023", "x", 5
	fn.Spec.Code.URL, fn.Spec.Code.SHA256 = url, sha
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	active, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if active.Status.CodeStoreRef == "" {
		t.Fatal("the function has no status.codeStoreRef: the local install has no code store")
	}
	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "durable-v1"},
		Spec: lambdav1alpha1.VersionSpec{FunctionName: fn.Name}}
	if err := cluster.Client.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(v), v)
		return err == nil && v.Status.Version == "1" && v.Status.CodeStoreRef != "", nil
	}); err != nil {
		t.Fatalf("version 1 not published with a codeStoreRef: %+v", v.Status)
	}

	lc := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	invoke := func(qualifier string) string {
		t.Helper()
		in := &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{}`)}
		if qualifier != "" {
			in.Qualifier = aws.String(qualifier)
		}
		out, err := lc.Invoke(ctx, in)
		if err != nil {
			t.Fatalf("invoke %s:%s: %v", fn.Name, qualifier, err)
		}
		if out.FunctionError != nil {
			t.Fatalf("invoke %s:%s: %s %s", fn.Name, qualifier, *out.FunctionError, out.Payload)
		}
		var r struct{ Code string }
		if err := json.Unmarshal(out.Payload, &r); err != nil {
			t.Fatalf("invoke %s:%s answered %s", fn.Name, qualifier, out.Payload)
		}
		return r.Code
	}
	for _, q := range []string{"", "1"} {
		if got := invoke(q); got != "A" {
			t.Fatalf("before the source changed, %q answered %q, want A", q, got)
		}
	}

	// The source changes (other bytes at the same URL), then disappears.
	if _, _, err := cluster.ServeCode(name, BootstrapZip(t, []byte(answerBootstrap("CHANGED")))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(StateDir(), "www", name)); err != nil {
		t.Fatal(err)
	}

	// Every environment gone: the next invocations start new pods.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, version := range []string{VersionLatest, "1"} {
			d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, version)
			if err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 0 || d.Status.Replicas != 0 {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("$LATEST and version 1 did not scale to zero (idle timeout 2 s): %v", err)
	}
	for _, q := range []string{"1", ""} {
		if got := invoke(q); got != "A" {
			t.Errorf("after the source changed and vanished, a new environment of %q answered %q, want A", q, got)
		}
	}
}
