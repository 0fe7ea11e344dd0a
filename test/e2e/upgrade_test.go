//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// previousRelease is the commit of klambda's previous release, 0.1.0: the one whose CRDs and
// sample objects test/dist/testdata/previous holds (TestCRDUpgradeFromPreviousRelease).
const previousRelease = "4085e3b0a1b0b55c9ce3b13add96fff7ea3a0a4a"

// TestHelmUpgradeFromPreviousReleaseUnderLoad: issue 16's `helm upgrade` from the previous
// release to this one while a function is invoked at a steady rate. The previous release
// is built from its commit as a user would have it: its chart, its local values and its
// binaries (manager, activator, pollers, runtime-shim) in images tagged :prev. It is
// installed with Helm, a function is created through it and invoked at 20 requests a
// second; then `helm upgrade` to this tree's chart and images (hack/cluster/install.sh,
// the local install) runs under that load, and the load goes on for 15 s after the
// rollouts. The test reports every answer it got; it fails when the upgrade fails, when
// the function no longer answers after it, or when klambda does not run this tree's images
// afterwards. CRDs are not part of it: Helm keeps them across the uninstall of this tree's
// release, so both releases run on this tree's CRDs (TestCRDUpgradeFromPreviousRelease
// proves the CRD upgrade itself).
func TestHelmUpgradeFromPreviousReleaseUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	needInstallTests(t)
	if !cluster.Local {
		t.Skip("needs the local cluster (it replaces klambda's Helm release and imports images)")
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set (make test-e2e sets it)")
	}
	if err := exec.Command("git", "-C", cluster.RepoRoot, "cat-file", "-e", previousRelease+"^{commit}").Run(); err != nil {
		t.Skipf("the previous release's commit %s is not in this clone (a shallow clone?): %v", previousRelease, err)
	}
	stateDir := filepath.Dir(cluster.Kubeconfig)
	env := append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "CGO_ENABLED=0")
	run := func(dir string, timeout time.Duration, name string, args ...string) string {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(c, name, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctr := func(args ...string) string {
		t.Helper()
		return run("", 5*time.Minute, "ctr", append([]string{"--address", filepath.Join(stateDir, "containerd", "containerd.sock"), "-n", "k8s.io"}, args...)...)
	}

	// 1. The previous release's tree, binaries and images.
	start := time.Now()
	src := t.TempDir()
	run(cluster.RepoRoot, 2*time.Minute, "sh", "-c", fmt.Sprintf("git archive %s | tar -x -C %s", previousRelease, src))
	bin := filepath.Join(t.TempDir(), "bin")
	imagebuild := filepath.Join(bin, "imagebuild")
	run(cluster.RepoRoot, 5*time.Minute, "go", "build", "-o", imagebuild, "./hack/imagebuild")
	components := []string{"manager", "activator", "eventsources", "runtime-shim"}
	var imported []string
	t.Cleanup(func() {
		for _, ref := range imported {
			cmd := exec.Command("ctr", "--address", filepath.Join(stateDir, "containerd", "containerd.sock"), "-n", "k8s.io", "images", "rm", ref)
			_ = cmd.Run()
		}
	})
	for _, c := range components {
		run(src, 15*time.Minute, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(bin, c), "./cmd/"+c)
		ref, tar := "klambda.local/"+c+":prev", filepath.Join(bin, c+".tar")
		run("", 2*time.Minute, imagebuild, "-tag", ref, "-o", tar, "-base-files", "-layer",
			"-add", filepath.Join(bin, c)+"=/"+c, "-user", "65532:65532", "-entrypoint", "/"+c)
		ctr("images", "import", tar)
		imported = append(imported, ref)
	}
	t.Logf("previous release %.7s built and imported in %v", previousRelease, time.Since(start).Round(time.Second))

	// 2. This tree's release goes (Helm keeps the CRDs), the previous one comes, as its own
	// hack/cluster/install.sh installed it. Whatever happens, this tree's install comes back.
	run("", 6*time.Minute, helm, "uninstall", "klambda", "-n", "klambda-system", "--wait", "--timeout", "5m")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		reinstall(ctx, t, "")
	})
	nodeIP := ""
	var nodes corev1.NodeList
	if err := cluster.Client.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("listing nodes: %v (%d)", err, len(nodes.Items))
	}
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			nodeIP = a.Address
		}
	}
	args := []string{"install", "klambda", filepath.Join(src, "charts", "klambda"), "-n", "klambda-system",
		"-f", filepath.Join(src, "hack", "cluster", "values-local.yaml"),
		"--set", "activator.enabled=true", "--set", "eventsources.enabled=true",
		"--set-json", fmt.Sprintf(`config.egress.allowCIDRs=["%s/32"]`, nodeIP)}
	for _, c := range components {
		key := c
		if c == "runtime-shim" {
			key = "runtimeShim"
		}
		args = append(args, "--set", key+".image.tag=prev")
	}
	// Its CPU requests (50-100m each) are the node's two cores' worth with this tree's
	// pods beside them during the rollouts: small ones, as this tree's local values have.
	for _, c := range []string{"manager", "activator", "eventsources"} {
		args = append(args, "--set", c+".resources.requests.cpu=10m")
	}
	run("", 6*time.Minute, helm, args...)
	cluster.forgetActivatorURL()
	for _, d := range []string{"manager", "activator", "eventsources"} {
		run("", 6*time.Minute, kubectlPath(), "-n", "klambda-system", "rollout", "status", "deployment/klambda-"+d, "--timeout=5m")
	}
	checkKlambdaImages(ctx, t, ":prev")

	// 3. A function made through the previous release, and invoked at a steady rate.
	ns := cluster.Namespace(t)
	// At most 4 environments: under this load the previous release's activator scaled a
	// function without a limit until this tree's pods could not be scheduled during the
	// upgrade ("Insufficient cpu, Too many pods" on the node's two cores).
	probeFunction(ctx, t, ns, "steady", func(f *lambdav1alpha1.Function) { f.Spec.ReservedConcurrentExecutions = aws.Int32(4) })
	url := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/steady/invocations"
	token := cluster.InvokerToken(ctx, t, ns)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return replicaCall(ctx, url, token, `{"sleep":0}`) == "200", nil
	}); err != nil {
		t.Fatal("the function never answered through the previous release")
	}

	// 4. helm upgrade to this tree under the load.
	const rate = 20
	var upgraded time.Time
	answers, took := steadyLoad(ctx, url, token, rate, func() {
		time.Sleep(5 * time.Second)
		began := time.Now()
		reinstall(ctx, t, "")
		upgraded = time.Now()
		t.Logf("helm upgrade and its rollouts took %v", upgraded.Sub(began).Round(time.Millisecond))
		time.Sleep(15 * time.Second)
	})
	total, failed := 0, 0
	var kinds []string
	for k, n := range answers {
		total += n
		if k != "200" {
			failed += n
		}
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	t.Logf("helm upgrade from %.7s under %d invocations/s: %d invocations in %v, %d failed (%.2f%%)\n  %s",
		previousRelease, rate, total, took.Round(time.Second), failed, 100*float64(failed)/float64(max(total, 1)), strings.Join(kinds, "\n  "))
	if upgraded.IsZero() {
		t.Fatal("the upgrade did not finish")
	}
	checkKlambdaImages(ctx, t, ":dev")
	if got := replicaCall(ctx, url, token, `{"sleep":0}`); got != "200" {
		t.Errorf("after the upgrade the function answered %s", got)
	}
	if answers["200"] == 0 {
		t.Errorf("no invocation succeeded during the upgrade: %v", answers)
	}
}

// checkKlambdaImages fails unless every container of klambda's Deployments (manager,
// activator, pollers) runs an image whose reference ends in suffix.
func checkKlambdaImages(ctx context.Context, t *testing.T, suffix string) {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system")); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, p := range pods.Items {
		component := p.Labels["app.kubernetes.io/component"]
		if component != "manager" && component != "activator" && component != "eventsources" || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Spec.Containers {
			seen++
			if !strings.HasSuffix(c.Image, suffix) {
				t.Errorf("pod %s container %s runs %s, want an image ending in %s", p.Name, c.Name, c.Image, suffix)
			}
		}
	}
	if seen == 0 {
		t.Errorf("no klambda pods in klambda-system")
	}
}

// steadyLoad invokes url at rate invocations a second (each on its own goroutine, at most
// 256 in flight; beyond that a tick is counted as "skipped: too many in flight") until
// during returns; it returns the answers (replicaCall's words) and how long it ran.
func steadyLoad(ctx context.Context, url, token string, rate int, during func()) (map[string]int, time.Duration) {
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	slots := make(chan struct{}, 256)
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				mu.Lock()
				answers["skipped: too many in flight"]++
				mu.Unlock()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				got := replicaCall(ctx, url, token, `{"sleep":0}`)
				mu.Lock()
				answers[got]++
				mu.Unlock()
			}()
		}
	}()
	during()
	close(stop)
	<-done
	wg.Wait()
	return answers, time.Since(start)
}
