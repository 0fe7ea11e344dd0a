package feeder

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
)

// earlyReady answers whether the probe found a pod ready before the kubelet did, and
// starts probing a running pod that is not Ready yet.
func (f *Feeder) earlyReady(ctx context.Context, p *corev1.Pod) bool {
	if f.Probe == nil {
		return false
	}
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	if f.probing == nil {
		f.probing, f.probedReady = map[types.UID]bool{}, map[types.UID]bool{}
	}
	if f.wasReady == nil {
		f.wasReady = map[types.UID]bool{}
	}
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning || f.everReady(p) {
		delete(f.probedReady, p.UID)
		return false
	}
	if f.probedReady[p.UID] {
		return true
	}
	if !f.probing[p.UID] {
		f.probing[p.UID] = true
		go f.probe(ctx, p.DeepCopy())
	}
	return false
}

// kubeletReady remembers that the kubelet has reported the pod Ready: from then on its
// Ready condition alone counts (a shim that resets makes the pod NotReady).
func (f *Feeder) kubeletReady(uid types.UID) {
	if f.Probe == nil {
		return
	}
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	if f.wasReady == nil {
		f.wasReady = map[types.UID]bool{}
	}
	f.wasReady[uid] = true
	delete(f.probedReady, uid)
}

// forget drops what is known of a deleted pod.
func (f *Feeder) forget(uid types.UID) {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	delete(f.wasReady, uid)
	delete(f.probedReady, uid)
}

func (f *Feeder) everReady(p *corev1.Pod) bool {
	return PodReady(p) || f.wasReady[p.UID]
}

// probe asks the pod's shim until it is ready, the pod is gone or Ready by the kubelet,
// or a minute has passed; then recomputes the version's environments.
func (f *Feeder) probe(ctx context.Context, p *corev1.Pod) {
	defer func() {
		f.probeMu.Lock()
		delete(f.probing, p.UID)
		f.probeMu.Unlock()
	}()
	interval := f.ProbeInterval
	if interval <= 0 {
		interval = 25 * time.Millisecond
	}
	addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(contract.ShimPort))
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var cur corev1.Pod
		err := f.Cache.Get(ctx, client.ObjectKeyFromObject(p), &cur)
		f.probeMu.Lock()
		stop := err != nil || cur.UID != p.UID || cur.DeletionTimestamp != nil || f.everReady(&cur) || cur.Status.PodIP != p.Status.PodIP
		f.probeMu.Unlock()
		if stop {
			return
		}
		if f.Probe(ctx, addr) {
			f.probeMu.Lock()
			f.probedReady[p.UID] = true
			f.probeMu.Unlock()
			f.Log.V(1).Info("environment ready before the kubelet reported it", "pod", p.Name, "namespace", p.Namespace)
			f.syncEnvironments(ctx, &cur)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// HTTPProbe is Feeder.Probe over HTTP: GET http://addr/readyz answers 200.
func HTTPProbe(c *http.Client) func(ctx context.Context, addr string) bool {
	return func(ctx context.Context, addr string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+contract.ReadyPath, nil)
		if err != nil {
			return false
		}
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// PodReady: running, Ready, has an IP, not being deleted. The shim makes the pod Ready
// only once the runtime has initialised and asked for its first event.
func PodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
