//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestActivatorRolloutRestartUnderLoad: issue 17's zero-downtime rollout with the local
// install's one activator replica (TestActivatorReplicas covers three). A function with
// reserved concurrency 4 is invoked at 20 requests a second (steadyFunction: each takes a
// few tens of ms, so the load stays well within 4 environments), warmed up first, while `kubectl rollout restart` replaces the activator: the new
// pod starts beside the old one, the old one drains and hands its shards over. Every
// invocation must succeed: an error, and a throttle too (the load never reaches the
// function's limit, so a 429 there is capacity the hand-over lost), fails the test.
func TestActivatorRolloutRestartUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (it restarts klambda's activator)")
	}
	if n := readyActivators(ctx); n != 1 {
		t.Skipf("the install runs %d activator replicas, not the local one", n)
	}
	ns := cluster.Namespace(t)
	url, token := readySteadyFunction(ctx, t, ns, "")
	tl, err := watchTimeline(ctx, "klambda-system", ns)
	if err != nil {
		t.Fatal(err)
	}
	const rate = steadyRate
	env := append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	kubectl := func(args ...string) {
		cmd := exec.CommandContext(ctx, kubectlPath(), append([]string{"-n", "klambda-system"}, args...)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("kubectl %v: %v: %s", args, err, out)
		}
	}
	calls, took := steadyLoad(ctx, url, token, rate, func() {
		time.Sleep(5 * time.Second)
		tl.add("kubectl rollout restart")
		kubectl("rollout", "restart", "deployment/klambda-activator")
		kubectl("rollout", "status", "deployment/klambda-activator", "--timeout=5m")
		tl.add("rollout status: done")
		// The old pod drains (shutdown delay, then its invocations) after the rollout's end.
		time.Sleep(15 * time.Second)
	})
	if failed := reportLoad(t, tl, "kubectl rollout restart of the one activator replica under 20 invocations/s", calls, took); len(failed) > 0 {
		t.Errorf("%d of %d invocations failed during the rollout (want none; each above with what happened around it)", len(failed), len(calls))
	}
	if n := readyActivators(ctx); n != 1 {
		t.Errorf("%d activator replicas ready after the rollout, want 1", n)
	}
}
