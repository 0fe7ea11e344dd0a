//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
)

// installTests runs the tests that replace klambda's install (TestInstallFromDistAlone,
// TestDevOnAnExistingCluster): make test-e2e-install, after make test-e2e. A manager that
// starts while the code store's pod is being replaced can keep failing its writes to the
// store (docs/code-store.md, "Known issue"); these tests restart both, so they run after
// every other test, not among them.
var installTests = flag.Bool("e2e.install", false, "run the tests that replace klambda's install (make test-e2e-install)")

func needInstallTests(t *testing.T) {
	t.Helper()
	if !*installTests {
		t.Skip("replaces klambda's install: run by make test-e2e-install (-e2e.install)")
	}
}

// TestInstallFromDistAlone: issue 16's install without Helm, on the local cluster. The Helm
// release is removed; dist/install.yaml is applied with kubectl alone (the chart's
// defaults: the activator's self-signed TLS, auth, the bundled code store, the pollers);
// then the commands a user follows — the chart's NOTES.txt rendered with the values
// dist/install.yaml was rendered with, word for word (a Node.js function from a ConfigMap,
// a ServiceAccount allowed to invoke, its token, a port-forward, the CA from the
// activator's Secret, the AWS CLI) — and the same for examples/hello-shell
// (provided.al2023). Then the functions and `kubectl delete -f dist/install.yaml`: nothing
// of klambda is left. The Helm install is restored at the end.
//
// The images dist/install.yaml names (ghcr.io/klambda/...) cannot be pulled here: the
// local builds of the same components are tagged with those names in the node's
// containerd (the runtime images: the local stand-ins, hack/cluster/images.sh). This
// cluster has no storage provisioner: the two claims (the async queue's, the code
// store's) get hostPath PersistentVolumes, as an admin of such a cluster makes them.
func TestInstallFromDistAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	needInstallTests(t)
	if !cluster.Local {
		t.Skip("needs the local cluster (it removes and restores klambda's Helm release)")
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set (make test-e2e sets it)")
	}
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	kubeBin := filepath.Dir(kubectlPath())
	stateDir := filepath.Dir(cluster.Kubeconfig)
	manifest := filepath.Join(cluster.RepoRoot, "dist", "install.yaml")
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PATH="+kubeBin+":"+os.Getenv("PATH"))
	run := func(timeout time.Duration, name string, args ...string) string {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(c, name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubectl := func(args ...string) string { t.Helper(); return run(6*time.Minute, kubectlPath(), args...) }
	ctr := func(ctx context.Context, args ...string) error {
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", filepath.Join(stateDir, "containerd", "containerd.sock"), "-n", "k8s.io"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}

	// 1. The Helm release goes; it comes back at the end, whatever happens.
	run(5*time.Minute, helm, "uninstall", "klambda", "-n", "klambda-system", "--wait", "--timeout", "5m")
	var pvs []string
	var tagged []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectlPath(), "delete", "--ignore-not-found", "--wait", "--timeout=5m", "-f", manifest)
		cmd.Env = env
		_, _ = cmd.CombinedOutput()
		for _, pv := range pvs {
			_ = cluster.Client.Delete(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pv}})
		}
		for _, img := range tagged {
			_ = ctr(ctx, "images", "rm", img)
		}
		reinstall(ctx, t, "")
	})

	// The commands a user follows: NOTES.txt rendered with the values dist/install.yaml was
	// rendered with (hack/dist-manifests.sh), before anything of klambda exists again (Helm
	// refuses to render over objects it does not own).
	notes := run(2*time.Minute, helm, "install", "klambda", filepath.Join(cluster.RepoRoot, "charts", "klambda"),
		"-n", "klambda-system", "--dry-run=client", "--set", "activator.replicas=1", "--set", "nats.enabled=false")

	// 2. The images it names, from the local builds.
	local := map[string]string{
		"manager": "klambda.local/manager:dev", "activator": "klambda.local/activator:dev",
		"eventsources": "klambda.local/eventsources:dev", "code-store": "klambda.local/code-store:dev",
		"runtime-shim":            "klambda.local/runtime-shim:dev",
		"runtime-provided:al2023": "klambda.local/provided:al2023", "runtime-provided:al2": "klambda.local/provided:al2023",
		"runtime-nodejs:20": "klambda.local/nodejs:20",
	}
	for _, ref := range regexp.MustCompile(`ghcr\.io/klambda/[a-z0-9.:-]+`).FindAllString(string(raw), -1) {
		name := strings.TrimPrefix(ref, "ghcr.io/klambda/")
		src, ok := local[strings.SplitN(name, ":", 2)[0]]
		if !ok {
			// runtime-provided:al2023-0.1.0 → runtime-provided:al2023
			src, ok = local[name[:strings.LastIndex(name, "-")]]
		}
		if !ok {
			t.Logf("no local build of %s: that runtime is not invoked here", ref)
			continue
		}
		if err := ctr(ctx, "images", "tag", "--force", src, ref); err != nil {
			t.Fatal(err)
		}
		tagged = append(tagged, ref)
	}

	// 3. Volumes for its claims (no provisioner here).
	for _, claim := range []string{"klambda-activator-async", "klambda-code-store"} {
		dir := filepath.Join(t.TempDir(), claim)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil { // the pods' non-root users write here
			t.Fatal(err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-dist-" + claim},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
				ClaimRef:                      &corev1.ObjectReference{Namespace: "klambda-system", Name: claim},
			},
		}
		if err := cluster.Client.Create(ctx, pv); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		pvs = append(pvs, pv.Name)
	}

	// 4. kubectl apply, and every component available.
	start := time.Now()
	kubectl("apply", "--server-side", "-f", manifest)
	for _, d := range []string{"manager", "activator", "eventsources", "code-store"} {
		kubectl("-n", "klambda-system", "rollout", "status", "deployment/klambda-"+d, "--timeout=5m")
	}
	t.Logf("dist/install.yaml applied and available in %v", time.Since(start).Round(time.Second))

	// 5. The user's commands: NOTES.txt for dist's values, then hello-shell the same way.
	notes = notes[strings.Index(notes, "\nNOTES:\n")+1:]
	ns := cluster.Namespace(t)
	body := notesCommands(notes)
	for _, want := range []string{"FN_NS=default\n", "AWS_CA_BUNDLE", "https://localhost:", "aws lambda invoke"} {
		if !strings.Contains(body, want) {
			t.Fatalf("the default NOTES.txt's commands lack %q:\n%s", want, body)
		}
	}
	body = strings.Replace(body, "FN_NS=default\n", "FN_NS="+ns+"\n", 1)
	endpoint := regexp.MustCompile(`https://localhost:[0-9]+/namespaces/\$FN_NS`).FindString(body)
	if endpoint == "" {
		t.Fatalf("no endpoint in the NOTES' commands:\n%s", body)
	}
	body += fmt.Sprintf(`kubectl -n "$FN_NS" apply -f %s
kubectl -n "$FN_NS" wait function/hello-shell --for=jsonpath='{.status.state}'=Active --timeout=5m
aws lambda invoke --endpoint-url %s --function-name hello-shell --payload fileb://event.json out-shell.json
`, filepath.Join(cluster.RepoRoot, "examples", "hello-shell", "function.yaml"), endpoint)
	dir, out, err := runCommands(ctx, t, body, env)
	if err != nil {
		t.Fatalf("the commands failed: %v\n%s\noutput:\n%s", err, body, out)
	}
	for file, want := range map[string]string{"out.json": `"message":"Hello, klambda!"`, "out-shell.json": `"message":"Hello from a shell custom runtime","event":{"name":"klambda"}`} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !strings.Contains(string(got), want) {
			t.Fatalf("%s: %q (%v), want %s; output:\n%s", file, got, err, want, out)
		}
	}
	t.Logf("hello-node (nodejs20.x) and hello-shell (provided.al2023) invoked over HTTPS with the AWS CLI")

	// 6. Uninstall: the functions, then everything dist/install.yaml made.
	kubectl("-n", ns, "delete", "functions.lambda.klambda.dev", "--all", "--wait", "--timeout=3m")
	kubectl("delete", "--wait", "--timeout=5m", "-f", manifest)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		left := leftovers(ctx, ns)
		if len(left) > 0 {
			t.Logf("still there: %s", strings.Join(left, ", "))
		}
		return len(left) == 0, nil
	}); err != nil {
		t.Fatalf("after kubectl delete -f dist/install.yaml, klambda left: %s", strings.Join(leftovers(ctx, ns), ", "))
	}
}

// leftovers lists what klambda made that is still on the cluster: its namespace, its
// CRDs, its cluster-wide RBAC and admission policies (named klambda*), and in the
// functions' namespace anything labelled as a function's (contract.LabelFunction).
func leftovers(ctx context.Context, fnNS string) []string {
	var left []string
	var nsObj corev1.Namespace
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: "klambda-system"}, &nsObj); !apierrors.IsNotFound(err) {
		left = append(left, "namespace klambda-system")
	}
	cmd := exec.CommandContext(ctx, kubectlPath(), "get", "crd,clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding,validatingwebhookconfiguration,mutatingwebhookconfiguration", "-o", "name")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	out, err := cmd.Output()
	if err != nil {
		return append(left, "(kubectl get failed: "+err.Error()+")")
	}
	for _, n := range strings.Fields(string(out)) {
		if strings.Contains(n, "klambda") {
			left = append(left, n)
		}
	}
	cmd = exec.CommandContext(ctx, kubectlPath(), "-n", fnNS, "get", "deployments,replicasets,pods,services,networkpolicies,secrets,configmaps,roles,rolebindings,leases", "-o", "name", "-l", contract.LabelFunction)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	if out, err = cmd.Output(); err != nil {
		return append(left, "(kubectl get failed: "+err.Error()+")")
	}
	left = append(left, strings.Fields(string(out))...)
	return left
}
