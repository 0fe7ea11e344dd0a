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

const nodeHandler = `exports.handler = async (event, context) => {
  if (event.fail) {
    throw new Error('asked to fail');
  }
  console.log('node handler got', JSON.stringify(event));
  return { hello: event.name, requestId: context.awsRequestId, function: context.functionName, node: process.version };
};
`

// TestNodeFunctionFromConfigMap: a nodejs20.x and a nodejs22.x Function whose code is a
// ConfigMap run in the local Node.js images (npm's Node.js + the npm aws-lambda-ric built for
// it, hack/runtimes/node/node.sh, which make dev builds) in the one-container shape, invoked
// through the activator.
func TestNodeFunctionFromConfigMap(t *testing.T) {
	if !cluster.Local {
		t.Skip("needs the local cluster (its Node.js image)")
	}
	for _, major := range []string{"20", "22"} {
		t.Run("nodejs"+major+".x", func(t *testing.T) { nodeFunctionFromConfigMap(t, major) })
	}
}

func nodeFunctionFromConfigMap(t *testing.T, major string) {
	localImageBuilt(t, "nodejs-"+major)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)
	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-code"},
		Data:       map[string]string{"index.js": nodeHandler},
	}); err != nil {
		t.Fatal(err)
	}
	name := "hello-node" + major
	sdk := oneContainerFunction(ctx, t, ns, name, lambdav1alpha1.Runtime("nodejs"+major+".x"), "index.handler", "node-code", "klambda.local/nodejs:"+major)
	out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"name":"node"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Hello, RequestID, Function, Node string
	}
	if out.FunctionError != nil || json.Unmarshal(out.Payload, &got) != nil || got.Hello != "node" || got.RequestID == "" ||
		got.Function != name || !strings.HasPrefix(got.Node, "v"+major+".") {
		t.Fatalf("invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"fail":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	var failed struct{ ErrorType, ErrorMessage string }
	if aws.ToString(out.FunctionError) != "Unhandled" || json.Unmarshal(out.Payload, &failed) != nil ||
		failed.ErrorType != "Error" || failed.ErrorMessage != "asked to fail" {
		t.Fatalf("failing invoke: error %v, payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
}
