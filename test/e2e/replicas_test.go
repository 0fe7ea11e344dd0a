//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/ownership"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestActivatorReplicas runs three activator replicas (helm upgrade: activator.replicas=3;
// async off, since the local cluster's queue is the embedded one, which belongs to one
// replica) and invokes a function with reserved concurrency 4 from 16 callers through the
// activator's Service, which spreads them over the replicas:
//   - for 60 s, only successes and reserved-concurrency throttles come back, whichever
//     replica a caller reaches; measured from the function's side (each invocation's
//     start and end on the node's clock), at most 4 run at once, and no shim ever
//     receives a second invocation while one runs (its log's refusal lines: 0). The
//     exactness of the shared count is also proven in-process, where nothing else caps
//     it (activator/replicas); here the Deployment is capped at 4 too;
//   - a function at zero scales up whichever replica its first request reaches, and back
//     to zero once idle;
//   - a rolling restart of the activator fails no invocation;
//   - SIGKILL of the namespace's owner fails only what it held or was sent before its
//     endpoint went, within 20 s of the kill; then the shard has moved and nothing fails.
//
// The install is restored (one replica, async on) at the end.
func TestActivatorReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (it reinstalls klambda and kills an activator process on this node)")
	}
	installWith(ctx, t, "activator:\n  replicas: 3\n  async: {enabled: false}\n")
	holders := waitForShardHolders(ctx, t, 3)
	t.Logf("three replicas hold the shards: %v", holders)

	const reserved, sleep = 4, 1
	ns := cluster.Namespace(t)
	shellFunction(ctx, t, ns, "slow", timedHandler, func(f *lambdav1alpha1.Function) { f.Spec.ReservedConcurrentExecutions = aws.Int32(reserved) })
	url := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/slow/invocations"
	token := cluster.InvokerToken(ctx, t, ns)
	// Warm: the first environments start from zero.
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return replicaCall(ctx, url, token, `{"sleep":0}`) == "200", nil
	})
	if err != nil {
		t.Fatal("the function never answered through the replicas")
	}

	// 1. Steady: only successes and throttles, successes within what 4 environments run,
	// at most 4 at once as the function sees it, and no shim refused a second invocation.
	// Connection steering (on by default) moves the callers' kept-alive connections to
	// the namespace's owner: logged, from the replicas' metrics, as the share of answers
	// that needed no forward.
	fwd0, closes0 := replicasMetric(ctx, t, "klambda_activator_forwarded_invocations_total"), replicasMetric(ctx, t, "klambda_activator_steered_connections_total")
	var runs []timedRun
	var runsMu sync.Mutex
	seen, took := replicaLoad(ctx, url, token, 16, 60*time.Second, func(body []byte) {
		var r timedRun
		if err := json.Unmarshal(body, &r); err != nil || r.End < r.Start {
			t.Errorf("the function's answer %q: %v", body, err)
			return
		}
		runsMu.Lock()
		runs = append(runs, r)
		runsMu.Unlock()
	}, nil)
	t.Logf("steady, 16 callers for %v (%s): %v", took.Round(time.Millisecond), perSecond(seen, took), seen)
	checkReplicaAnswers(t, seen, 0)
	answers := 0
	for _, n := range seen {
		answers += n
	}
	fwd, closes := replicasMetric(ctx, t, "klambda_activator_forwarded_invocations_total")-fwd0, replicasMetric(ctx, t, "klambda_activator_steered_connections_total")-closes0
	t.Logf("connection steering: %d of %d answers forwarded (%.1f %% answered by the owner without a forward; about 33 %% without steering), %d steering closes",
		fwd, answers, 100-100*float64(fwd)/float64(max(answers, 1)), closes)
	if max := reserved*int(took/(sleep*time.Second)) + reserved; seen["200"] > max {
		t.Errorf("%d invocations of %d s ran in %v with reserved concurrency %d (at most %d): the replicas did not share one count",
			seen["200"], sleep, took, reserved, max)
	}
	peak := maxConcurrent(runs)
	t.Logf("the function saw at most %d invocations at once (%d timed)", peak, len(runs))
	if peak > reserved || peak < 2 {
		t.Errorf("the function saw at most %d invocations at once with reserved concurrency %d (want 2 to %d)", peak, reserved, reserved)
	}
	if n := busyRefusals(ctx, t, ns, "slow"); n != 0 {
		t.Errorf("the shims refused %d invocations sent while another ran in their environment: one environment was booked twice", n)
	}

	// Scale from zero whichever replica the first request reaches: one function born at
	// zero per replica, each first invoked through that replica's own address; and back to
	// zero once idle (2 s here, by annotation), by the owner alone.
	pods := activatorPods(ctx, t)
	var cold []string
	for i, pod := range pods {
		name := "cold-" + strconv.Itoa(i)
		cold = append(cold, name)
		probeFunction(ctx, t, ns, name, func(f *lambdav1alpha1.Function) {
			f.Annotations = map[string]string{contract.AnnotationIdleTimeout: "2s"}
		})
		direct := "http://" + pod.Status.PodIP + ":8080/namespaces/" + ns + "/2015-03-31/functions/" + name + "/invocations"
		start := time.Now()
		if got := replicaCall(ctx, direct, token, `{"sleep":0}`); got != "200" {
			t.Errorf("%s from zero through replica %s: %s", name, pod.Name, got)
		} else {
			t.Logf("%s from zero through replica %s (shard owner %s): %v", name, pod.Name,
				holders[ownership.ShardOf(ns, ownership.DefaultShards)], time.Since(start).Round(time.Millisecond))
		}
	}

	start := time.Now()
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range cold {
			d, err := cluster.FunctionDeployment(ctx, ns, name, VersionLatest)
			if err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 0 || d.Status.Replicas != 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("the functions invoked through each replica did not scale back to zero: %v", err)
	} else {
		t.Logf("all three back to zero %v after their invocations", time.Since(start).Round(time.Millisecond))
	}

	// 2. A rolling restart of the activator while the callers go on: no invocation fails.
	seen, took = replicaLoad(ctx, url, token, 16, 0, nil, func() {
		restart := exec.CommandContext(ctx, kubectlPath(), "-n", "klambda-system", "rollout", "restart", "deployment/klambda-activator")
		restart.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
		if out, err := restart.CombinedOutput(); err != nil {
			t.Errorf("rollout restart: %v: %s", err, out)
			return
		}
		status := exec.CommandContext(ctx, kubectlPath(), "-n", "klambda-system", "rollout", "status", "deployment/klambda-activator", "--timeout=5m")
		status.Env = restart.Env
		if out, err := status.CombinedOutput(); err != nil {
			t.Errorf("rollout status: %v: %s", err, out)
		}
		time.Sleep(5 * time.Second) // the last replaced replica drains
	})
	t.Logf("rolling restart, 16 callers for %v (%s): %v", took.Round(time.Millisecond), perSecond(seen, took), seen)
	checkReplicaAnswers(t, seen, 0)
	holders = waitForShardHolders(ctx, t, 3)

	// 3. SIGKILL of the replica that owns the test's namespace: what it held fails (its
	// callers' requests in flight, and new connections the Service still sends it until
	// its endpoint goes); the shard moves once its Lease expires, and then nothing fails.
	owner := holders[ownership.ShardOf(ns, ownership.DefaultShards)]
	var killedAt time.Time
	const recovery = 20 * time.Second
	seen, took = replicaLoad(ctx, url, token, 16, 0, nil, func() {
		time.Sleep(3 * time.Second)
		killedAt = time.Now()
		killActivatorPod(ctx, t, owner)
		time.Sleep(recovery + 10*time.Second)
	})
	failed := 0
	for k, n := range seen {
		if k != "200" && k != "429 TooManyRequestsException" {
			failed += n
		}
	}
	t.Logf("SIGKILL of the owner %s, 16 callers for %v (%s): %v", owner, took.Round(time.Millisecond), perSecond(seen, took), seen)
	switch {
	case failed > 0 && lastFailure.Before(killedAt):
		t.Errorf("answers failed before the kill: %v", seen)
	case failed > 0 && lastFailure.Sub(killedAt) > recovery:
		t.Errorf("answers still failed %v after the kill (want none after %v): %v", lastFailure.Sub(killedAt).Round(time.Millisecond), recovery, seen)
	case failed > 0:
		t.Logf("%d answers failed, the last %v after the kill", failed, lastFailure.Sub(killedAt).Round(time.Millisecond))
	}
	if seen["200"] == 0 {
		t.Errorf("no invocation succeeded: %v", seen)
	}
}

// installWith reinstalls klambda with values (YAML over the local install's) for the rest
// of the test, and restores the usual install when the test ends.
func installWith(ctx context.Context, t testing.TB, values string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	reinstall(ctx, t, file)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		reinstall(ctx, t, "")
	})
}

// reinstall runs hack/cluster/install.sh (helm upgrade, then the rollouts' end) with an
// extra values file (none: the usual install).
func reinstall(ctx context.Context, t testing.TB, values string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(cluster.RepoRoot, "hack", "cluster", "install.sh"))
	cmd.Dir = cluster.RepoRoot
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "IMAGE_VALUES="+values)
	out, err := cmd.CombinedOutput()
	cluster.forgetActivatorURL() // the install may have made a new Service
	if err != nil {
		t.Fatalf("hack/cluster/install.sh with %q: %v\n%s", values, err, out)
	}
}

func kubectlPath() string {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	matches, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache", "klambda", "kube-v*", "bin", "kubectl"))
	sort.Strings(matches)
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return "kubectl"
}

// waitForShardHolders waits until every shard Lease is held by a live replica and n
// replicas hold some; it returns each shard's holder (pod name).
func waitForShardHolders(ctx context.Context, t *testing.T, n int) []string {
	t.Helper()
	var holders []string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var leases coordinationv1.LeaseList
		if err := cluster.Client.List(ctx, &leases, client.InNamespace("klambda-system"), client.HasLabels{ownership.LeaseLabel}); err != nil {
			return false, nil
		}
		holders = make([]string, ownership.DefaultShards)
		distinct := map[string]bool{}
		for _, l := range leases.Items {
			s, err := strconv.Atoi(l.Name[strings.LastIndex(l.Name, "-")+1:])
			if err != nil || s >= len(holders) || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil ||
				time.Since(l.Spec.RenewTime.Time) > 6*time.Second {
				continue
			}
			pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "@")
			holders[s] = pod
			distinct[pod] = true
		}
		for _, h := range holders {
			if h == "" {
				return false, nil
			}
		}
		return len(distinct) == n && readyActivators(ctx) == n, nil
	})
	if err != nil {
		t.Fatalf("the shards are not held by %d replicas: %v", n, holders)
	}
	return holders
}

// replicasMetric sums a counter without labels over the Ready activator pods' metrics.
func replicasMetric(ctx context.Context, t *testing.T, name string) int {
	t.Helper()
	sum := 0
	for _, p := range activatorPods(ctx, t) {
		resp, err := cluster.ActivatorMetrics(ctx, p.Status.PodIP)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s of %s: %q", name, p.Name, l)
				}
				sum, found = sum+int(f), true
			}
		}
		if !found {
			t.Fatalf("%s has no %s", p.Name, name)
		}
	}
	return sum
}

// activatorPods are the Ready activator pods.
func activatorPods(ctx context.Context, t *testing.T) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system"), client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) && p.Status.PodIP != "" {
			out = append(out, p)
		}
	}
	return out
}

func readyActivators(ctx context.Context) int {
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system"), client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		return 0
	}
	n := 0
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && podReady(p) {
			n++
		}
	}
	return n
}

// killActivatorPod sends SIGKILL to the activator process of pod name (this node's).
func killActivatorPod(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	var pod corev1.Pod
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: "klambda-system", Name: name}, &pod); err != nil {
		t.Fatal(err)
	}
	t.Logf("killing activator %s", name)
	killActivatorProcess(t, strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://"))
}

// replicaCall invokes once; the answer as "200", "429 <type>", "<status> <type>: <body>"
// or "error: ...".
func replicaCall(ctx context.Context, url, token, payload string) string {
	got, _ := replicaCallBody(ctx, url, token, payload)
	return got
}

// replicaCallBody is replicaCall, with the function's answer when it succeeded.
func replicaCallBody(ctx context.Context, url, token, payload string) (string, []byte) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(payload))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := replicaClient.Do(req)
	if err != nil {
		return "error: " + err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.Header.Get("X-Amz-Function-Error") != "" {
			return "200 function error: " + string(b), nil
		}
		return "200", b
	case http.StatusTooManyRequests:
		return "429 " + resp.Header.Get("X-Amzn-Errortype"), nil
	}
	return strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get("X-Amzn-Errortype") + ": " + string(b), nil
}

// timedHandler sleeps as probeHandler does and answers when it started and ended, in
// seconds on the node's clock (/proc/uptime is not namespaced: every pod of the node reads
// the same clock, in hundredths of a second).
const timedHandler = `handler() {
	read -r a _ < /proc/uptime
	s=$(printf '%s' "$1" | sed -n 's/.*"sleep": *\([0-9][0-9]*\).*/\1/p')
	[ -z "$s" ] || sleep "$s"
	read -r b _ < /proc/uptime
	printf '{"start":%s,"end":%s}' "$a" "$b"
}
`

// timedRun is timedHandler's answer.
type timedRun struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// maxConcurrent is the most runs that overlap at one moment. Each run is shortened by
// 20 ms at both ends first, so that the clock's 10 ms steps never make an environment's
// next run, or another environment's run that began as this one ended, look concurrent.
func maxConcurrent(runs []timedRun) int {
	type edge struct {
		at    float64
		delta int
	}
	var edges []edge
	for _, r := range runs {
		if s, e := r.Start+0.02, r.End-0.02; s < e {
			edges = append(edges, edge{s, 1}, edge{e, -1})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta // an end before a start at the same moment
	})
	n, peak := 0, 0
	for _, e := range edges {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// busyRefusals counts the invocations the shims of function name refused because one was
// already running in their environment (contract.BusyRefusalLog lines in the pods' logs).
func busyRefusals(ctx context.Context, t *testing.T, ns, name string) int {
	t.Helper()
	pods, err := cluster.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: contract.LabelFunction + "=" + contract.FunctionLabelValue(name)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no pod of %s to read the logs of", name)
	}
	n := 0
	for _, p := range pods.Items {
		for _, c := range p.Spec.Containers {
			b, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
			if err != nil {
				t.Fatalf("logs of %s/%s: %v", p.Name, c.Name, err)
			}
			n += strings.Count(string(b), contract.BusyRefusalLog)
		}
	}
	return n
}

var replicaClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: time.Minute}

// lastFailure is when replicaLoad last saw an answer other than a success or a throttle.
var lastFailure time.Time

// replicaLoad runs callers invoking the function (1 s each) until d has passed, or, with
// during, until during returns; it returns the answers seen and how long it ran, and sets
// lastFailure.
func replicaLoad(ctx context.Context, url, token string, callers int, d time.Duration, onSuccess func(body []byte), during func()) (map[string]int, time.Duration) {
	stop := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	lastFailure = time.Time{}
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, body := replicaCallBody(ctx, url, token, `{"sleep":1}`)
				if body != nil && onSuccess != nil {
					onSuccess(body)
				}
				mu.Lock()
				seen[got]++
				if got != "200" && got != "429 TooManyRequestsException" {
					lastFailure = time.Now()
				}
				mu.Unlock()
				if got != "200" {
					time.Sleep(50 * time.Millisecond) // a throttled caller retries, not spins: ~200-300 requests/s in all
				}
			}
		}()
	}
	if during != nil {
		during()
	} else {
		time.Sleep(d)
	}
	close(stop)
	wg.Wait()
	return seen, time.Since(start)
}

// perSecond says how many requests a second the answers in seen came at.
func perSecond(seen map[string]int, took time.Duration) string {
	n := 0
	for _, c := range seen {
		n += c
	}
	return strconv.FormatFloat(float64(n)/took.Seconds(), 'f', 0, 64) + " requests/s"
}

// checkReplicaAnswers fails unless the answers are successes and reserved-concurrency
// throttles, but for at most failures others.
func checkReplicaAnswers(t *testing.T, seen map[string]int, failures int) {
	t.Helper()
	other := 0
	for k, n := range seen {
		if k != "200" && k != "429 TooManyRequestsException" {
			other += n
		}
	}
	if other > failures {
		t.Errorf("%d answers were neither a success nor the reserved-concurrency throttle (at most %d may be): %v", other, failures, seen)
	}
	if seen["200"] == 0 {
		t.Errorf("no invocation succeeded: %v", seen)
	}
}
