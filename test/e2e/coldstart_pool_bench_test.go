//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

var poolColdStartRounds = flag.Int("poolcoldstart.rounds", 10, "BenchmarkPoolColdStart: rounds (each: one plain pod, two cold invocations served by pools: provided.al2023 and nodejs20.x)")

// BenchmarkPoolColdStart: issue 23's figure. On the local cluster with pools of one
// generic environment each (provided.al2023 and nodejs20.x, x86_64, 128 MB; helm upgrade,
// restored at the end), each round creates a new aws-lambda-go function (examples/hello-go)
// and a new Node.js function (nodejs20.x, from a ConfigMap) and times their first
// invocations through the activator — pool hits: the pool's pod is claimed, specialized
// with the function's code and variables, and invoked (the function's Deployment stays at
// zero, which the round checks) — against the floor of the same round: a plain pod of the
// provided.al2023 runtime image going from Create to Ready. Before each round the pools
// have refilled.
// Targets: p50 ≤ 0.25× and p95 ≤ 0.4× the floor. (A pool miss is BenchmarkColdStart's
// path: the activator finds no generic pod and scales the Deployment.)
//
//	make bench-coldstart-pool   # go test -tags e2e -run '^$' -bench PoolColdStart -benchtime 1x ./test/e2e/
func BenchmarkPoolColdStart(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if !cluster.Local {
		b.Skip("needs the local cluster (it reinstalls klambda with a pool)")
	}
	installWith(ctx, b, "config:\n  pools:\n    - {runtime: provided.al2023, architecture: x86_64, memorySize: 128, size: 1}\n"+
		"    - {runtime: nodejs20.x, architecture: x86_64, memorySize: 128, size: 1}\n")
	ns := cluster.Namespace(b)
	token := cluster.InvokerToken(ctx, b, ns)
	image := ""

	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "node-code"},
		Data:       map[string]string{"index.js": nodeHandler},
	}); err != nil {
		b.Fatal(err)
	}

	var hit, nodeHit, floor []time.Duration
	for round := 0; round < *poolColdStartRounds; round++ {
		fn := cluster.HelloGoFunction(ctx, b, ns, fmt.Sprintf("pool-%d", round))
		fn.Spec.MemorySize = 128
		if err := cluster.Client.Create(ctx, fn); err != nil {
			b.Fatal(err)
		}
		nodeFn := &lambdav1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pool-node-%d", round)},
			Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
				Runtime: "nodejs20.x", Handler: "index.handler", Timeout: 10, MemorySize: 128,
				Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "node-code"}}},
			}},
		}
		if err := cluster.Client.Create(ctx, nodeFn); err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{fn.Name, nodeFn.Name} {
			if _, err := cluster.WaitForFunctionActive(ctx, ns, name, 3*time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		if image == "" {
			d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, VersionLatest)
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Name == "function" {
					image = c.Image
				}
			}
		}
		waitForGenericPods(ctx, b, ns, 2)
		measureFloor := func() {
			f, err := plainPodReady(ctx, ns, fmt.Sprintf("floor-%d", round), image)
			if err != nil {
				b.Fatal(err)
			}
			floor = append(floor, f)
		}
		if round%2 == 1 {
			measureFloor()
		}
		c, err := coldInvoke(ctx, cluster.ActivatorURL(ctx, b, ns)+"/2015-03-31/functions/"+fn.Name+"/invocations", token)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := replicas(ctx, ns, fn.Name, VersionLatest); err != nil || n != 0 {
			b.Fatalf("round %d: the function's Deployment has %d replicas (%v): the cold start was not a pool hit", round, n, err)
		}
		hit = append(hit, c)
		nc, err := coldInvoke(ctx, cluster.ActivatorURL(ctx, b, ns)+"/2015-03-31/functions/"+nodeFn.Name+"/invocations", token)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := replicas(ctx, ns, nodeFn.Name, VersionLatest); err != nil || n != 0 {
			b.Fatalf("round %d: the Node.js function's Deployment has %d replicas (%v): the cold start was not a pool hit", round, n, err)
		}
		nodeHit = append(nodeHit, nc)
		if round%2 == 0 {
			measureFloor()
		}
		b.Logf("round %d: pool hit %v (provided.al2023), %v (nodejs20.x), plain pod Ready %v", round, c.Round(time.Millisecond),
			nc.Round(time.Millisecond), floor[len(floor)-1].Round(time.Millisecond))
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(p*float64(len(s)-1)+0.5)]
	}
	h50, h95, f50, f95 := pct(hit, 0.5), pct(hit, 0.95), pct(floor, 0.5), pct(floor, 0.95)
	b.Logf("%d rounds: pool hit p50 %v p95 %v; plain pod Ready p50 %v p95 %v", len(hit),
		h50.Round(time.Millisecond), h95.Round(time.Millisecond), f50.Round(time.Millisecond), f95.Round(time.Millisecond))
	b.Logf("ratios to the floor: p50 %.2f× (target ≤ 0.25×), p95 %.2f× (target ≤ 0.4×)", float64(h50)/float64(f50), float64(h95)/float64(f95))
	n50, n95 := pct(nodeHit, 0.5), pct(nodeHit, 0.95)
	b.Logf("nodejs20.x: pool hit p50 %v p95 %v; ratios to the same floor: p50 %.2f×, p95 %.2f×", n50.Round(time.Millisecond),
		n95.Round(time.Millisecond), float64(n50)/float64(f50), float64(n95)/float64(f95))
	b.ReportMetric(float64(n50.Milliseconds()), "node-hit-p50-ms")
	b.ReportMetric(float64(h50.Milliseconds()), "hit-p50-ms")
	b.ReportMetric(float64(f50.Milliseconds()), "pod-ready-p50-ms")
}

// waitForGenericPods waits until ns has n ready generic pool pods.
func waitForGenericPods(ctx context.Context, t testing.TB, ns string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns), client.HasLabels{contract.LabelPool}); err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
		}
		return ready >= n, nil
	})
	if err != nil {
		t.Fatalf("fewer than %d ready generic pods in %s: %v", n, ns, err)
	}
}
