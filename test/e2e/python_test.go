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

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

const pythonHandler = `import sys

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    print("python handler got", event)
    return {"hello": event.get("name"), "requestId": context.aws_request_id,
            "function": context.function_name, "python": sys.version.split()[0]}
`

// TestPythonFunctionFromConfigMap: a python3.11 Function whose code is a ConfigMap runs in
// the local Python image (Debian's python3.11 + klambda's minimal runtime interface client,
// hack/runtimes/python) in the one-container shape, invoked through the activator.
func TestPythonFunctionFromConfigMap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (its Python image)")
	}
	ns := cluster.Namespace(t)
	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "py-code"},
		Data:       map[string]string{"app.py": pythonHandler},
	}); err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-python"},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "python3.11", Handler: "app.handler", Timeout: 10, MemorySize: 128,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "py-code"}}},
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
	if spec := d.Spec.Template.Spec; len(spec.InitContainers) != 0 || len(spec.Containers) != 1 || spec.Containers[0].Image != "klambda.local/python:3.11" {
		t.Fatalf("pod shape: %d init containers, containers %+v", len(spec.InitContainers), spec.Containers)
	}
	sdk := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{"name":"py"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Hello, RequestID, Function, Python string
	}
	if out.FunctionError != nil || json.Unmarshal(out.Payload, &got) != nil || got.Hello != "py" || got.RequestID == "" ||
		got.Function != "hello-python" || !strings.HasPrefix(got.Python, "3.11.") {
		t.Fatalf("invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{"fail":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), `"errorType": "RuntimeError"`) &&
		!strings.Contains(string(out.Payload), `"errorType":"RuntimeError"`) {
		t.Fatalf("failing invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
}
