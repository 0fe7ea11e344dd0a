// Package pool takes pre-warmed generic environments for cold starts (docs/pools.md): it
// keeps the ready generic pods of each namespace and pool key, gives one to a cold start
// (at most once: a pod taken is gone from the index whatever happens next), fills in the
// function version's specialization template for that pod, claims the pod for the
// version's Deployment, and specializes its shim.
//
// Starter (starter.go) does this for the scaler's cold starts (scaler.Prewarmed).
package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/api/contract"
)

// Metrics of the pools.
type Metrics struct {
	// Size is the number of ready generic pods, by namespace and pool key.
	Size *prometheus.GaugeVec
	// Hits and Misses count cold starts that found a generic pod or did not.
	Hits, Misses *prometheus.CounterVec
}

// NewMetrics registers the pool metrics with reg (nil: a registry of their own).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	labels := []string{"namespace", "pool"}
	m := &Metrics{
		Size:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "klambda_pool_size", Help: "Ready generic environments waiting in a pool."}, labels),
		Hits:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "klambda_pool_hits_total", Help: "Cold starts served by a pool's generic environment."}, labels),
		Misses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "klambda_pool_misses_total", Help: "Cold starts of a pool-eligible version that found its pool empty."}, labels),
	}
	reg.MustRegister(m.Size, m.Hits, m.Misses)
	return m
}

type poolID struct{ namespace, key string }

// Index holds the ready generic pods of every pool this activator may take from. Feed it
// with Update from the pod informer (pods labelled contract.LabelPool).
type Index struct {
	Metrics *Metrics

	mu    sync.Mutex
	ready map[poolID][]*corev1.Pod
	// taken: pods handed out; never handed out again, even while the informer still shows
	// them generic.
	taken map[types.UID]bool
}

// NewIndex is an empty index.
func NewIndex(m *Metrics) *Index {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Index{Metrics: m, ready: map[poolID][]*corev1.Pod{}, taken: map[types.UID]bool{}}
}

// Update replaces the view with pods: those still carrying contract.LabelPool, running
// with an IP, Ready, not being deleted, and never taken, count.
func (x *Index) Update(pods []*corev1.Pod) {
	next := map[poolID][]*corev1.Pod{}
	seen := map[types.UID]bool{}
	for _, p := range pods {
		key := p.Labels[contract.LabelPool]
		seen[p.UID] = true
		if key == "" || p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(p) {
			continue
		}
		id := poolID{p.Namespace, key}
		next[id] = append(next[id], p)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for uid := range x.taken {
		if !seen[uid] {
			delete(x.taken, uid) // gone from the informer's view: forget it
		}
	}
	for id := range x.ready {
		if _, ok := next[id]; !ok {
			x.Metrics.Size.WithLabelValues(id.namespace, id.key).Set(0)
		}
	}
	for id, ps := range next {
		kept := ps[:0]
		for _, p := range ps {
			if !x.taken[p.UID] {
				kept = append(kept, p)
			}
		}
		// Oldest first: the pod that has waited longest is the most surely warm.
		sort.Slice(kept, func(i, j int) bool { return kept[i].CreationTimestamp.Before(&kept[j].CreationTimestamp) })
		next[id] = kept
		x.Metrics.Size.WithLabelValues(id.namespace, id.key).Set(float64(len(kept)))
	}
	x.ready = next
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Take hands out one ready generic pod of key's pool in namespace, or nil (a miss). A pod
// is handed out once.
func (x *Index) Take(namespace string, key contract.PoolKey) *corev1.Pod {
	id := poolID{namespace, key.LabelValue()}
	x.mu.Lock()
	defer x.mu.Unlock()
	ps := x.ready[id]
	if len(ps) == 0 {
		x.Metrics.Misses.WithLabelValues(namespace, id.key).Inc()
		return nil
	}
	p := ps[0]
	x.ready[id] = ps[1:]
	x.taken[p.UID] = true
	x.Metrics.Hits.WithLabelValues(namespace, id.key).Inc()
	x.Metrics.Size.WithLabelValues(namespace, id.key).Set(float64(len(ps) - 1))
	return p
}

// Untake puts back a pod Take handed out that nothing was done to (not claimed, not
// specialized): it is still generic.
func (x *Index) Untake(p *corev1.Pod) {
	id := poolID{p.Namespace, p.Labels[contract.LabelPool]}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.taken[p.UID] {
		return
	}
	delete(x.taken, p.UID)
	ps := append(x.ready[id], p)
	sort.Slice(ps, func(i, j int) bool { return ps[i].CreationTimestamp.Before(&ps[j].CreationTimestamp) })
	x.ready[id] = ps
	x.Metrics.Size.WithLabelValues(id.namespace, id.key).Set(float64(len(ps)))
}

// SecretValue reads a key of a Secret in a namespace; ok is false when the Secret or the
// key does not exist.
type SecretValue func(ctx context.Context, namespace, name, key string) (value string, ok bool, err error)

// Build fills in a version's specialization template for one pod: Secret values read,
// the pod's UID in, literal values expanded as the kubelet would (so the runtime sees what
// the version's own pods would show it).
func Build(ctx context.Context, st *contract.SpecializationTemplate, pod *corev1.Pod, invokeSecret string, secret SecretValue) (*contract.Specialization, error) {
	spec := &contract.Specialization{InvokeSecret: invokeSecret, Command: st.Command, Code: st.Code, Layers: st.Layers}
	vals := map[string]string{}
	earlier := func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	for _, v := range st.Env {
		var val string
		switch {
		case v.PodUID:
			val = string(pod.UID)
		case v.SecretKeyRef != nil:
			s, ok, err := secret(ctx, pod.Namespace, v.SecretKeyRef.Name, v.SecretKeyRef.Key)
			if err != nil {
				return nil, fmt.Errorf("variable %s: %w", v.Name, err)
			}
			if !ok {
				if !v.SecretKeyRef.Optional {
					// The kubelet would not start the container either.
					return nil, fmt.Errorf("variable %s: Secret %s has no key %s", v.Name, v.SecretKeyRef.Name, v.SecretKeyRef.Key)
				}
				continue
			}
			val = s
		default:
			val = contract.ExpandEnv(v.Value, earlier)
		}
		vals[v.Name] = val
		spec.Env = append(spec.Env, contract.EnvVar{Name: v.Name, Value: val})
	}
	return spec, nil
}

// Claim makes pod one of dep's environments, only if nobody changed it since it was seen
// (its resourceVersion): it leaves its pool (the pool's ReplicaSet releases it and starts
// another), takes the version's labels (its pod template's: the selector's, and the
// app.kubernetes.io/* labels, which then say "function" instead of "pool") and annotations,
// and is owned by dep, so that it goes with the version's Deployment and is never anyone
// else's. Its other labels stay (contract.LabelPoolEnvironment).
func Claim(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, dep *appsv1.Deployment, st *contract.SpecializationTemplate) (*corev1.Pod, error) {
	if dep.Spec.Selector == nil || len(dep.Spec.Selector.MatchLabels) == 0 {
		return nil, errors.New("the version's Deployment has no selector labels")
	}
	labels := map[string]any{contract.LabelPool: nil}
	for k, v := range dep.Spec.Template.Labels {
		labels[k] = v
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		labels[k] = v
	}
	annotations := map[string]any{
		contract.AnnotationPoolKey:         nil,
		contract.AnnotationSpecializedFrom: st.Pool.String(),
		contract.AnnotationInvokeSecret:    st.InvokeSecretName,
	}
	for _, k := range []string{contract.AnnotationFunctionName, contract.AnnotationQualifier, contract.AnnotationCodeSha256} {
		if v, ok := dep.Spec.Template.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	t := true
	patch := map[string]any{"metadata": map[string]any{
		"resourceVersion": pod.ResourceVersion,
		"labels":          labels,
		"annotations":     annotations,
		"ownerReferences": []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: &t}},
	}}
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	return c.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, b, metav1.PatchOptions{})
}

// Specialize gives the pod's generic shim its function (POST contract.SpecializePath with
// the pool's secret). It answers once the code is unpacked and the runtime started.
func Specialize(ctx context.Context, client *http.Client, pod *corev1.Pod, poolSecret string, spec *contract.Specialization) error {
	body, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(contract.ShimPort)) + contract.SpecializePath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(contract.HeaderPoolSecret, poolSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("specializing pod %s: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("specializing pod %s: %s: %s", pod.Name, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
