//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/ownership"
)

// TestAsyncNothingLostOnReplicasAndNATS installs the chart's HA shape (two activator
// replicas, the chart's three-server NATS JetStream cluster with the R3 queue: helm upgrade
// with activator.replicas=2, nats.enabled=true) and sends 2,000 asynchronous events through
// the activator's Service while, first, the activator replica that owns the function's
// namespace is killed with SIGKILL as events are accepted and, then, the NATS server that
// leads the queue's stream once 300 have run. Every event answered 202 must run at least once, counted from the function's side
// (the recorder); the test reports duplicates and refused attempts.
//
// Meanwhile 200 synchronous invocations a second (paced) go to another function through the
// Service: only those the killed replica held, or was sent before its endpoint went, may
// fail, all within 20 s of its kill; the NATS server's death fails none (the sync path does
// not use the queue).
//
// The install is restored (one replica, the embedded queue) at the end.
func TestAsyncNothingLostOnReplicasAndNATS(t *testing.T) {
	const total = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (it reinstalls klambda and kills processes on this node)")
	}
	installStart := time.Now()
	installWith(ctx, t, "activator:\n  replicas: 2\nnats:\n  enabled: true\n")
	holders := waitForShardHolders(ctx, t, 2)
	if n := len(natsPods(ctx, t)); n != 3 {
		t.Fatalf("%d Ready NATS servers, want 3", n)
	}
	t.Logf("two activator replicas and three NATS servers Ready %v after helm upgrade", time.Since(installStart).Round(time.Second))

	ns := cluster.Namespace(t)
	rec := cluster.StartRecorder(t)
	asyncCallerTokenCached(t, ns)
	fn := asyncFastRecorderFunction(ctx, t, rec, ns, "many")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	syncRec := cluster.StartRecorder(t)
	syncFn := asyncFastRecorderFunction(ctx, t, syncRec, ns, "sync")
	if err := cluster.Client.Create(ctx, syncFn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, syncFn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	owner := holders[ownership.ShardOf(ns, ownership.DefaultShards)]

	syncURL := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/sync/invocations"
	token := cluster.InvokerToken(ctx, t, ns)
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return replicaCall(ctx, syncURL, token, `{}`) == "200", nil
	}); err != nil {
		t.Fatal("the sync function never answered through the replicas")
	}
	load := startPacedLoad(ctx, syncURL, token, 200)

	start := time.Now()
	ev := sendAsyncEvents(ctx, t, ns, fn.Name, rec, total)
	waitFor := func(what string, cond func() bool) {
		if err := asyncWaitUntil(ctx, 4*time.Minute, cond); err != nil {
			d, _, _ := ev.processed()
			t.Fatalf("waiting for %s: %v (%d accepted, %d run)", what, err, ev.acceptedCount(), d)
		}
	}

	// Kill 1: the namespace's owner, which runs the function's invocations (the other
	// replica's workers forward theirs to it), while events are accepted and run.
	waitFor("600 accepted events", func() bool { return ev.acceptedCount() >= 600 })
	d, _, _ := ev.processed()
	t.Logf("kill 1 at %v: %d accepted, %d run; SIGKILL of activator %s (the namespace's owner)",
		time.Since(start).Round(time.Millisecond), ev.acceptedCount(), d, owner)
	activatorKilled := time.Now()
	killActivatorPod(ctx, t, owner)

	// Kill 2: the NATS server leading the queue's stream, once events are being run (the
	// consumers' acknowledgements, as well as the stored events, are replicated state).
	waitFor("300 events run", func() bool { d, _, _ := ev.processed(); return d >= 300 })
	leader := natsStreamLeader(ctx, t)
	d, _, _ = ev.processed()
	t.Logf("kill 2 at %v: %d accepted, %d run; SIGKILL of NATS server %s (the stream's leader)",
		time.Since(start).Round(time.Millisecond), ev.acceptedCount(), d, leader.Name)
	natsKilled := time.Now()
	killContainerProcess(t, strings.TrimPrefix(leader.Status.ContainerStatuses[0].ContainerID, "containerd://"), "nats-server")

	waitFor("all accepted", func() bool { return ev.acceptedCount() == total })
	ev.wg.Wait()
	t.Logf("all %d accepted at %v (%d attempts refused)", total, time.Since(start).Round(time.Millisecond), ev.refused.Load())

	err := asyncWaitUntil(ctx, 4*time.Minute, func() bool { d, _, _ := ev.processed(); return d == total })
	took := load.stop()
	d, dup, unknown := ev.processed()

	// The sync load: failures only within 20 s of the activator's kill.
	const recovery = 20 * time.Second
	var late []string
	for _, f := range load.failures {
		if f.at.Before(activatorKilled) || f.at.Sub(activatorKilled) > recovery {
			late = append(late, fmt.Sprintf("%v after the activator's kill (%v after the NATS server's): %s",
				f.at.Sub(activatorKilled).Round(time.Millisecond), f.at.Sub(natsKilled).Round(time.Millisecond), f.answer))
		}
	}
	t.Logf("sync load: %d invocations in %v (%.0f/s; %d not sent, the load's 64 callers all busy), %d succeeded, %d failed",
		load.sent, took.Round(time.Millisecond), float64(load.sent)/took.Seconds(), load.skipped, load.ok, len(load.failures))
	if len(load.failures) > 0 {
		last := load.failures[len(load.failures)-1]
		t.Logf("sync failures: %v; the last %v after the activator's kill", load.kinds, last.at.Sub(activatorKilled).Round(time.Millisecond))
	}
	if len(late) > 0 {
		t.Errorf("%d sync invocations failed outside the %v after the activator's kill, e.g. %s", len(late), recovery, late[0])
	}
	if load.ok == 0 {
		t.Error("no sync invocation succeeded")
	}
	if err != nil {
		t.Fatalf("LOST: %d of %d accepted events never ran (e.g. %s)", total-d, total, strings.Join(ev.missing(10), ", "))
	}
	t.Logf("nothing lost: %d accepted events all ran, in %v, with an activator replica and a NATS server SIGKILLed; "+
		"%d duplicate runs; %d runs of events whose 202 was lost (sent again); %d attempts refused",
		total, time.Since(start).Round(time.Millisecond), dup, unknown, ev.refused.Load())
	// Both killed containers come back.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return readyActivators(ctx) == 2 && len(natsPods(ctx, t)) == 3, nil
	})
	if err != nil {
		t.Errorf("the killed activator and NATS server did not become Ready again: %v", err)
	}
}

// natsPods are the Ready servers of the chart's NATS cluster.
func natsPods(ctx context.Context, t *testing.T) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system"), client.MatchingLabels{"app.kubernetes.io/component": "nats"}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) && p.Status.PodIP != "" && len(p.Status.ContainerStatuses) == 1 {
			out = append(out, p)
		}
	}
	return out
}

// natsStreamLeader is the NATS server leading the async queue's stream (KLAMBDA_ASYNC), as
// the servers' monitoring endpoint says (/jsz; the node may reach it).
func natsStreamLeader(ctx context.Context, t *testing.T) corev1.Pod {
	t.Helper()
	pods := natsPods(ctx, t)
	if len(pods) == 0 {
		t.Fatal("no Ready NATS server")
	}
	for _, p := range pods {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:8222/jsz?accounts=true&streams=true", p.Status.PodIP), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name    string `json:"name"`
					Cluster struct {
						Leader string `json:"leader"`
					} `json:"cluster"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				if s.Name != "KLAMBDA_ASYNC" {
					continue
				}
				for _, q := range pods {
					if q.Name == s.Cluster.Leader {
						return q
					}
				}
			}
		}
	}
	t.Logf("no server names the stream's leader: killing %s", pods[0].Name)
	return pods[0]
}

// pacedLoad invokes a function synchronously at a fixed rate (from at most 64 callers at once;
// a tick that finds them all busy is counted as skipped, not queued).
type pacedLoad struct {
	mu       sync.Mutex
	sent     int
	skipped  int
	ok       int
	failures []loadFailure
	kinds    map[string]int
	done     chan struct{}
	wg       sync.WaitGroup
	start    time.Time
}

type loadFailure struct {
	at     time.Time
	answer string
}

func startPacedLoad(ctx context.Context, url, token string, perSecond int) *pacedLoad {
	l := &pacedLoad{kinds: map[string]int{}, done: make(chan struct{}), start: time.Now()}
	slots := make(chan struct{}, 64)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				l.mu.Lock()
				l.skipped++
				l.mu.Unlock()
				continue
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() { <-slots }()
				got := replicaCall(ctx, url, token, `{}`)
				l.mu.Lock()
				defer l.mu.Unlock()
				l.sent++
				if got == "200" {
					l.ok++
					return
				}
				l.failures = append(l.failures, loadFailure{time.Now(), got})
				k := got
				if len(k) > 80 {
					k = k[:80]
				}
				l.kinds[k]++
			}()
		}
	}()
	return l
}

// stop ends the load, waits for the invocations in flight, and says how long it ran.
func (l *pacedLoad) stop() time.Duration {
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.failures, func(i, j int) bool { return l.failures[i].at.Before(l.failures[j].at) })
	return time.Since(l.start)
}
