package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/readiness"
	"github.com/klambda/klambda/internal/statuspatch"
)

// LayerVersionCounterConfigMap holds, per namespace, the next version number of every layer
// name (key = layer name, value = next number). It belongs to no object, so numbers are
// never reused, even after every version of a layer is deleted.
const LayerVersionCounterConfigMap = "klambda-layer-versions"

// LayerVersionReconciler publishes LayerVersions: it resolves and checks the content,
// assigns the next number of the layer, and keeps a deleted version (finalizer) until no
// Function or Version uses it any more, as Lambda keeps a copy for functions using it.
type LayerVersionReconciler struct {
	client.Client
	Resolver *Resolver
	Recorder events.EventRecorder
	Config   Config
}

// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=layerversions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=layerversions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=layerversions/finalizers,verbs=update
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=versions,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update

func (r *LayerVersionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var lv lambdav1alpha1.LayerVersion
	if err := r.Get(ctx, req.NamespacedName, &lv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patch := statuspatch.New(r.Client, &lv)
	defer patch.Close(ctx, &err, func(rerr error) {
		lv.Status.ObservedGeneration = readiness.Observe(&lv.Status.Conditions, lv.Generation, lv.Status.ObservedGeneration, rerr)
	})
	if !lv.DeletionTimestamp.IsZero() {
		patch.Pending()
		return ctrl.Result{}, r.reconcileDelete(ctx, &lv)
	}
	return r.reconcileNormal(ctx, &lv, patch)
}

// reconcileDelete keeps a deleted layer version while a Function or Version uses it.
func (r *LayerVersionReconciler) reconcileDelete(ctx context.Context, lv *lambdav1alpha1.LayerVersion) error {
	users, err := r.users(ctx, lv)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		msg := "still used by " + strings.Join(users, ", ") + "; it is kept until they stop using it"
		if c := meta.FindStatusCondition(lv.Status.Conditions, contract.ConditionDeletionBlocked); c == nil || c.Message != msg {
			r.Recorder.Eventf(lv, nil, corev1.EventTypeNormal, "DeletionDeferred", "Delete", "%s", msg)
			setCondition(&lv.Status.Conditions, lv.Generation, contract.ConditionDeletionBlocked, true, contract.ReasonInUse, msg)
		}
		return nil
	}
	if controllerutil.RemoveFinalizer(lv, layerFinalizer) {
		return r.Update(ctx, lv)
	}
	return nil
}

// reconcileNormal publishes the layer version once: its content resolved and checked, and
// the layer's next number.
func (r *LayerVersionReconciler) reconcileNormal(ctx context.Context, lv *lambdav1alpha1.LayerVersion, patch *statuspatch.Patch) (ctrl.Result, error) {
	if controllerutil.AddFinalizer(lv, layerFinalizer) {
		if err := r.Update(ctx, lv); err != nil {
			return ctrl.Result{}, err
		}
		patch.Rebase()
	}
	if lv.Status.Version == 0 {
		// The cache may not show yet the number a previous reconcile took: ask the server.
		if err := r.Resolver.Reader.Get(ctx, client.ObjectKeyFromObject(lv), lv); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		patch.Rebase()
	}
	if lv.Status.Version != 0 && meta.IsStatusConditionTrue(lv.Status.Conditions, contract.ConditionReady) {
		return ctrl.Result{}, nil // published: immutable
	}
	if lv.Status.ObservedGeneration == 0 {
		// The first status, before the content is fetched (which may take a while): until
		// then kstatus would read the object without status as current.
		readiness.Reconciling(&lv.Status.Conditions, lv.Generation, contract.ReasonInProgress, "resolving the content")
		lv.Status.ObservedGeneration = lv.Generation
		if err := patch.Flush(ctx); err != nil {
			return ctrl.Result{}, err
		}
	}
	z, err := r.Resolver.ResolveZip(ctx, lv, "content", lv.Spec.Content, optRoot)
	var rerr *ResolveError
	if errors.As(err, &rerr) {
		if c := meta.FindStatusCondition(lv.Status.Conditions, contract.ConditionReady); c == nil || c.Message != rerr.Message {
			r.Recorder.Eventf(lv, nil, corev1.EventTypeWarning, "Failed", "Publish", "%s", rerr.Message)
		}
		// Stalled as Lambda's PublishLayerVersion fails; a transient failure is retried.
		readiness.Stalled(&lv.Status.Conditions, lv.Generation, string(rerr.Reason), rerr.Message)
		if rerr.Transient {
			return ctrl.Result{RequeueAfter: retryResolve}, nil
		}
		return ctrl.Result{}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.publish(ctx, lv, z)
}

// publish records the layer version's number (taken now unless a previous reconcile took
// it), ARNs and digest.
func (r *LayerVersionReconciler) publish(ctx context.Context, lv *lambdav1alpha1.LayerVersion, z ZipResult) error {
	d := z.Digest
	name := lv.EffectiveLayerName()
	n := lv.Status.Version
	if n == 0 {
		var err error
		if n, err = r.nextNumber(ctx, lv.Namespace, name); err != nil {
			return err
		}
	}
	now := metav1.Now()
	lv.Status = lambdav1alpha1.LayerVersionStatus{
		ObservedGeneration: lv.Status.ObservedGeneration,
		LayerName:          name,
		Version:            n,
		LayerARN:           lambdav1alpha1.LayerARN(r.Config.Region, r.Config.AccountID, name),
		LayerVersionARN:    lambdav1alpha1.LayerVersionARN(r.Config.Region, r.Config.AccountID, name, n),
		CodeSha256:         d.Base64,
		CodeSize:           d.Size,
		CodeStoreRef:       z.StoreRef,
		CreatedDate:        &now,
		Conditions:         lv.Status.Conditions,
	}
	readiness.Ready(&lv.Status.Conditions, lv.Generation, contract.ReasonResolved, fmt.Sprintf("published as version %d of layer %s", n, name))
	r.Recorder.Eventf(lv, nil, corev1.EventTypeNormal, "Published", "Publish", "version %d of layer %s (%s)", n, name, d.Base64)
	return nil
}

// nextNumber takes the next number of a layer from the namespace's counter ConfigMap with
// optimistic concurrency (a conflict is retried by the caller's requeue).
func (r *LayerVersionReconciler) nextNumber(ctx context.Context, ns, layer string) (int64, error) {
	var cm corev1.ConfigMap
	err := r.Resolver.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: LayerVersionCounterConfigMap}, &cm)
	if apierrors.IsNotFound(err) {
		cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: LayerVersionCounterConfigMap, Namespace: ns,
			Labels: withLabels(sharedAppLabels(appComponentLayer), map[string]string{contract.LabelComponent: "layer-version-counter"})}, Data: map[string]string{layer: "2"}}
		if err := r.Create(ctx, &cm); err != nil {
			return 0, fmt.Errorf("creating the layer version counter: %w", err)
		}
		return 1, nil
	} else if err != nil {
		return 0, err
	}
	n := int64(1)
	if v, ok := cm.Data[layer]; ok {
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, fmt.Errorf("layer version counter %s/%s: bad value %q", ns, layer, v)
		}
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[layer] = strconv.FormatInt(n+1, 10)
	if err := r.Update(ctx, &cm); err != nil { // carries resourceVersion: optimistic lock
		return 0, fmt.Errorf("taking layer version number %d of %s: %w", n, layer, err)
	}
	return n, nil
}

// users lists the Functions and Versions whose status uses this layer version.
func (r *LayerVersionReconciler) users(ctx context.Context, lv *lambdav1alpha1.LayerVersion) ([]string, error) {
	var out []string
	var fns lambdav1alpha1.FunctionList
	if err := r.List(ctx, &fns, client.InNamespace(lv.Namespace)); err != nil {
		return nil, err
	}
	for _, f := range fns.Items {
		if f.DeletionTimestamp.IsZero() && usesLayer(f.Status.Layers, lv) {
			out = append(out, "Function "+f.Name)
		}
	}
	var vers lambdav1alpha1.VersionList
	if err := r.List(ctx, &vers, client.InNamespace(lv.Namespace)); err != nil {
		return nil, err
	}
	for _, v := range vers.Items {
		if v.DeletionTimestamp.IsZero() && usesLayer(v.Status.Layers, lv) {
			out = append(out, "Version "+v.Name)
		}
	}
	return out, nil
}

func usesLayer(layers []lambdav1alpha1.ResolvedLayer, lv *lambdav1alpha1.LayerVersion) bool {
	for _, l := range layers {
		if l.Name == lv.Name {
			return true
		}
	}
	return false
}

// SetupWithManager registers the controller; a Function or Version that changes may release
// a deleted layer version.
func (r *LayerVersionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	layersOf := func(ctx context.Context, ns string, layers []lambdav1alpha1.ResolvedLayer) []reconcile.Request {
		var out []reconcile.Request
		var list lambdav1alpha1.LayerVersionList
		if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil
		}
		for _, lv := range list.Items {
			if !lv.DeletionTimestamp.IsZero() {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&lv)})
			}
		}
		return out
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&lambdav1alpha1.LayerVersion{}, ownObjectChanged).
		Watches(&lambdav1alpha1.Function{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return layersOf(ctx, o.GetNamespace(), o.(*lambdav1alpha1.Function).Status.Layers)
		})).
		Watches(&lambdav1alpha1.Version{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return layersOf(ctx, o.GetNamespace(), o.(*lambdav1alpha1.Version).Status.Layers)
		})).
		Complete(r)
}
