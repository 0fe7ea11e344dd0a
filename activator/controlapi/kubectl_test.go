package controlapi_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

// kubectl runs the real kubectl against the test's apiserver.
func kubectl(t *testing.T, stdin string, args ...string) []byte {
	t.Helper()
	bin := os.Getenv("KUBECTL")
	if bin == "" {
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "klambda", "kube-v1.37.2", "bin", "kubectl")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubectl: %v (set KUBECTL)", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["t"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	cfg.AuthInfos["t"] = &clientcmdapi.AuthInfo{ClientCertificateData: restConfig.CertData, ClientKeyData: restConfig.KeyData, Token: restConfig.BearerToken}
	cfg.Contexts["t"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t"}
	cfg.CurrentContext = "t"
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kc}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

// One source of truth: a Function applied with kubectl is what GetFunction answers, field
// for field, and one created through the API is what kubectl get shows.
func TestKubectlAndAPISeeTheSameObjects(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	api := r.sdk("")
	zip := ziptest.Bootstrap(t, "k")
	_, b64 := ziptest.Digest(zip)
	cm, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "code", "namespace": r.ns}, "binaryData": map[string][]byte{"code.zip": zip}, "data": map[string]string{}})
	kubectl(t, string(cm), "apply", "-f", "-")
	kubectl(t, `apiVersion: lambda.klambda.dev/v1alpha1
kind: Function
metadata: {name: applied, namespace: `+r.ns+`}
spec:
  description: from kubectl
  runtime: python3.12
  handler: app.handler
  memorySize: 512
  timeout: 30
  architectures: [arm64]
  ephemeralStorage: {size: 1024}
  tracingConfig: {mode: Active}
  serviceAccountName: runner
  reservedConcurrentExecutions: 3
  tags: {owner: platform}
  environment: {variables: [{name: LEVEL, value: debug}]}
  code: {configMapRef: {name: code, key: code.zip}}
`, "apply", "-f", "-")
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("applied")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("applied")})
	if err != nil {
		t.Fatal(err)
	}
	f := r.function(t, "applied")
	c := got.Configuration
	checks := []struct {
		field     string
		got, want any
	}{
		{"FunctionName", aws.ToString(c.FunctionName), "applied"},
		{"FunctionArn", aws.ToString(c.FunctionArn), f.Status.FunctionARN},
		{"Description", aws.ToString(c.Description), "from kubectl"},
		{"Runtime", c.Runtime, types.RuntimePython312},
		{"Handler", aws.ToString(c.Handler), "app.handler"},
		{"MemorySize", aws.ToInt32(c.MemorySize), int32(512)},
		{"Timeout", aws.ToInt32(c.Timeout), int32(30)},
		{"Architectures", c.Architectures[0], types.ArchitectureArm64},
		{"EphemeralStorage", aws.ToInt32(c.EphemeralStorage.Size), int32(1024)},
		{"TracingConfig", c.TracingConfig.Mode, types.TracingModeActive},
		{"Role", aws.ToString(c.Role), "arn:aws:iam::000000000000:role/runner"},
		{"Environment", c.Environment.Variables["LEVEL"], "debug"},
		{"PackageType", c.PackageType, types.PackageTypeZip},
		{"State", c.State, types.State(f.Status.State)},
		{"LastUpdateStatus", c.LastUpdateStatus, types.LastUpdateStatus(f.Status.LastUpdateStatus)},
		{"CodeSha256", aws.ToString(c.CodeSha256), b64},
		{"CodeSize", c.CodeSize, f.Status.CodeSize},
		{"RevisionId", aws.ToString(c.RevisionId), f.Status.RevisionID},
		{"LastModified", aws.ToString(c.LastModified), f.Status.LastModified.UTC().Format("2006-01-02T15:04:05.000-0700")},
		{"Concurrency", aws.ToInt32(got.Concurrency.ReservedConcurrentExecutions), int32(3)},
		{"Tags", got.Tags["owner"], "platform"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("GetFunction %s = %v, the object says %v", ch.field, ch.got, ch.want)
		}
	}

	// The other way: created through the API, read with kubectl get.
	if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("via-api"), Role: aws.String("arn:aws:iam::000000000000:role/runner"),
		Runtime: types.RuntimeNodejs22x, Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: zip},
		Description: aws.String("from the API"), MemorySize: aws.Int32(1024), Timeout: aws.Int32(15), Architectures: []types.Architecture{types.ArchitectureArm64},
		EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(2048)}, TracingConfig: &types.TracingConfig{Mode: types.TracingModeActive},
		Environment: &types.Environment{Variables: map[string]string{"LEVEL": "info"}}, Tags: map[string]string{"owner": "app"}}); err != nil {
		t.Fatal(err)
	}
	var obj lambdav1alpha1.Function
	if err := json.Unmarshal(kubectl(t, "", "-n", r.ns, "get", "fn", "via-api", "-o", "json"), &obj); err != nil {
		t.Fatal(err)
	}
	s := obj.Spec
	if s.Description != "from the API" || s.Runtime != "nodejs22.x" || s.Handler != "index.handler" || s.MemorySize != 1024 || s.Timeout != 15 ||
		s.Architectures[0] != "arm64" || s.EphemeralStorage.Size != 2048 || s.TracingConfig.Mode != "Active" || s.ServiceAccountName != "runner" ||
		s.Environment.Variables[0].Name != "LEVEL" || s.Environment.Variables[0].Value != "info" || s.Tags["owner"] != "app" ||
		s.Code.SHA256 == "" || s.PackageType != "Zip" {
		t.Errorf("kubectl get fn via-api: %+v", s)
	}
	table := string(kubectl(t, "", "-n", r.ns, "get", "fn", "via-api"))
	if !strings.Contains(table, "nodejs22.x") || !strings.Contains(table, "1024") {
		t.Errorf("kubectl get fn:\n%s", table)
	}
}
