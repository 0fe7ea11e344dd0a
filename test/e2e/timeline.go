//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// timeline records, with the time each was seen, what happens on the cluster while a test
// rolls klambda: the pods of some namespaces (created, unschedulable, running, ready,
// terminating, gone), the holders of the activator's shard Leases, Warning events, and the
// test's own steps. It explains a failed invocation by what happened around it.
type timeline struct {
	start time.Time
	mu    sync.Mutex
	lines []timelineLine
	pods  map[string]string // namespace/name → last state recorded
	lease map[string]string // lease name → last holder recorded
	// holders is each shard Lease's holders (pod names, "" for none) as they changed.
	holders map[string][]held
	ctx     context.Context
	// following: the activator pods whose log is followed into the timeline.
	following map[string]bool
}

type held struct {
	at     time.Time
	holder string
}

type timelineLine struct {
	at   time.Time
	what string
}

// watchTimeline records the pods of namespaces, klambda-system's shard Leases and the
// namespaces' Warning events until ctx ends.
func watchTimeline(ctx context.Context, namespaces ...string) (*timeline, error) {
	tl := &timeline{start: time.Now(), pods: map[string]string{}, lease: map[string]string{}, holders: map[string][]held{}, ctx: ctx, following: map[string]bool{}}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(cluster.Kube, 0, informers.WithNamespace(ns))
		pods := f.Core().V1().Pods().Informer()
		if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { tl.pod(o, false) },
			UpdateFunc: func(_, o any) { tl.pod(o, false) },
			DeleteFunc: func(o any) { tl.pod(o, true) },
		}); err != nil {
			return nil, err
		}
		events := f.Core().V1().Events().Informer()
		if _, err := events.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    tl.event,
			UpdateFunc: func(_, o any) { tl.event(o) },
		}); err != nil {
			return nil, err
		}
		if ns == "klambda-system" {
			leases := f.Coordination().V1().Leases().Informer()
			if _, err := leases.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    tl.leaseChanged,
				UpdateFunc: func(_, o any) { tl.leaseChanged(o) },
			}); err != nil {
				return nil, err
			}
		}
		f.Start(ctx.Done())
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return nil, fmt.Errorf("timeline: the %v informer of %s did not sync", typ, ns)
			}
		}
	}
	tl.add("timeline starts")
	return tl, nil
}

// add records one of the test's own steps.
func (tl *timeline) add(format string, args ...any) {
	tl.mu.Lock()
	tl.lines = append(tl.lines, timelineLine{at: time.Now(), what: fmt.Sprintf(format, args...)})
	tl.mu.Unlock()
}

func (tl *timeline) pod(o any, deleted bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	state := "gone"
	if !deleted {
		state = podState(p)
	}
	key := p.Namespace + "/" + p.Name
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.pods[key] == state {
		return
	}
	tl.pods[key] = state
	if p.Labels["app.kubernetes.io/component"] == "activator" && p.Status.Phase == corev1.PodRunning && !tl.following[key] {
		tl.following[key] = true
		go tl.follow(p.Namespace, p.Name)
	}
	image := ""
	if len(p.Spec.Containers) > 0 {
		image = p.Spec.Containers[0].Image[strings.LastIndex(p.Spec.Containers[0].Image, "/")+1:]
	}
	tl.lines = append(tl.lines, timelineLine{at: time.Now(), what: fmt.Sprintf("pod %s (%s, %s): %s", key, image, p.Status.PodIP, state)})
}

// podState: pending (and why it is not scheduled), running, ready, terminating.
func podState(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "terminating"
	case podReady(p):
		return "ready"
	case p.Status.Phase == corev1.PodRunning:
		return "running"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "unschedulable: " + c.Message
		}
	}
	if p.Spec.NodeName != "" {
		return "scheduled"
	}
	return "pending"
}

func (tl *timeline) event(o any) {
	e, ok := o.(*corev1.Event)
	if !ok || e.Type != corev1.EventTypeWarning || e.LastTimestamp.Time.Before(tl.start.Add(-time.Second)) && e.EventTime.Time.Before(tl.start.Add(-time.Second)) {
		return
	}
	tl.add("event %s %s/%s: %s: %s (×%d)", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, e.Count)
}

func (tl *timeline) leaseChanged(o any) {
	l, ok := o.(*coordinationv1.Lease)
	if !ok || !strings.Contains(l.Name, "-shard-") {
		return
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder, _, _ = strings.Cut(*l.Spec.HolderIdentity, "@")
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if prev, seen := tl.lease[l.Name]; seen && prev == holder {
		return
	}
	tl.lease[l.Name] = holder
	tl.holders[l.Name] = append(tl.holders[l.Name], held{at: time.Now(), holder: holder})
	if holder == "" {
		holder = "(nobody)"
	}
	tl.lines = append(tl.lines, timelineLine{at: time.Now(), what: fmt.Sprintf("lease %s: held by %s", l.Name, holder)})
}

// follow records an activator pod's log lines (not its per-request ones) until the pod
// or the timeline ends.
func (tl *timeline) follow(ns, name string) {
	stream, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Follow: true}).Stream(tl.ctx)
	if err != nil {
		tl.add("log of %s: %v", name, err)
		return
	}
	defer stream.Close()
	sc := bufio.NewScanner(stream)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		tl.add("log %s: %s", name, line)
	}
}

// holderAt is the pod that held Lease name at t as far as the timeline saw ("" for none,
// or before the first record).
func (tl *timeline) holderAt(name string, t time.Time) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	h := ""
	for _, r := range tl.holders[name] {
		if r.at.After(t) {
			break
		}
		h = r.holder
	}
	return h
}

// String is every line, each with its time since the timeline started.
func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	for _, l := range tl.lines {
		fmt.Fprintf(&b, "  %8.3fs %s\n", l.at.Sub(tl.start).Seconds(), l.what)
	}
	return b.String()
}

// offset is t's time since the timeline started, in seconds.
func (tl *timeline) offset(t time.Time) float64 { return t.Sub(tl.start).Seconds() }
