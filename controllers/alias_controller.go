package controllers

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
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
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch

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
	if a.Spec.ProvisionedConcurrentExecutions == nil {
		st.ProvisionedConcurrency = nil
	}
}

// reportProvisioned follows the alias's provisioned concurrency once its routing is in
// effect: FAILED when Lambda would refuse it (on $LATEST, over the function's reserved
// concurrency, on a version already provisioned) or its environments can't start;
// IN_PROGRESS until the routed versions' Deployments have that many available
// environments (the activator keeps them warm), then READY. The alias is Ready only then.
func (r *AliasReconciler) reportProvisioned(ctx context.Context, a *lambdav1alpha1.Alias, fn *lambdav1alpha1.Function) error {
	pc := a.Spec.ProvisionedConcurrentExecutions
	if pc == nil {
		return nil
	}
	st := &a.Status
	self := pcConfig{obj: a, isAlias: true, shares: aliasShares(*pc, st.FunctionVersion, st.AdditionalVersionWeights)}
	reason, failed, err := pcRefusal(ctx, r.Client, fn, self)
	if err != nil {
		return err
	}
	var allocated, available int32
	if failed == "" {
		if allocated, available, failed, err = pcAllocation(ctx, r.Client, a.Namespace, fn.Name, self.shares); err != nil {
			return err
		}
		reason = pcReasonAllocation
	}
	old := st.ProvisionedConcurrency
	st.ProvisionedConcurrency = nextPCStatus(old, *pc, allocated, available, failed)
	switch ps := st.ProvisionedConcurrency; ps.Status {
	case lambdav1alpha1.ProvisionedConcurrencyFailed:
		if old == nil || old.StatusReason != ps.StatusReason {
			r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, reason, "Provision", "%s", failed)
		}
		readiness.Stalled(&st.Conditions, a.Generation, reason, "provisionedConcurrentExecutions: "+failed)
	case lambdav1alpha1.ProvisionedConcurrencyInProgress:
		readiness.Reconciling(&st.Conditions, a.Generation, ReasonProvisioning, fmt.Sprintf("routes to version %s%s; %d of %d provisioned environments are available",
			st.FunctionVersion, weightText(st.AdditionalVersionWeights), ps.AvailableProvisionedConcurrentExecutions, *pc))
	}
	return nil
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
	rt, reason, msg, err := r.checkTargets(ctx, a, fn)
	if err != nil {
		return err
	}
	if reason != "" {
		r.notReady(a, reason, msg)
		return nil
	}
	r.route(a, rt)
	return r.reportProvisioned(ctx, a, fn)
}

// routing is where an alias sends invocations: a version number (or $LATEST) and at most
// one more version number with its weight.
type routing struct {
	primary string
	weights map[string]float64
}

// checkTargets resolves the alias's targets to version numbers (a Version object named by
// functionVersionRef or additionalVersionRefWeights stands for the number it published)
// and answers why the alias can't route (reason and message; "" when it can): a version
// it names is not published, or its two versions differ where Lambda requires them to
// agree.
func (r *AliasReconciler) checkTargets(ctx context.Context, a *lambdav1alpha1.Alias, fn *lambdav1alpha1.Function) (routing, string, string, error) {
	var versions lambdav1alpha1.VersionList
	if err := r.List(ctx, &versions, client.InNamespace(a.Namespace), client.MatchingFields{indexFunctionName: fn.Name}); err != nil {
		return routing{}, "", "", err
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
	rt, reason, msg, err := r.resolveRefs(ctx, a, fn, versions.Items)
	if err != nil || reason != "" {
		return routing{}, reason, msg, err
	}
	keys := make([]string, 0, len(rt.weights))
	for k := range rt.weights {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 && keys[0] == rt.primary {
		return routing{}, string(lambdav1alpha1.StateReasonInvalidConfiguration),
			fmt.Sprintf("routingConfig: the additional version must differ from the primary version (both are version %s)", rt.primary), nil
	}
	var found []*lambdav1alpha1.Version
	for _, t := range append([]string{rt.primary}, keys...) {
		if t == contract.Latest {
			continue
		}
		v := find(t)
		if v == nil {
			return routing{}, contract.ReasonVersionNotFound, fmt.Sprintf("version %s of function %s is not published", t, fn.Name), nil
		}
		found = append(found, v)
	}
	// Lambda: both versions of a weighted alias need the same role and dead-letter config.
	if len(found) == 2 {
		c1, c2 := found[0].Status.Configuration, found[1].Status.Configuration
		if c1 != nil && c2 != nil {
			if c1.ServiceAccountName != c2.ServiceAccountName {
				return routing{}, string(lambdav1alpha1.StateReasonInvalidConfiguration), "routingConfig: both versions must have the same serviceAccountName (execution role)", nil
			}
			if !reflect.DeepEqual(c1.DeadLetterConfig, c2.DeadLetterConfig) {
				return routing{}, string(lambdav1alpha1.StateReasonInvalidConfiguration), "routingConfig: both versions must have the same deadLetterConfig", nil
			}
		}
	}
	return rt, "", "", nil
}

// resolveRefs turns the alias's spec into version numbers: functionVersion and
// additionalVersionWeights as they are, a Version object's name as the number it
// published. A Version not published yet is waited for (Reconciling); one that can't
// publish (its precondition failed) or belongs to another function stalls the alias.
func (r *AliasReconciler) resolveRefs(ctx context.Context, a *lambdav1alpha1.Alias, fn *lambdav1alpha1.Function, versions []lambdav1alpha1.Version) (routing, string, string, error) {
	number := func(name string) (string, string, string, error) {
		for i := range versions {
			v := &versions[i]
			if v.Name != name {
				continue
			}
			published := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished)
			switch {
			case !v.DeletionTimestamp.IsZero():
				return "", contract.ReasonVersionNotFound, fmt.Sprintf("Version %s is being deleted", name), nil
			case v.Status.Version != "":
				return v.Status.Version, "", "", nil
			case published != nil && published.Reason == contract.ReasonPreconditionFailed:
				return "", contract.ReasonPreconditionFailed, fmt.Sprintf("Version %s can't publish: %s", name, published.Message), nil
			}
			return "", contract.ReasonVersionNotFound, fmt.Sprintf("Version %s of function %s is not published yet", name, fn.Name), nil
		}
		var other lambdav1alpha1.Version
		err := r.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: name}, &other)
		switch {
		case apierrors.IsNotFound(err):
			return "", contract.ReasonVersionNotFound, fmt.Sprintf("Version %s does not exist (yet)", name), nil
		case err != nil:
			return "", "", "", err
		case other.Spec.FunctionName != fn.Name:
			return "", string(lambdav1alpha1.StateReasonInvalidConfiguration), fmt.Sprintf("Version %s is a version of function %s, not of %s", name, other.Spec.FunctionName, fn.Name), nil
		}
		return "", contract.ReasonVersionNotFound, fmt.Sprintf("Version %s of function %s is not published yet", name, fn.Name), nil
	}
	rt := routing{primary: a.Spec.FunctionVersion}
	if ref := a.Spec.FunctionVersionRef; ref != nil {
		num, reason, msg, err := number(ref.Name)
		if err != nil || reason != "" {
			return routing{}, reason, "functionVersionRef: " + msg, err
		}
		rt.primary = num
	}
	if rc := a.Spec.RoutingConfig; rc != nil {
		for k, w := range rc.AdditionalVersionWeights {
			rt.weights = map[string]float64{k: w}
		}
		for name, w := range rc.AdditionalVersionRefWeights {
			num, reason, msg, err := number(name)
			if err != nil || reason != "" {
				return routing{}, reason, "routingConfig.additionalVersionRefWeights: " + msg, err
			}
			rt.weights = map[string]float64{num: w}
		}
	}
	return rt, "", "", nil
}

// route reports the alias's routing as the router uses it.
func (r *AliasReconciler) route(a *lambdav1alpha1.Alias, rt routing) {
	st := &a.Status
	changed := st.FunctionVersion != rt.primary || !reflect.DeepEqual(st.AdditionalVersionWeights, rt.weights)
	st.FunctionVersion = rt.primary
	st.AdditionalVersionWeights = nil
	if len(rt.weights) > 0 {
		st.AdditionalVersionWeights = map[string]float64{}
		for k, v := range rt.weights {
			st.AdditionalVersionWeights[k] = v
		}
	}
	// The revision changes with the spec and with what a reference resolves to.
	st.RevisionID = revisionID(string(a.UID), strconv.FormatInt(a.Generation, 10), st.FunctionVersion, weightText(st.AdditionalVersionWeights))
	if changed || !meta.IsStatusConditionTrue(st.Conditions, contract.ConditionReady) {
		r.Recorder.Eventf(a, nil, corev1.EventTypeNormal, "Routed", "Resolve", "alias %s routes to version %s%s", st.Name, st.FunctionVersion, weightText(rt.weights))
	}
	readiness.Ready(&st.Conditions, a.Generation, contract.ReasonResolved, "routes to version "+st.FunctionVersion+weightText(rt.weights))
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
		// The Deployments of the versions an alias provisions say how much of its
		// provisioned concurrency is available.
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			fnLabel := o.GetLabels()[contract.LabelFunction]
			if fnLabel == "" {
				return nil
			}
			var list lambdav1alpha1.AliasList
			if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
				return nil
			}
			var out []reconcile.Request
			for _, a := range list.Items {
				if a.Spec.ProvisionedConcurrentExecutions != nil && contract.FunctionLabelValue(a.Spec.FunctionName) == fnLabel {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&a)})
				}
			}
			return out
		}), deploymentChanged).
		// An alias that comes or goes (or changes its name) can make another one of its
		// function a duplicate, or give it the name back; an alias's status changes nothing.
		Watches(&lambdav1alpha1.Alias{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return aliasesOf(ctx, o.GetNamespace(), o.(*lambdav1alpha1.Alias).Spec.FunctionName)
		}), ownObjectChanged).
		Complete(r)
}
