package controllers

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"

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

// AliasReconciler checks that an Alias's versions exist and reports what the router uses:
// status.functionVersion and status.additionalVersionWeights are the last valid routing;
// while a target is missing, condition Ready is False (reason VersionNotFound) and they
// keep the previous valid routing, if any.
type AliasReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Config   Config
}

// ReasonDuplicateAlias: another Alias of the function already has this effective name (the
// older one, by creationTimestamp then metadata.name, owns it; lambdav1alpha1.AliasPrecedes).
// The activator's router ignores the duplicate.
const ReasonDuplicateAlias = "DuplicateAlias"

// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=aliases,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=aliases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=versions,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions,verbs=get;list;watch

func (r *AliasReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var a lambdav1alpha1.Alias
	if err := r.Get(ctx, req.NamespacedName, &a); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !a.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	var fn lambdav1alpha1.Function
	fnErr := r.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.FunctionName}, &fn)
	if fnErr != nil && !apierrors.IsNotFound(fnErr) {
		return ctrl.Result{}, fnErr
	}
	if fnErr == nil && !metav1.IsControlledBy(&a, &fn) {
		if err := controllerutil.SetControllerReference(&fn, &a, r.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Update(ctx, &a); err != nil {
			return ctrl.Result{}, err
		}
	}
	patch := statuspatch.New(r.Client, &a)
	defer patch.Close(ctx, &err, func(rerr error) {
		a.Status.ObservedGeneration = readiness.Observe(&a.Status.Conditions, a.Generation, a.Status.ObservedGeneration, rerr)
	})
	r.reportIdentity(&a)
	if fnErr != nil {
		r.notReady(&a, contract.ReasonFunctionNotFound, "Function "+a.Spec.FunctionName+" not found")
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, &a, &fn)
}

// reportIdentity is the alias's name, ARN and provisioned concurrency request.
func (r *AliasReconciler) reportIdentity(a *lambdav1alpha1.Alias) {
	st := &a.Status
	st.Name = a.EffectiveName()
	st.AliasARN = lambdav1alpha1.QualifiedFunctionARN(r.Config.Region, r.Config.AccountID, a.Spec.FunctionName, st.Name)
	st.FunctionURL = "" // set while functionUrlConfig is; the activator serves it from its informers
	if a.Spec.FunctionURLConfig != nil {
		st.FunctionURL = r.Config.FunctionURLs.FunctionURL(contract.FunctionURLID(string(a.UID), a.Namespace, a.Spec.FunctionName, st.Name))
	}
	pc := a.Spec.ProvisionedConcurrentExecutions
	switch {
	case pc == nil:
		st.ProvisionedConcurrency = nil
	case st.ProvisionedConcurrency == nil || st.ProvisionedConcurrency.RequestedProvisionedConcurrentExecutions != *pc:
		now := metav1.Now()
		st.ProvisionedConcurrency = &lambdav1alpha1.ProvisionedConcurrencyStatus{RequestedProvisionedConcurrentExecutions: *pc, Status: lambdav1alpha1.ProvisionedConcurrencyInProgress, LastModified: &now}
	}
}

// reconcileNormal routes the alias when it owns its name and its versions exist and agree;
// else it is not Ready and keeps its last valid routing.
func (r *AliasReconciler) reconcileNormal(ctx context.Context, a *lambdav1alpha1.Alias, fn *lambdav1alpha1.Function) error {
	st := &a.Status
	if owner, err := r.nameOwner(ctx, a); err != nil {
		return err
	} else if owner != nil {
		// A duplicate routes nothing: no routing is reported, as the router ignores it.
		st.FunctionVersion, st.AdditionalVersionWeights = "", nil
		r.notReady(a, ReasonDuplicateAlias, fmt.Sprintf(
			"alias name %q of function %s is already taken by Alias %s (the older one); this alias routes nothing: delete it or give it another spec.name",
			st.Name, a.Spec.FunctionName, owner.Name))
		return nil
	}
	reason, msg, err := r.checkTargets(ctx, a, fn)
	if err != nil {
		return err
	}
	if reason != "" {
		r.notReady(a, reason, msg)
		return nil
	}
	r.route(a)
	return nil
}

// checkTargets answers why the alias can't route (reason and message; "" when it can):
// a version it names is not published, or its two versions differ where Lambda requires
// them to agree.
func (r *AliasReconciler) checkTargets(ctx context.Context, a *lambdav1alpha1.Alias, fn *lambdav1alpha1.Function) (string, string, error) {
	var versions lambdav1alpha1.VersionList
	if err := r.List(ctx, &versions, client.InNamespace(a.Namespace), client.MatchingFields{indexFunctionName: fn.Name}); err != nil {
		return "", "", err
	}
	find := func(num string) *lambdav1alpha1.Version {
		for i := range versions.Items {
			v := &versions.Items[i]
			if v.Status.Version == num && isCanonical(v) && v.DeletionTimestamp.IsZero() {
				return v
			}
		}
		return nil
	}
	weights := additionalWeights(a)
	keys := make([]string, 0, len(weights))
	for k := range weights {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var found []*lambdav1alpha1.Version
	for _, t := range append([]string{a.Spec.FunctionVersion}, keys...) {
		if t == contract.Latest {
			continue
		}
		v := find(t)
		if v == nil {
			return contract.ReasonVersionNotFound, fmt.Sprintf("version %s of function %s is not published", t, fn.Name), nil
		}
		found = append(found, v)
	}
	// Lambda: both versions of a weighted alias need the same role and dead-letter config.
	if len(found) == 2 {
		c1, c2 := found[0].Status.Configuration, found[1].Status.Configuration
		if c1 != nil && c2 != nil {
			if c1.ServiceAccountName != c2.ServiceAccountName {
				return string(lambdav1alpha1.StateReasonInvalidConfiguration), "routingConfig: both versions must have the same serviceAccountName (execution role)", nil
			}
			if !reflect.DeepEqual(c1.DeadLetterConfig, c2.DeadLetterConfig) {
				return string(lambdav1alpha1.StateReasonInvalidConfiguration), "routingConfig: both versions must have the same deadLetterConfig", nil
			}
		}
	}
	return "", "", nil
}

// route reports the alias's routing as the router uses it.
func (r *AliasReconciler) route(a *lambdav1alpha1.Alias) {
	st := &a.Status
	weights := additionalWeights(a)
	changed := st.FunctionVersion != a.Spec.FunctionVersion || !reflect.DeepEqual(st.AdditionalVersionWeights, weights)
	st.FunctionVersion = a.Spec.FunctionVersion
	st.AdditionalVersionWeights = nil
	if len(weights) > 0 {
		st.AdditionalVersionWeights = map[string]float64{}
		for k, v := range weights {
			st.AdditionalVersionWeights[k] = v
		}
	}
	st.RevisionID = revisionID(string(a.UID), strconv.FormatInt(a.Generation, 10))
	if changed || !meta.IsStatusConditionTrue(st.Conditions, contract.ConditionReady) {
		r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, "Routed", "Resolve", "alias %s routes to version %s%s", st.Name, st.FunctionVersion, weightText(weights))
	}
	readiness.Ready(&st.Conditions, a.Generation, contract.ReasonResolved, "routes to version "+st.FunctionVersion+weightText(weights))
}

// nameOwner answers the other Alias of a's function that owns a's effective name, nil when
// a owns it (lambdav1alpha1.AliasPrecedes decides between duplicates).
func (r *AliasReconciler) nameOwner(ctx context.Context, a *lambdav1alpha1.Alias) (*lambdav1alpha1.Alias, error) {
	var list lambdav1alpha1.AliasList
	if err := r.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingFields{indexFunctionName: a.Spec.FunctionName}); err != nil {
		return nil, err
	}
	var owner *lambdav1alpha1.Alias
	name := a.EffectiveName()
	for i := range list.Items {
		o := &list.Items[i]
		if o.UID == a.UID || !o.DeletionTimestamp.IsZero() || o.Spec.FunctionName != a.Spec.FunctionName || o.EffectiveName() != name {
			continue
		}
		if lambdav1alpha1.AliasPrecedes(o, a) && (owner == nil || lambdav1alpha1.AliasPrecedes(o, owner)) {
			owner = o
		}
	}
	return owner, nil
}

func weightText(w map[string]float64) string {
	out := ""
	for k, v := range w {
		out += fmt.Sprintf(" and %g of invocations to version %s", v, k)
	}
	return out
}

// notReady reports why the alias does not route as its spec says: Reconciling while it
// waits for its function or a version to be published (applied together, as GitOps
// does), Stalled when only a change of an Alias can fix it (a duplicate name, versions
// that disagree).
func (r *AliasReconciler) notReady(a *lambdav1alpha1.Alias, reason, msg string) {
	if c := meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady); c == nil || c.Message != msg {
		r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reason, "Resolve", "%s", msg)
	}
	switch reason {
	case contract.ReasonFunctionNotFound, contract.ReasonVersionNotFound:
		readiness.Reconciling(&a.Status.Conditions, a.Generation, reason, msg)
	default:
		readiness.Stalled(&a.Status.Conditions, a.Generation, reason, msg)
	}
}

// SetupWithManager registers the controller; a Version or Function that changes re-checks
// the aliases of its function. (The field index on spec.functionName is registered by the
// Version controller.)
func (r *AliasReconciler) SetupWithManager(mgr ctrl.Manager) error {
	aliasesOf := func(ctx context.Context, ns, fn string) []reconcile.Request {
		var list lambdav1alpha1.AliasList
		if err := r.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexFunctionName: fn}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, a := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&a)})
		}
		return out
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&lambdav1alpha1.Alias{}, ownObjectChanged).
		Watches(&lambdav1alpha1.Version{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return aliasesOf(ctx, o.GetNamespace(), o.(*lambdav1alpha1.Version).Spec.FunctionName)
		})).
		Watches(&lambdav1alpha1.Function{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return aliasesOf(ctx, o.GetNamespace(), o.GetName())
		})).
		// An alias that comes or goes (or changes its name) can make another one of its
		// function a duplicate, or give it the name back; an alias's status changes nothing.
		Watches(&lambdav1alpha1.Alias{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return aliasesOf(ctx, o.GetNamespace(), o.(*lambdav1alpha1.Alias).Spec.FunctionName)
		}), ownObjectChanged).
		Complete(r)
}
