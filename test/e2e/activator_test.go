//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// TestActivatorScalesFromZero invokes, with the AWS SDK, a function at zero replicas
// through the activator the chart installed: it scales the Deployment up (server-side
// apply, field manager klambda-activator), waits for the first Ready environment and
// relays the invocation. (Back to zero takes the chart's idle timeout, minutes.)
func TestActivatorScalesFromZero(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (pod IPs must route from the test)")
	}
	ns := cluster.Namespace(t)
	fn := cluster.HelloGoFunction(ctx, t, ns, "hello-go")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// A function's Deployment is born at zero replicas; the activator alone scales it.
	if n, err := replicas(ctx, ns, fn.Name, VersionLatest); n != 0 {
		t.Fatalf("a new function's Deployment: replicas %d, want 0 (%v)", n, err)
	}

	// The activator the chart installed authorizes callers: a token that may invoke here.
	c := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	start := time.Now()
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{"name":"e2e"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Fatalf("cold invoke: %d %s %s", out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
	}
	t.Logf("cold invocation through the activator (scale from zero) took %v: %s", time.Since(start).Round(time.Millisecond), out.Payload)
	start = time.Now()
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{"name":"warm"}`)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("warm invocation took %v", time.Since(start).Round(time.Microsecond))

	d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, VersionLatest)
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Fatalf("after the first invocation: %v %v", d.Spec.Replicas, err)
	}
	owned := false
	for _, mf := range d.ManagedFields {
		owned = owned || mf.Manager == "klambda-activator"
	}
	if !owned {
		t.Fatalf("spec.replicas is not applied by the activator's field manager: %v", d.ManagedFields)
	}
}
