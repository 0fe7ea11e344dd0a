// Package kube connects the activator to the cluster: informers (a controller-runtime
// cache) feed the router's table and the dispatcher's environments, and Deployments
// carries out the scaler's decisions with server-side apply under the activator's own
// field manager. Nothing here runs per request.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaler"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Labels the controllers put on a version's Deployment, Service and pods.
const (
	LabelFunction = "lambda.klambda.dev/function"
	LabelVersion  = "lambda.klambda.dev/version"
	// LatestLabel is the version label's value for $LATEST ("$" is not a label character).
	LatestLabel = "latest"
	// FieldManager is the activator's server-side apply identity; it owns spec.replicas.
	FieldManager = "klambda-activator"
	// PodDeletionCost is the annotation the ReplicaSet controller ranks pods by.
	PodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"
	// SecretEnv is the shim's variable holding the invoke secret (runtime-shim/README.md).
	SecretEnv = "KLAMBDA_INVOKE_SECRET"
)

// VersionLabel is the version label's value for a version.
func VersionLabel(v string) string {
	if v == router.Latest {
		return LatestLabel
	}
	return v
}

func versionFromLabel(l string) string {
	if l == LatestLabel {
		return router.Latest
	}
	return l
}

// NewCache returns a cache that watches klambda's kinds everywhere and only the pods
// and Deployments that carry the function label.
func NewCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	hasFunction, err := labels.NewRequirement(LabelFunction, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	sel := labels.NewSelector().Add(*hasFunction)
	return cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:        {Label: sel},
			&appsv1.Deployment{}: {Label: sel},
		},
	})
}

// Feeder keeps the router table and the dispatcher's environments in step with the cache.
type Feeder struct {
	Cache      cache.Cache
	Table      *router.Table
	Dispatcher *dispatch.Dispatcher
	// Secrets reads the invoke secret a pod's shim expects.
	Secrets *SecretReader
	// ShimPort is the shim's invoke port (9000).
	ShimPort int
	Log      logr.Logger
	// Probe, when set, asks a starting pod's shim directly whether it is ready (its
	// /readyz, which the kubelet's readiness probe also asks), every ProbeInterval from
	// the moment the pod runs with an IP until the kubelet first reports it Ready. A cold
	// start then does not wait for the kubelet's probe period and status update (up to
	// ~1 s here). After the kubelet's first Ready, the kubelet alone decides.
	Probe         func(ctx context.Context, addr string) bool
	ProbeInterval time.Duration
	// Resize, when set, resizes a pod's container in place (the pods/resize subresource):
	// an environment that started with the init CPU gets Lambda's share once it is ready.
	Resize func(ctx context.Context, p *corev1.Pod, container, cpuLimit string) error

	resizeMu sync.Mutex
	resizing map[types.UID]bool

	probeMu sync.Mutex
	// probing: pods (by UID) with a probe running; probedReady: pods the probe found
	// ready that the kubelet has not reported Ready yet.
	probing     map[types.UID]bool
	probedReady map[types.UID]bool
	wasReady    map[types.UID]bool

	// started is when Register ran: a pod created before may run an invocation a previous
	// activator sent (dispatch.Environment.Unverified).
	started time.Time
}

func objectOf(obj any) any {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

// Register adds the event handlers; call before the cache starts.
func (f *Feeder) Register(ctx context.Context) error {
	f.started = time.Now()
	add := func(obj client.Object, h toolscache.ResourceEventHandlerFuncs) error {
		inf, err := f.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		_, err = inf.AddEventHandler(h)
		return err
	}
	if err := add(&lambdav1alpha1.Function{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.Table.SetFunction(o.(*lambdav1alpha1.Function)) },
		UpdateFunc: func(_, o any) { f.Table.SetFunction(o.(*lambdav1alpha1.Function)) },
		DeleteFunc: func(o any) {
			if fn, ok := objectOf(o).(*lambdav1alpha1.Function); ok {
				f.Table.DeleteFunction(fn.Namespace, fn.Name)
			}
		},
	}); err != nil {
		return err
	}
	if err := add(&lambdav1alpha1.Version{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.Table.SetVersion(o.(*lambdav1alpha1.Version)) },
		UpdateFunc: func(_, o any) { f.Table.SetVersion(o.(*lambdav1alpha1.Version)) },
		DeleteFunc: func(o any) {
			if v, ok := objectOf(o).(*lambdav1alpha1.Version); ok {
				f.Table.DeleteVersion(v.Namespace, v.Name)
			}
		},
	}); err != nil {
		return err
	}
	if err := add(&lambdav1alpha1.Alias{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.Table.SetAlias(o.(*lambdav1alpha1.Alias)) },
		UpdateFunc: func(_, o any) { f.Table.SetAlias(o.(*lambdav1alpha1.Alias)) },
		DeleteFunc: func(o any) {
			if a, ok := objectOf(o).(*lambdav1alpha1.Alias); ok {
				f.Table.DeleteAlias(a.Namespace, a.Name)
			}
		},
	}); err != nil {
		return err
	}
	podChanged := func(o any) {
		if p, ok := objectOf(o).(*corev1.Pod); ok {
			f.syncEnvironments(ctx, p)
		}
	}
	return add(&corev1.Pod{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    podChanged,
		UpdateFunc: func(_, o any) { podChanged(o) },
		DeleteFunc: podChanged,
	})
}

// syncEnvironments recomputes the ready environments of the changed pod's version.
func (f *Feeder) syncEnvironments(ctx context.Context, changed *corev1.Pod) {
	fn, vl := changed.Labels[LabelFunction], changed.Labels[LabelVersion]
	if fn == "" || vl == "" {
		return
	}
	key := router.Key{Namespace: changed.Namespace, Function: fn, Version: versionFromLabel(vl)}
	var pods corev1.PodList
	if err := f.Cache.List(ctx, &pods, client.InNamespace(changed.Namespace),
		client.MatchingLabels{LabelFunction: fn, LabelVersion: vl}); err != nil {
		f.Log.Error(err, "listing pods", "key", key.String())
		return
	}
	if f.Probe != nil {
		listed := false
		for i := range pods.Items {
			listed = listed || pods.Items[i].UID == changed.UID
		}
		if !listed {
			f.forget(changed.UID)
		}
	}
	envs := make([]dispatch.Environment, 0, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		if PodReady(p) {
			f.kubeletReady(p.UID)
		} else if !f.earlyReady(ctx, p) {
			continue
		}
		secret, err := f.Secrets.ForPod(ctx, p)
		if err != nil {
			f.Log.Error(err, "reading the invoke secret; leaving the pod out", "pod", p.Name)
			continue
		}
		f.resizeAfterInit(ctx, p)
		envs = append(envs, dispatch.Environment{
			Name:   p.Name,
			Addr:   net.JoinHostPort(p.Status.PodIP, strconv.Itoa(f.ShimPort)),
			Secret: secret,
			// Creation times have whole seconds: a pod of the start's second counts as older.
			Unverified: p.CreationTimestamp.Time.Before(f.started.Add(time.Second)),
		})
	}
	f.Dispatcher.SetEnvironments(key, envs)
}

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
	addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(f.ShimPort))
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

// resizeAfterInit gives a ready environment that started with the init CPU its CPU
// limit from the pod's annotation, once per pod (in the background: the environment
// serves meanwhile; a failure is logged and tried again at the pod's next change).
func (f *Feeder) resizeAfterInit(ctx context.Context, p *corev1.Pod) {
	want, ok := p.Annotations[lambdav1alpha1.AnnotationCPULimit]
	if !ok || f.Resize == nil || p.DeletionTimestamp != nil {
		return
	}
	wantQ, err := resource.ParseQuantity(want)
	c := functionContainer(p)
	if err != nil || c == nil {
		return
	}
	if have, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && have.Cmp(wantQ) == 0 {
		return
	}
	f.resizeMu.Lock()
	if f.resizing == nil {
		f.resizing = map[types.UID]bool{}
	}
	busy := f.resizing[p.UID]
	f.resizing[p.UID] = true
	f.resizeMu.Unlock()
	if busy {
		return
	}
	go func() {
		err := f.Resize(ctx, p, lambdav1alpha1.FunctionContainerName, want)
		f.resizeMu.Lock()
		delete(f.resizing, p.UID)
		f.resizeMu.Unlock()
		if err != nil {
			f.Log.Error(err, "resizing the environment to its CPU share", "pod", p.Name, "namespace", p.Namespace, "cpu", want)
			return
		}
		f.Log.V(1).Info("environment resized to its CPU share", "pod", p.Name, "namespace", p.Namespace, "cpu", want)
	}()
}

// functionContainer is the pod's function container, nil if it has none.
func functionContainer(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == lambdav1alpha1.FunctionContainerName {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

// PodResizer is Feeder.Resize through the pods/resize subresource (Kubernetes ≥ 1.33).
func PodResizer(c kubernetes.Interface) func(ctx context.Context, p *corev1.Pod, container, cpuLimit string) error {
	return func(ctx context.Context, p *corev1.Pod, container, cpuLimit string) error {
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"containers": []any{map[string]any{
			"name": container, "resources": map[string]any{"limits": map[string]string{"cpu": cpuLimit}}}}}})
		if err != nil {
			return err
		}
		_, err = c.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "resize")
		return err
	}
}

// HTTPProbe is Feeder.Probe over HTTP: GET http://addr/readyz answers 200.
func HTTPProbe(c *http.Client) func(ctx context.Context, addr string) bool {
	return func(ctx context.Context, addr string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
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

// SecretReader finds the invoke secret of a pod's shim from the pod spec (the
// KLAMBDA_INVOKE_SECRET variable, literal or secretKeyRef), reading Secrets through a
// short-lived cache; it runs on pod events, never per request.
type SecretReader struct {
	Client kubernetes.Interface
	TTL    time.Duration

	mu    sync.Mutex
	cache map[string]secretEntry
}

type secretEntry struct {
	data    map[string][]byte
	expires time.Time
}

// ForPod answers the secret the pod's shim wants ("" when it wants none).
func (s *SecretReader) ForPod(ctx context.Context, p *corev1.Pod) (string, error) {
	cs := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range cs {
		for _, e := range c.Env {
			if e.Name != SecretEnv {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				return e.Value, nil
			}
			return s.read(ctx, p.Namespace, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		}
	}
	return "", nil
}

func (s *SecretReader) read(ctx context.Context, ns, name, key string) (string, error) {
	ck := ns + "/" + name
	now := time.Now()
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]secretEntry{}
	}
	e, ok := s.cache[ck]
	s.mu.Unlock()
	if !ok || now.After(e.expires) {
		sec, err := s.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", ck, err)
		}
		ttl := s.TTL
		if ttl == 0 {
			ttl = time.Minute
		}
		e = secretEntry{data: sec.Data, expires: now.Add(ttl)}
		s.mu.Lock()
		s.cache[ck] = e
		s.mu.Unlock()
	}
	v, ok := e.data[key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ck, key)
	}
	return string(v), nil
}

// Deployments scales function Deployments: it finds a version's Deployment by its
// labels in the cache and owns spec.replicas through server-side apply.
type Deployments struct {
	Reader client.Reader
	Client kubernetes.Interface
	// FieldManager defaults to FieldManager.
	FieldManager string
}

var _ scaler.Deployments = (*Deployments)(nil)

func (d *Deployments) manager() string {
	if d.FieldManager == "" {
		return FieldManager
	}
	return d.FieldManager
}

func (d *Deployments) find(ctx context.Context, key router.Key) (*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := d.Reader.List(ctx, &list, client.InNamespace(key.Namespace),
		client.MatchingLabels{LabelFunction: key.Function, LabelVersion: VersionLabel(key.Version)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			return &list.Items[i], nil
		}
	}
	return nil, scaler.ErrNoDeployment
}

// Replicas answers spec.replicas (1 when unset: the API server's default).
func (d *Deployments) Replicas(key router.Key) (int32, error) {
	dep, err := d.find(context.Background(), key)
	if err != nil {
		return 0, err
	}
	if dep.Spec.Replicas == nil {
		return 1, nil
	}
	return *dep.Spec.Replicas, nil
}

// Scale applies spec.replicas, and nothing else, as the activator's field manager.
func (d *Deployments) Scale(ctx context.Context, key router.Key, replicas int32) error {
	dep, err := d.find(ctx, key)
	if err != nil {
		return err
	}
	ac := appsv1ac.Deployment(dep.Name, dep.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(replicas))
	_, err = d.Client.AppsV1().Deployments(dep.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true})
	if err != nil {
		return fmt.Errorf("applying replicas=%d to Deployment %s/%s: %w", replicas, dep.Namespace, dep.Name, err)
	}
	return nil
}

// MarkForRemoval gives the pods the lowest deletion cost, so the ReplicaSet removes
// them before any busy pod.
func (d *Deployments) MarkForRemoval(ctx context.Context, key router.Key, pods []string) error {
	for _, name := range pods {
		ac := corev1ac.Pod(name, key.Namespace).WithAnnotations(map[string]string{PodDeletionCost: "-1000"})
		if _, err := d.Client.CoreV1().Pods(key.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true}); err != nil {
			return fmt.Errorf("marking pod %s/%s for removal: %w", key.Namespace, name, err)
		}
	}
	return nil
}
