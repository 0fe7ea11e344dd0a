//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestAsyncNothingLostWhenActivatorKilled accepts 2,000 asynchronous events while the
// activator is killed with SIGKILL twice (once while events are being accepted and run,
// once while the backlog is being run), and Kubernetes restarts its container on the same
// JetStream store (the chart's volume). Every event answered 202 must reach the function at
// least once; the test reports how many ran more than once.
func TestAsyncNothingLostWhenActivatorKilled(t *testing.T) {
	const total = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster: the test kills the activator's process on this node")
	}
	ns := cluster.Namespace(t)
	rec := cluster.StartRecorder(t)
	asyncCallerTokenCached(t, ns) // here, not first in a sender goroutine (it may fail the test)
	fn := asyncFastRecorderFunction(ctx, t, rec, ns, "many")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	pod, err := asyncActivatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restarts := pod.Status.ContainerStatuses[0].RestartCount

	start := time.Now()
	ev := sendAsyncEvents(ctx, t, ns, fn.Name, rec, total)
	acceptedCount, processed := ev.acceptedCount, ev.processed

	// Kill 1: while events are accepted (the function may still be starting from zero).
	// Kill 2: once all are accepted, while the backlog runs.
	waitFor := func(what string, cond func() bool) {
		if err := asyncWaitUntil(ctx, 3*time.Minute, cond); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	waitFor("700 accepted events", func() bool { return acceptedCount() >= 700 })
	d, _, _ := processed()
	t.Logf("kill 1 at %v: %d accepted, %d run", time.Since(start).Round(time.Millisecond), acceptedCount(), d)
	asyncKillActivator(ctx, t, restarts)
	waitFor("all accepted", func() bool { return acceptedCount() == total })
	waitFor("a restarted activator", func() bool { return asyncActivatorRestarted(ctx, restarts+1) })
	t.Logf("all %d accepted at %v (%d attempts refused while the activator was down)",
		total, time.Since(start).Round(time.Millisecond), ev.refused.Load())
	waitFor("a quarter of the events run", func() bool { d, _, _ := processed(); return d >= total/4 })
	d, _, _ = processed()
	t.Logf("kill 2 at %v: %d run", time.Since(start).Round(time.Millisecond), d)
	asyncKillActivator(ctx, t, restarts+1)
	ev.wg.Wait()

	err = asyncWaitUntil(ctx, 3*time.Minute, func() bool { d, _, _ := processed(); return d == total })
	d, dup, unknown := processed()
	if err != nil {
		t.Fatalf("LOST: %d of %d accepted events never ran (e.g. %s)", total-d, total, strings.Join(ev.missing(10), ", "))
	}
	t.Logf("nothing lost: %d accepted events all ran, in %v, with the activator SIGKILLed twice; %d duplicate runs; "+
		"%d runs of events whose 202 was lost with the activator (sent again); %d attempts refused",
		total, time.Since(start).Round(time.Millisecond), dup, unknown, ev.refused.Load())
	// The restarted activator may run the backlog before its readiness probe passes.
	if err := asyncWaitUntil(ctx, time.Minute, func() bool { return asyncActivatorRestarted(ctx, restarts+2) }); err != nil {
		t.Errorf("the activator's container did not restart twice and become Ready: %v", err)
	}
}

// asyncEvents are total asynchronous events sent by 16 senders, each until one attempt is
// answered 202 (attempts refused while an activator or the queue is down are counted and
// sent again), and what the function's side (rec) saw of them.
type asyncEvents struct {
	rec      *Recorder
	mu       sync.Mutex
	accepted map[string]int // request id → event number
	refused  atomic.Int64   // attempts not answered 202
	next     atomic.Int64
	wg       sync.WaitGroup // the senders; done once every event is accepted
}

func sendAsyncEvents(ctx context.Context, t *testing.T, ns, fn string, rec *Recorder, total int) *asyncEvents {
	e := &asyncEvents{rec: rec, accepted: map[string]int{}}
	for range 16 {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			for {
				n := int(e.next.Add(1) - 1)
				if n >= total {
					return
				}
				for try := 0; ctx.Err() == nil; try++ {
					a, err := invokeAsync(ctx, t, ns, fn, fmt.Appendf(nil, `{"n":%d,"try":%d}`, n, try))
					if err == nil && a.Status == 202 && a.RequestID != "" {
						e.mu.Lock()
						e.accepted[a.RequestID] = n
						e.mu.Unlock()
						break
					}
					e.refused.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	return e
}

func (e *asyncEvents) acceptedCount() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.accepted) }

// processed counts the accepted events the function ran (distinct), their runs beyond the
// first (duplicates), and runs of events never answered 202 (unknown: stored, but the 202
// was lost with an activator, and the event was sent again).
func (e *asyncEvents) processed() (distinct, duplicates, unknown int) {
	runs := map[string]int{}
	for _, c := range e.rec.Calls() {
		runs[c.RequestID]++
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, n := range runs {
		if _, ok := e.accepted[id]; !ok {
			unknown += n
			continue
		}
		distinct++
		duplicates += n - 1
	}
	return distinct, duplicates, unknown
}

// missing names up to max accepted events the function has not run.
func (e *asyncEvents) missing(max int) []string {
	runs := map[string]bool{}
	for _, c := range e.rec.Calls() {
		runs[c.RequestID] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, n := range e.accepted {
		if !runs[id] && len(out) < max {
			out = append(out, fmt.Sprintf("%d (%s)", n, id))
		}
	}
	return out
}

// asyncActivatorRestarted tells whether the activator's container has restarted at least n
// times (in all) and is Ready again.
func asyncActivatorRestarted(ctx context.Context, n int32) bool {
	pod, err := asyncActivatorPod(ctx)
	return err == nil && pod.Status.ContainerStatuses[0].RestartCount >= n
}

// asyncKillActivator sends SIGKILL to the activator's process on this node (the local cluster's
// node is this machine): the process whose cgroup is the activator pod's container and
// whose name is "activator". restarts is the container's restart count it expects to kill.
func asyncKillActivator(ctx context.Context, t *testing.T, restarts int32) {
	t.Helper()
	pod, err := asyncActivatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := pod.Status.ContainerStatuses[0]
	if st.RestartCount != restarts || !strings.HasPrefix(st.ContainerID, "containerd://") {
		t.Fatalf("activator container %s restarted %d times, want %d", st.ContainerID, st.RestartCount, restarts)
	}
	killActivatorProcess(t, strings.TrimPrefix(st.ContainerID, "containerd://"))
}

// killActivatorProcess sends SIGKILL to the process named "activator" whose cgroup is
// container id's (this node's: the local cluster's node is this machine).
func killActivatorProcess(t *testing.T, id string) {
	t.Helper()
	killContainerProcess(t, id, "activator")
}

// killContainerProcess sends SIGKILL to the process named comm whose cgroup is container
// id's (this node's: the local cluster's node is this machine).
func killContainerProcess(t *testing.T, id, comm string) {
	t.Helper()
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		name, err := os.ReadFile(filepath.Join(p, "comm"))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(p, "cgroup"))
		if err != nil || !strings.Contains(string(cg), id) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(p))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
		t.Logf("killed %s (pid %d, container %.12s) with SIGKILL", comm, pid, id)
		return
	}
	t.Fatalf("no %s process in container %.12s on this node", comm, id)
}

// asyncFastRecorderFunction is cluster.RecorderFunction with the recorder runtime built in Go
// (testdata/fastrecorder): the shell one forks about fifteen processes per event, which on
// the shared two cores takes seconds per event under load.
func asyncFastRecorderFunction(ctx context.Context, t *testing.T, rec *Recorder, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	fn := cluster.RecorderFunction(t, rec, ns, name)
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./test/e2e/testdata/fastrecorder")
	build.Dir = cluster.RepoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the Go recorder runtime: %v\n%s", err, out)
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	url, sha, err := cluster.ServeCode(ns+"-"+name+"-go.zip", BootstrapZip(t, code))
	if err != nil {
		t.Fatal(err)
	}
	fn.Spec.Code = lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}}
	return fn
}
