// Package feeder connects the activator to the cluster: informers (a controller-runtime
// cache) feed the router's table and the dispatcher's environments. Nothing here runs per
// request.
package feeder

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Feeder keeps the router table and the dispatcher's environments in step with the cache.
type Feeder struct {
	Cache cache.Cache
	Table *router.Table
	// URLs, when set, learns the function URLs of Functions and Aliases.
	URLs       URLTable
	Dispatcher *dispatch.Dispatcher
	// Secrets reads the invoke secret a pod's shim expects.
	Secrets *invokesecret.Reader
	Log     logr.Logger
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
	fed map[fnLabel]map[fnkey.Key]bool

	retryMu sync.Mutex
	// retries: function labels whose pods were left out for want of their invoke secret,
	// with the attempts so far; a timer looks at them again (retrySecrets).
	retries map[fnLabel]retry

	// started is when Register ran: a pod created before may run an invocation a previous
	// activator sent (dispatch.Environment.Unverified).
	started time.Time

	// registrations are the handlers Register added, each synced once it has been given
	// every object of its informer's first list (HasSynced).
	registrations []toolscache.ResourceEventHandlerRegistration
}

// URLTable maps function URLs to their Function or Alias (functionurl.Table).
type URLTable interface {
	SetFunction(*lambdav1alpha1.Function)
	DeleteFunction(namespace, name string)
	SetAlias(*lambdav1alpha1.Alias)
	DeleteAlias(namespace, name string)
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
	for _, register := range []func(context.Context) error{f.registerTable, f.registerPods, f.registerOwnerLinks, f.registerPlacement} {
		if err := register(ctx); err != nil {
			return err
		}
	}
	return nil
}

// addHandler adds h to the cache's informer for obj's kind.
func (f *Feeder) addHandler(ctx context.Context, obj client.Object, h toolscache.ResourceEventHandlerFuncs) error {
	inf, err := f.Cache.GetInformer(ctx, obj)
	if err != nil {
		return fmt.Errorf("informer for %T: %w", obj, err)
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return err
	}
	f.registrations = append(f.registrations, reg)
	return nil
}

// HasSynced tells whether every handler Register added has been given every object of
// its informer's first list: the router's table then knows every Function, Version and
// Alias, and the dispatcher every environment, that existed when the activator started.
// An informer's own HasSynced (the cache's WaitForCacheSync) is not enough: it is true once
// the list is in the informer's store, while its handlers are called afterwards, on their
// own goroutines.
func (f *Feeder) HasSynced() bool {
	for _, r := range f.registrations {
		if !r.HasSynced() {
			return false
		}
	}
	return len(f.registrations) > 0
}

// registerTable feeds the router's table with Functions, Versions and Aliases.
func (f *Feeder) registerTable(ctx context.Context) error {
	if err := f.addHandler(ctx, &lambdav1alpha1.Function{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.setFunction(o.(*lambdav1alpha1.Function)) },
		UpdateFunc: func(_, o any) { f.setFunction(o.(*lambdav1alpha1.Function)) },
		DeleteFunc: func(o any) {
			if fn, ok := objectOf(o).(*lambdav1alpha1.Function); ok {
				f.Table.DeleteFunction(fn.Namespace, fn.Name)
				if f.URLs != nil {
					f.URLs.DeleteFunction(fn.Namespace, fn.Name)
				}
			}
		},
	}); err != nil {
		return err
	}
	if err := f.addHandler(ctx, &lambdav1alpha1.Version{}, toolscache.ResourceEventHandlerFuncs{
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
	return f.addHandler(ctx, &lambdav1alpha1.Alias{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.setAlias(o.(*lambdav1alpha1.Alias)) },
		UpdateFunc: func(_, o any) { f.setAlias(o.(*lambdav1alpha1.Alias)) },
		DeleteFunc: func(o any) {
			if a, ok := objectOf(o).(*lambdav1alpha1.Alias); ok {
				f.Table.DeleteAlias(a.Namespace, a.Name)
				if f.URLs != nil {
					f.URLs.DeleteAlias(a.Namespace, a.Name)
				}
			}
		},
	})
}

func (f *Feeder) setFunction(fn *lambdav1alpha1.Function) {
	f.Table.SetFunction(fn)
	if f.URLs != nil {
		f.URLs.SetFunction(fn)
	}
}

func (f *Feeder) setAlias(a *lambdav1alpha1.Alias) {
	f.Table.SetAlias(a)
	if f.URLs != nil {
		f.URLs.SetAlias(a)
	}
}

// registerPods recomputes a function's environments when one of its pods changes.
func (f *Feeder) registerPods(ctx context.Context) error {
	podChanged := func(o any) {
		if p, ok := objectOf(o).(*corev1.Pod); ok {
			f.syncEnvironments(ctx, p)
		}
	}
	return f.addHandler(ctx, &corev1.Pod{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    podChanged,
		UpdateFunc: func(_, o any) { podChanged(o) },
		DeleteFunc: podChanged,
	})
}

// registerOwnerLinks: the owner chain of a pod (ReplicaSet → Deployment → Function or
// Version) decides whether and for which version it serves: when a link appears, changes
// owner or goes, the function's pods are looked at again.
func (f *Feeder) registerOwnerLinks(ctx context.Context) error {
	ownersChanged := func(o any) {
		if m, ok := objectOf(o).(client.Object); ok {
			if l := m.GetLabels()[contract.LabelFunction]; l != "" {
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
	if err := f.addHandler(ctx, &appsv1.ReplicaSet{}, ownerLinks); err != nil {
		return err
	}
	if err := f.addHandler(ctx, &appsv1.Deployment{}, ownerLinks); err != nil {
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
	if err := f.addHandler(ctx, &lambdav1alpha1.Function{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc: fnChanged,
		// The switch to a new revision of $LATEST: its pods serve from now on, the old
		// revision's get no more invocations (ownerchain.Serving).
		UpdateFunc: func(old, o any) {
			a, b := old.(*lambdav1alpha1.Function), o.(*lambdav1alpha1.Function)
			if a.Status.ServingDeployment != b.Status.ServingDeployment {
				fnChanged(o)
			}
		},
		DeleteFunc: fnChanged,
	}); err != nil {
		return err
	}
	return f.addHandler(ctx, &lambdav1alpha1.Version{}, toolscache.ResourceEventHandlerFuncs{
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
