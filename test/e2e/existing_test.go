//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestDevOnAnExistingCluster: issue 16's `make dev CLUSTER=existing` against a cluster it
// did not start, whose nodes pull images from a registry. The local cluster stands in for
// it: hack/cluster/dev.sh builds klambda's images here, pushes them to the node's registry
// (REGISTRY, plain HTTP), installs the chart naming them by digest (the chart's defaults
// but what this cluster cannot give: storage, two cores — IMAGE_VALUES), and invokes
// examples/hello-shell through a port-forward over the activator's self-signed TLS. Every
// klambda pod and the function's pod then run images from the registry. The local install
// is restored at the end.
func TestDevOnAnExistingCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	needInstallTests(t)
	reg, err := cluster.Registry()
	if err != nil {
		t.Skip(err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`activator:
  replicas: 1
  async: {persistence: {enabled: false}}
nats: {enabled: false}
codeStore: {bundled: {persistence: {enabled: false}}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		reinstall(ctx, t, "")
	})
	cmd := exec.CommandContext(ctx, filepath.Join(cluster.RepoRoot, "hack", "cluster", "dev.sh"))
	cmd.Dir = cluster.RepoRoot
	cmd.Env = append(os.Environ(), "CLUSTER=existing", "KUBECONFIG="+cluster.Kubeconfig, "REGISTRY="+reg+"/e2e-existing",
		"REGISTRY_PLAIN_HTTP=true", "IMAGE_VALUES="+values, "EXAMPLE_NAMESPACE="+cluster.Namespace(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make dev CLUSTER=existing: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `{"message":"Hello from a shell custom runtime","event":{"name":"klambda"}}`) ||
		!strings.Contains(string(out), "POST https://localhost:") {
		t.Fatalf("make dev CLUSTER=existing did not invoke hello-shell over TLS:\n%s", out)
	}
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system")); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Spec.Containers {
			if !strings.HasPrefix(c.Image, reg+"/e2e-existing/") || !strings.Contains(c.Image, "@sha256:") {
				t.Errorf("pod %s runs %s, not an image pushed to the registry by digest", p.Name, c.Image)
			}
			n++
		}
	}
	if n < 4 {
		t.Fatalf("only %d running containers in klambda-system", n)
	}
}
