//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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

// TestPythonFunctionFromConfigMap: a Function on each Python runtime whose code is a
// ConfigMap runs in the local Python image of that runtime in the one-container shape,
// invoked through the activator: python3.11 (Debian's python3.11), python3.12 and python3.13
// (python-build-standalone's CPython, hack/runtimes/python/standalone.sh), each with
// klambda's minimal runtime interface client (hack/runtimes/python).
func TestPythonFunctionFromConfigMap(t *testing.T) {
	if !cluster.Local {
		t.Skip("needs the local cluster (its Python images)")
	}
	ns := cluster.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "py-code"},
		Data:       map[string]string{"app.py": pythonHandler},
	}); err != nil {
		t.Fatal(err)
	}
	for _, minor := range []string{"3.11", "3.12", "3.13"} {
		t.Run("python"+minor, func(t *testing.T) {
			localImageBuilt(t, "python-"+minor)
			ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			testPythonFunction(ctx, t, ns, minor)
		})
	}
}

// localImageBuilt skips unless hack/cluster/images.sh imported its image NAME (which it
// skips, with a log line saying why, when the image's inputs are missing).
func localImageBuilt(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(StateDir(), "images", name+".digest")); err != nil {
		t.Skipf("hack/cluster/images.sh did not import its %s image (its log says why): %v", name, err)
	}
}

func testPythonFunction(ctx context.Context, t *testing.T, ns, minor string) {
	name := "hello-python" + strings.ReplaceAll(minor, ".", "")
	sdk := oneContainerFunction(ctx, t, ns, name, lambdav1alpha1.Runtime("python"+minor), "app.handler", "py-code", "klambda.local/python:"+minor)
	out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"name":"py"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Hello, RequestID, Function, Python string
	}
	if out.FunctionError != nil || json.Unmarshal(out.Payload, &got) != nil || got.Hello != "py" || got.RequestID == "" ||
		got.Function != name || !strings.HasPrefix(got.Python, minor+".") {
		t.Fatalf("invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"fail":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), `"errorType": "RuntimeError"`) &&
		!strings.Contains(string(out.Payload), `"errorType":"RuntimeError"`) {
		t.Fatalf("failing invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
}

// oneContainerFunction creates Function name in ns (runtime and handler, its code the
// ConfigMap codeMap), waits until it is Active, checks that its pods run in one container
// of image (no init container), and returns a Lambda client with a token that may invoke it.
func oneContainerFunction(ctx context.Context, t *testing.T, ns, name string, runtime lambdav1alpha1.Runtime, handler, codeMap, image string) *lambda.Client {
	t.Helper()
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: runtime, Handler: handler, Timeout: 10, MemorySize: 128,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: codeMap}}},
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
	if spec := d.Spec.Template.Spec; len(spec.InitContainers) != 0 || len(spec.Containers) != 1 || spec.Containers[0].Image != image {
		t.Fatalf("pod shape: %d init containers, containers %+v", len(spec.InitContainers), spec.Containers)
	}
	return cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
}
