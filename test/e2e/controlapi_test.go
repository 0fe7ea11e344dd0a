//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

// layerBootstrap answers every event with {"code":"<the layer's /opt/greeting>"}.
var layerBootstrap = replyBootstrap(`"{\"code\":\"$(cat /opt/greeting)\"}"`)

// deployerToken is a token (audience klambda) of ServiceAccount deployer in ns, which may
// do everything to klambda's resources there, invoke included: what a deploy job holds.
func deployerToken(ctx context.Context, t testing.TB, ns string) string {
	t.Helper()
	if err := cluster.Client.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{lambdav1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"*"}}},
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "deployer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "deployer", Namespace: ns}},
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return cluster.ServiceAccountToken(ctx, t, ns, "deployer", false)
}

// TestAWSCLIDeployAndInvoke is issue 20's deploy-script flow with the AWS CLI v2 against
// the local cluster's activator, as a deploy job outside the cluster runs it: the code is
// uploaded with --zip-file into the chart's bundled code store, function pods load it from
// there, and every step is checked by invoking. create-function, wait function-active-v2,
// invoke, update-function-code, wait function-updated-v2, invoke the new code,
// publish-version, a weighted alias invoked through, reserved concurrency 0 → throttled,
// list-functions with pagination, a layer published from a zip and used, delete-function.
func TestAWSCLIDeployAndInvoke(t *testing.T) {
	const awsCLI = "/usr/bin/aws"
	if _, err := os.Stat(awsCLI); err != nil {
		t.Skip("AWS CLI v2 not installed at /usr/bin/aws")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)

	token := deployerToken(ctx, t, ns)
	endpoint := cluster.ActivatorURL(ctx, t, ns)

	tmp := t.TempDir()
	run := func(args ...string) (map[string]any, string, error) {
		cmd := exec.CommandContext(ctx, awsCLI, append([]string{"lambda", "--endpoint-url", endpoint, "--output", "json"}, args...)...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused", "AWS_SESSION_TOKEN="+token,
			"AWS_DEFAULT_REGION=us-east-1", "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=", "HOME="+tmp)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var out map[string]any
		if err == nil && len(bytes.TrimSpace(stdout.Bytes())) > 0 {
			if jerr := json.Unmarshal(stdout.Bytes(), &out); jerr != nil {
				t.Fatalf("aws lambda %v printed %q", args, stdout.String())
			}
		}
		return out, stderr.String(), err
	}
	must := func(args ...string) map[string]any {
		t.Helper()
		out, stderr, err := run(args...)
		if err != nil {
			t.Fatalf("aws lambda %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	// invoke returns the code the function answered with.
	invoke := func(fn string, extra ...string) string {
		t.Helper()
		outFile := filepath.Join(tmp, "out.json")
		_ = os.Remove(outFile)
		res := must(append([]string{"invoke", "--function-name", fn, "--payload", "{}", "--cli-binary-format", "raw-in-base64-out", outFile}, extra...)...)
		body, err := os.ReadFile(outFile)
		if err != nil {
			t.Fatal(err)
		}
		if res["FunctionError"] != nil {
			t.Fatalf("invoke %s: function error %v: %s", fn, res["FunctionError"], body)
		}
		var r struct{ Code string }
		if err := json.Unmarshal(body, &r); err != nil || r.Code == "" {
			t.Fatalf("invoke %s answered %s", fn, body)
		}
		return r.Code
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return "fileb://" + p
	}
	zipA := write("a.zip", BootstrapZip(t, []byte(answerBootstrap("A"))))
	zipB := write("b.zip", BootstrapZip(t, []byte(answerBootstrap("B"))))
	const role = "arn:aws:iam::000000000000:role/deployer"

	created := must("create-function", "--function-name", "cli", "--runtime", "provided.al2023", "--handler", "x",
		"--role", role, "--timeout", "5", "--zip-file", zipA)
	if created["State"] != "Pending" {
		t.Errorf("create-function printed State %v, want Pending", created["State"])
	}
	must("wait", "function-active-v2", "--function-name", "cli")
	if got := invoke("cli"); got != "A" {
		t.Fatalf("after create-function: answered %q, want A", got)
	}
	// The function's code came from the code store: its pods load an oci:// source.
	var fn lambdav1alpha1.Function
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cli"}, &fn); err != nil {
		t.Fatal(err)
	}
	if fn.Status.CodeStoreRef == "" {
		t.Errorf("function cli has no status.codeStoreRef: its code is not in the code store")
	}

	must("update-function-code", "--function-name", "cli", "--zip-file", zipB)
	must("wait", "function-updated-v2", "--function-name", "cli")
	if got := invoke("cli"); got != "B" {
		t.Fatalf("after update-function-code: answered %q, want B", got)
	}
	if v := must("publish-version", "--function-name", "cli"); v["Version"] != "1" {
		t.Fatalf("publish-version printed %v", v)
	}
	must("wait", "published-version-active", "--function-name", "cli", "--qualifier", "1")
	if v := must("update-function-code", "--function-name", "cli", "--zip-file", zipA, "--publish"); v["Version"] != "2" {
		t.Fatalf("update-function-code --publish printed Version %v, want 2", v["Version"])
	}
	must("wait", "published-version-active", "--function-name", "cli", "--qualifier", "2")
	must("create-alias", "--function-name", "cli", "--name", "live", "--function-version", "1",
		"--routing-config", "AdditionalVersionWeights={2=0.5}")
	seen := map[string]int{}
	for i := 0; i < 30 && (seen["A"] == 0 || seen["B"] == 0); i++ {
		seen[invoke("cli", "--qualifier", "live")]++
	}
	if seen["A"] == 0 || seen["B"] == 0 {
		t.Errorf("alias live (1, and 2 at 0.5) answered %v: want both version 1 (B) and version 2 (A)", seen)
	}

	// GetFunction's Code.Location: a time-limited link to the code in the store, fetched
	// with no credentials, as a deploy tool downloads a function's package.
	got := must("get-function", "--function-name", "cli")
	loc, _ := got["Code"].(map[string]any)["Location"].(string)
	wantSha, _ := got["Configuration"].(map[string]any)["CodeSha256"].(string)
	if resp, err := http.Get(loc); err != nil {
		t.Errorf("GET Code.Location %q: %v", loc, err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(body)
		if resp.StatusCode != http.StatusOK || base64.StdEncoding.EncodeToString(sum[:]) != wantSha {
			t.Errorf("GET Code.Location %q: %d, %d bytes, sha256 %s; want 200 and CodeSha256 %s", loc, resp.StatusCode, len(body), base64.StdEncoding.EncodeToString(sum[:]), wantSha)
		}
	}

	must("put-function-concurrency", "--function-name", "cli", "--reserved-concurrent-executions", "0")
	if _, stderr, err := run("invoke", "--function-name", "cli", "--payload", "{}", filepath.Join(tmp, "throttled.json")); err == nil ||
		!strings.Contains(stderr, "TooManyRequestsException") {
		t.Errorf("invoke with reserved concurrency 0: err %v, stderr %q; want TooManyRequestsException", err, stderr)
	}
	must("delete-function-concurrency", "--function-name", "cli")

	// A layer from a zip, and a function that reads it in /opt.
	layer := must("publish-layer-version", "--layer-name", "greeting", "--zip-file", write("layer.zip", ziptest.Files(t, ziptest.File{Name: "greeting", Body: []byte("from-the-layer")})),
		"--compatible-runtimes", "provided.al2023")
	arn, _ := layer["LayerVersionArn"].(string)
	if !strings.HasSuffix(arn, ":layer:greeting:1") {
		t.Fatalf("publish-layer-version printed %v", layer)
	}
	must("create-function", "--function-name", "cli-layer", "--runtime", "provided.al2023", "--handler", "x",
		"--role", role, "--timeout", "5", "--zip-file", write("l.zip", BootstrapZip(t, []byte(layerBootstrap))), "--layers", arn)
	must("wait", "function-active-v2", "--function-name", "cli-layer")
	if got := invoke("cli-layer"); got != "from-the-layer" {
		t.Errorf("a function with the published layer answered %q, want the layer's file", got)
	}

	// The CLI follows NextMarker by itself; --page-size is MaxItems per call.
	var names []string
	for _, f := range must("list-functions", "--page-size", "1")["Functions"].([]any) {
		names = append(names, f.(map[string]any)["FunctionName"].(string))
	}
	if strings.Join(names, ",") != "cli,cli-layer" {
		t.Errorf("list-functions --page-size 1 listed %v", names)
	}

	must("delete-function", "--function-name", "cli")
	if _, stderr, err := run("get-function", "--function-name", "cli"); err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Errorf("get-function after delete-function: err %v, stderr %q", err, stderr)
	}
}
