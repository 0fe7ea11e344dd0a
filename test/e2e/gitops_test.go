//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

// TestGitOpsAliasVersionFunctionFromOneDirectory: a Function, the Version that pins its code
// (codeSha256) and an Alias naming that Version (functionVersionRef), written to one
// directory as a Git repository holds them and applied together with one `kubectl apply -f`
// (as a GitOps sync does). The alias answers with the code of that commit; everything is
// deleted and the directory applied again (as on a fresh cluster, where version numbers
// start over), and the alias answers with the same code again.
func TestGitOpsAliasVersionFunctionFromOneDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (code served from the node)")
	}
	// Helm installs CRDs but never upgrades them: this tree's (functionVersionRef) first.
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, kubectlPath(), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubectl("apply", "--server-side", "--force-conflicts", "-f", filepath.Join(cluster.RepoRoot, "charts", "klambda", "crds"))

	ns := cluster.Namespace(t)
	const release = "c0ffee1"
	code := shellZip(t, fmt.Sprintf(`handler() { printf '{"release":"%s","version":"%%s"}' "${AWS_LAMBDA_FUNCTION_VERSION:-}"; }`, release))
	url, sha, err := cluster.ServeCode(ns+"-gitops.zip", code)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	dir := t.TempDir()
	files := map[string]string{
		"function.yaml": fmt.Sprintf(`apiVersion: lambda.klambda.dev/v1alpha1
kind: Function
metadata: {name: orders, namespace: %s}
spec:
  runtime: provided.al2023
  handler: function.handler
  timeout: 10
  code: {url: %q, sha256: %q}
`, ns, url, sha),
		"version.yaml": fmt.Sprintf(`apiVersion: lambda.klambda.dev/v1alpha1
kind: Version
metadata: {name: orders-%s, namespace: %s}
spec:
  functionName: orders
  codeSha256: %q
`, release, ns, base64.StdEncoding.EncodeToString(sum[:])),
		"alias.yaml": fmt.Sprintf(`apiVersion: lambda.klambda.dev/v1alpha1
kind: Alias
metadata: {name: live, namespace: %s}
spec:
  functionName: orders
  functionVersionRef: {name: orders-%s}
`, ns, release),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	base := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/"
	token := cluster.InvokerToken(ctx, t, ns)
	hc := &http.Client{Timeout: time.Minute}
	answer := func(round string) {
		t.Helper()
		var a lambdav1alpha1.Alias
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "live"}, &a); err != nil {
				return false, nil
			}
			return meta.IsStatusConditionTrue(a.Status.Conditions, contract.ConditionReady) && a.Status.ObservedGeneration == a.Generation, nil
		})
		if err != nil {
			t.Fatalf("%s: the alias never became Ready: %+v", round, a.Status)
		}
		var got struct{ Release, Version string }
		var last string
		err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"orders:live/invocations", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
			return resp.StatusCode == http.StatusOK && json.Unmarshal(b, &got) == nil, nil
		})
		if err != nil {
			t.Fatalf("%s: orders:live never answered: %s", round, last)
		}
		if got.Release != release || got.Version != a.Status.FunctionVersion || got.Version == "" {
			t.Fatalf("%s: orders:live answered %+v; want release %s from version %s", round, got, release, a.Status.FunctionVersion)
		}
		t.Logf("%s: orders:live → version %s, release %s", round, got.Version, got.Release)
	}

	kubectl("apply", "-f", dir)
	answer("first apply")

	// As on a fresh cluster: nothing of it left, then the same directory again.
	kubectl("delete", "--wait=true", "--timeout=3m", "-f", dir)
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var vs lambdav1alpha1.VersionList
		var fs lambdav1alpha1.FunctionList
		if err := cluster.Client.List(ctx, &vs, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		if err := cluster.Client.List(ctx, &fs, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		return len(vs.Items) == 0 && len(fs.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("the objects were not deleted: %v", err)
	}
	kubectl("apply", "-f", dir)
	answer("applied again")
}

// shellZip is a provided.al2023 package: the probe's shell runtime (probeBootstrap) with
// handler as function.sh.
func shellZip(t *testing.T, handler string) []byte {
	t.Helper()
	return ziptest.Files(t, ziptest.File{Name: "bootstrap", Body: []byte(probeBootstrap), Mode: 0o755},
		ziptest.File{Name: "function.sh", Body: []byte(handler + "\n")})
}
