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

	"github.com/klambda/klambda/api/contract"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	autoscalingv1ac "k8s.io/client-go/applyconfigurations/autoscaling/v1"
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
	// LabelFunction's value is contract.FunctionLabelValue of the function's name.
	LabelFunction = contract.LabelFunction
	LabelVersion  = contract.LabelVersion
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

// NewCache returns a cache that watches klambda's kinds everywhere and only the pods,
// ReplicaSets and Deployments that carry the function label.
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
			&appsv1.ReplicaSet{}: {Label: sel},
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

	syncMu sync.Mutex
	// fed: the keys whose environments were last set from each function label.
	fed map[fnLabel]map[router.Key]bool

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
	if err := add(&corev1.Pod{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    podChanged,
		UpdateFunc: func(_, o any) { podChanged(o) },
		DeleteFunc: podChanged,
	}); err != nil {
		return err
	}
	// The owner chain of a pod (ReplicaSet → Deployment → Function or Version) decides
	// whether and for which version it serves: when a link appears, changes owner or goes,
	// the function's pods are looked at again.
	ownersChanged := func(o any) {
		if m, ok := objectOf(o).(client.Object); ok {
			if l := m.GetLabels()[LabelFunction]; l != "" {
				f.syncLabel(ctx, m.GetNamespace(), l, nil)
			}
		}
	}
	ownerLinks := toolscache.ResourceEventHandlerFuncs{
		AddFunc: ownersChanged,
		UpdateFunc: func(old, o any) {
			a, b := old.(client.Object), o.(client.Object)
			if !equality.Semantic.DeepEqual(a.GetOwnerReferences(), b.GetOwnerReferences()) || a.GetUID() != b.GetUID() {
				ownersChanged(o)
			}
		},
		DeleteFunc: ownersChanged,
	}
	if err := add(&appsv1.ReplicaSet{}, ownerLinks); err != nil {
		return err
	}
	if err := add(&appsv1.Deployment{}, ownerLinks); err != nil {
		return err
	}
	fnChanged := func(o any) {
		if fn, ok := objectOf(o).(*lambdav1alpha1.Function); ok {
			f.syncLabel(ctx, fn.Namespace, contract.FunctionLabelValue(fn.Name), nil)
		}
	}
	verChanged := func(o any) {
		if v, ok := objectOf(o).(*lambdav1alpha1.Version); ok {
			f.syncLabel(ctx, v.Namespace, contract.FunctionLabelValue(v.Spec.FunctionName), nil)
		}
	}
	if err := add(&lambdav1alpha1.Function{}, toolscache.ResourceEventHandlerFuncs{AddFunc: fnChanged, DeleteFunc: fnChanged}); err != nil {
		return err
	}
	return add(&lambdav1alpha1.Version{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc: verChanged,
		UpdateFunc: func(old, o any) {
			a, b := old.(*lambdav1alpha1.Version), o.(*lambdav1alpha1.Version)
			if a.Status.Version != b.Status.Version || !equality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences) {
				verChanged(o)
			}
		},
		DeleteFunc: verChanged,
	})
}

// fnLabel is a function's pods' LabelFunction value in a namespace.
type fnLabel struct{ ns, value string }

// syncEnvironments recomputes the ready environments of the changed pod's function.
func (f *Feeder) syncEnvironments(ctx context.Context, changed *corev1.Pod) {
	if l := changed.Labels[LabelFunction]; l != "" {
		f.syncLabel(ctx, changed.Namespace, l, changed)
	}
}

// syncLabel recomputes the ready environments of every version whose pods carry function
// label value l in ns. Only a pod whose owner chain leads to klambda's workload serves:
// pod → ReplicaSet → Deployment → the Function ($LATEST) or a Version of it, each link
// the controller reference with the UID of the object in the cache; its labels must be
// those of that version. The key is the owner's (the function's full name, also when the
// label value is shortened), never the labels'. A pod anyone else made with the same
// labels gets no invocations. changed (may be nil) is the pod whose event this is.
func (f *Feeder) syncLabel(ctx context.Context, ns, l string, changed *corev1.Pod) {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	var pods corev1.PodList
	if err := f.Cache.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{LabelFunction: l}); err != nil {
		f.Log.Error(err, "listing pods", "namespace", ns, "function label", l)
		return
	}
	if f.Probe != nil && changed != nil {
		listed := false
		for i := range pods.Items {
			listed = listed || pods.Items[i].UID == changed.UID
		}
		if !listed {
			f.forget(changed.UID)
		}
	}
	envs := map[router.Key][]dispatch.Environment{}
	for i := range pods.Items {
		p := &pods.Items[i]
		key, fnUID, err := f.owner(ctx, p)
		if err != nil {
			f.Log.V(1).Info("pod gets no invocations: "+err.Error(), "pod", p.Name, "namespace", p.Namespace)
			continue
		}
		if _, ok := envs[key]; !ok {
			envs[key] = nil
		}
		if PodReady(p) {
			f.kubeletReady(p.UID)
		} else if !f.earlyReady(ctx, p) {
			continue
		}
		secret, err := f.Secrets.ForPod(ctx, p, fnUID)
		if err != nil {
			f.Log.Error(err, "reading the invoke secret; leaving the pod out", "pod", p.Name)
			continue
		}
		f.resizeAfterInit(ctx, p)
		envs[key] = append(envs[key], dispatch.Environment{
			Name:   p.Name,
			Addr:   net.JoinHostPort(p.Status.PodIP, strconv.Itoa(f.ShimPort)),
			Secret: secret,
			// Creation times have whole seconds: a pod of the start's second counts as older.
			Unverified: p.CreationTimestamp.Time.Before(f.started.Add(time.Second)),
			Marked:     p.Annotations[PodDeletionCost] == removalCost,
		})
	}
	fl := fnLabel{ns, l}
	if f.fed == nil {
		f.fed = map[fnLabel]map[router.Key]bool{}
	}
	for k := range f.fed[fl] {
		if _, ok := envs[k]; !ok {
			f.Dispatcher.SetEnvironments(k, nil)
		}
	}
	keys := make(map[router.Key]bool, len(envs))
	for k, e := range envs {
		keys[k] = true
		f.Dispatcher.SetEnvironments(k, e)
	}
	if len(keys) == 0 {
		delete(f.fed, fl)
	} else {
		f.fed[fl] = keys
	}
}

// controllerRef is o's controller reference if it is of group and kind.
func controllerRef(o metav1.Object, group, kind string) (*metav1.OwnerReference, error) {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil {
		return nil, fmt.Errorf("%s has no controller", o.GetName())
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != group || ref.Kind != kind {
		return nil, fmt.Errorf("%s is controlled by %s %s, not a %s", o.GetName(), ref.APIVersion, ref.Kind, kind)
	}
	return ref, nil
}

// getRef reads ref's object (of o's type) from r (the cache) and checks its UID.
func getRef(ctx context.Context, r client.Reader, ns string, ref *metav1.OwnerReference, o client.Object) error {
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, o); err != nil {
		return fmt.Errorf("%s %s: %w", ref.Kind, ref.Name, err)
	}
	if o.GetUID() != ref.UID || o.GetDeletionTimestamp() != nil {
		return fmt.Errorf("%s %s is not the one referenced (UID %s) or is being deleted", ref.Kind, ref.Name, ref.UID)
	}
	return nil
}

// owner follows p's owner chain to the version it belongs to (see syncLabel), from the
// cache; it answers the version's key and its Function's UID (the invoke Secret's owner).
func (f *Feeder) owner(ctx context.Context, p *corev1.Pod) (router.Key, types.UID, error) {
	return ownerKey(ctx, f.Cache, p)
}

func ownerKey(ctx context.Context, r client.Reader, p *corev1.Pod) (router.Key, types.UID, error) {
	var none router.Key
	rsRef, err := controllerRef(p, appsv1.GroupName, "ReplicaSet")
	if err != nil {
		return none, "", err
	}
	var rs appsv1.ReplicaSet
	if err := getRef(ctx, r, p.Namespace, rsRef, &rs); err != nil {
		return none, "", err
	}
	depRef, err := controllerRef(&rs, appsv1.GroupName, "Deployment")
	if err != nil {
		return none, "", err
	}
	var dep appsv1.Deployment
	if err := getRef(ctx, r, p.Namespace, depRef, &dep); err != nil {
		return none, "", err
	}
	key, fnUID, err := deploymentOwner(ctx, r, &dep)
	if err != nil {
		return none, "", err
	}
	if p.Labels[LabelFunction] != contract.FunctionLabelValue(key.Function) || p.Labels[LabelVersion] != VersionLabel(key.Version) {
		return none, "", fmt.Errorf("labels %v are not those of %s", p.Labels, key.String())
	}
	return key, fnUID, nil
}

// deploymentOwner answers the version a Deployment runs: its controller is the Function
// ($LATEST) or a published Version controlled by the Function, with the cache's UIDs.
func deploymentOwner(ctx context.Context, r client.Reader, dep *appsv1.Deployment) (router.Key, types.UID, error) {
	var none router.Key
	ref := metav1.GetControllerOfNoCopy(dep)
	if ref == nil {
		return none, "", fmt.Errorf("Deployment %s has no controller", dep.Name)
	}
	if ref.Kind == "Version" {
		vref, err := controllerRef(dep, lambdav1alpha1.GroupVersion.Group, "Version")
		if err != nil {
			return none, "", err
		}
		var v lambdav1alpha1.Version
		if err := getRef(ctx, r, dep.Namespace, vref, &v); err != nil {
			return none, "", err
		}
		if v.Status.Version == "" {
			return none, "", fmt.Errorf("Version %s has no number yet", v.Name)
		}
		fref, err := controllerRef(&v, lambdav1alpha1.GroupVersion.Group, "Function")
		if err != nil {
			return none, "", err
		}
		var fn lambdav1alpha1.Function
		if err := getRef(ctx, r, dep.Namespace, fref, &fn); err != nil {
			return none, "", err
		}
		if fn.Name != v.Spec.FunctionName {
			return none, "", fmt.Errorf("Version %s names function %s but is controlled by %s", v.Name, v.Spec.FunctionName, fn.Name)
		}
		return router.Key{Namespace: dep.Namespace, Function: fn.Name, Version: v.Status.Version}, fn.UID, nil
	}
	fref, err := controllerRef(dep, lambdav1alpha1.GroupVersion.Group, "Function")
	if err != nil {
		return none, "", err
	}
	var fn lambdav1alpha1.Function
	if err := getRef(ctx, r, dep.Namespace, fref, &fn); err != nil {
		return none, "", err
	}
	return router.Key{Namespace: dep.Namespace, Function: fn.Name, Version: router.Latest}, fn.UID, nil
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
	want, ok := p.Annotations[contract.AnnotationCPULimit]
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
		err := f.Resize(ctx, p, contract.FunctionContainerName, want)
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
		if p.Spec.Containers[i].Name == contract.FunctionContainerName {
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
// short-lived cache; it runs on pod events, never per request. A Secret is used only when
// its controller is the pod's Function (the UID given): a Secret of that name someone else
// made is refused, never read for its value.
type SecretReader struct {
	Client kubernetes.Interface
	TTL    time.Duration

	mu    sync.Mutex
	cache map[string]secretEntry
}

type secretEntry struct {
	data    map[string][]byte
	owner   types.UID // the UID of the Function controlling the Secret; "" if none
	expires time.Time
}

// ForPod answers the secret the pod's shim wants ("" when it wants none); a referenced
// Secret must be controlled by the Function with UID owner.
func (s *SecretReader) ForPod(ctx context.Context, p *corev1.Pod, owner types.UID) (string, error) {
	cs := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range cs {
		for _, e := range c.Env {
			if e.Name != SecretEnv {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				return e.Value, nil
			}
			return s.read(ctx, p.Namespace, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key, owner)
		}
	}
	return "", nil
}

func (s *SecretReader) read(ctx context.Context, ns, name, key string, owner types.UID) (string, error) {
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
		e = secretEntry{expires: now.Add(ttl)}
		if ref, err := controllerRef(sec, lambdav1alpha1.GroupVersion.Group, "Function"); err == nil {
			e.owner = ref.UID
		}
		if e.owner != "" {
			e.data = sec.Data // only a Function's Secret is kept
		}
		s.mu.Lock()
		s.cache[ck] = e
		s.mu.Unlock()
	}
	if owner == "" || e.owner != owner {
		return "", fmt.Errorf("secret %s is not controlled by the pod's Function (UID %s): not used", ck, owner)
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
		client.MatchingLabels{LabelFunction: contract.FunctionLabelValue(key.Function), LabelVersion: VersionLabel(key.Version)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		dep := &list.Items[i]
		if dep.DeletionTimestamp != nil {
			continue
		}
		// Only the Deployment klambda made for this version: the labels alone could be
		// anyone's (or another long-named function's).
		if k, _, err := deploymentOwner(ctx, d.Reader, dep); err == nil && k == key {
			return dep, nil
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

// Scale applies spec.replicas, and nothing else, as the activator's field manager, through
// the Deployment's scale subresource: the activator's role grants deployments/scale and no
// write on Deployments themselves, so it cannot change a function's pod template (image,
// ServiceAccount, volumes).
func (d *Deployments) Scale(ctx context.Context, key router.Key, replicas int32) error {
	dep, err := d.find(ctx, key)
	if err != nil {
		return err
	}
	ac := autoscalingv1ac.Scale().WithSpec(autoscalingv1ac.ScaleSpec().WithReplicas(replicas))
	_, err = d.Client.AppsV1().Deployments(dep.Namespace).ApplyScale(ctx, dep.Name, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true})
	if err != nil {
		return fmt.Errorf("applying replicas=%d to Deployment %s/%s: %w", replicas, dep.Namespace, dep.Name, err)
	}
	return nil
}

// MarkForRemoval gives the pods the lowest deletion cost, so the ReplicaSet removes
// them before any busy pod.
func (d *Deployments) MarkForRemoval(ctx context.Context, key router.Key, pods []string) error {
	for _, name := range pods {
		ac := corev1ac.Pod(name, key.Namespace).WithAnnotations(map[string]string{PodDeletionCost: removalCost})
		if _, err := d.Client.CoreV1().Pods(key.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true}); err != nil {
			return fmt.Errorf("marking pod %s/%s for removal: %w", key.Namespace, name, err)
		}
	}
	return nil
}

// removalCost is the pod-deletion-cost MarkForRemoval gives.
const removalCost = "-1000"

// Unmark removes the mark MarkForRemoval gave: an apply of nothing by the same field
// manager gives up the annotation, which nobody else owns.
func (d *Deployments) Unmark(ctx context.Context, key router.Key, pods []string) error {
	for _, name := range pods {
		ac := corev1ac.Pod(name, key.Namespace)
		if _, err := d.Client.CoreV1().Pods(key.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true}); err != nil {
			return fmt.Errorf("unmarking pod %s/%s: %w", key.Namespace, name, err)
		}
	}
	return nil
}
