package controllers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/readiness"
	"github.com/klambda/klambda/internal/statuspatch"
)

// VersionReconciler publishes Versions (Lambda's PublishVersion) and runs each published
// version in its own Deployment and headless Service.
//
// Numbers come from the Function's status.nextVersionNumber, taken with an optimistic
// update of the Function's status, so they never repeat, even after deletes. A publish
// with nothing changed since the last published version doesn't take a number: the
// Version reports that version's number, with condition Published=True reason Unchanged
// (it has no Deployment of its own). The Version that took number N has label
// lambda.klambda.dev/version=N and condition Published=True reason Published.
type VersionReconciler struct {
	client.Client
	// APIReader reads Versions uncached while publishing, so that the no-op check and the
	// numbering never see a stale list.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Config    Config
}

// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=versions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=versions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=versions/finalizers,verbs=update
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=aliases,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=layerversions,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch

func (r *VersionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var v lambdav1alpha1.Version
	if err := r.Get(ctx, req.NamespacedName, &v); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var fn lambdav1alpha1.Function
	fnErr := r.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: v.Spec.FunctionName}, &fn)
	if fnErr != nil && !apierrors.IsNotFound(fnErr) {
		return ctrl.Result{}, fnErr
	}
	patch := statuspatch.New(r.Client, &v)
	defer patch.Close(ctx, &err, func(rerr error) {
		v.Status.ObservedGeneration = readiness.Observe(&v.Status.Conditions, v.Generation, v.Status.ObservedGeneration, rerr)
	})
	if !v.DeletionTimestamp.IsZero() {
		patch.Pending()
		return ctrl.Result{}, r.reconcileDelete(ctx, &v, apierrors.IsNotFound(fnErr) || !fn.DeletionTimestamp.IsZero())
	}
	if apierrors.IsNotFound(fnErr) {
		// Applied together with its Function (GitOps), it publishes once the Function comes.
		readiness.Reconciling(&v.Status.Conditions, v.Generation, contract.ReasonFunctionNotFound, "waiting for Function "+v.Spec.FunctionName+": not found")
		return ctrl.Result{}, nil
	}
	return r.reconcileNormal(ctx, &v, &fn, patch)
}

// reconcileNormal adopts the Version, then publishes it or runs what it published.
func (r *VersionReconciler) reconcileNormal(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function, patch *statuspatch.Patch) (ctrl.Result, error) {
	// Owned by the Function (deleting it deletes its versions); kept while an Alias uses it.
	if !metav1.IsControlledBy(v, fn) || !controllerutil.ContainsFinalizer(v, versionFinalizer) {
		if err := controllerutil.SetControllerReference(fn, v, r.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		controllerutil.AddFinalizer(v, versionFinalizer)
		if err := r.Update(ctx, v); err != nil {
			return ctrl.Result{}, err
		}
		patch.Rebase()
	}
	if v.Status.Version == "" {
		// The cache may not show yet what the previous reconcile published: ask the server.
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(v), v); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		patch.Rebase()
	}
	published := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished)
	switch {
	case v.Status.Version == "":
		// Also after a failed precondition: Lambda's 412 is final for one request, but a
		// Version is declarative; applied together with its Function (GitOps), it may be
		// read before the Function's change, so it is evaluated again whenever the Function
		// changes, and publishes once the Function is what it pins.
		return r.publish(ctx, v, fn)
	case published != nil && published.Reason == contract.ReasonUnchanged:
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.deploy(ctx, v, fn)
}

// publish takes the snapshot (or finds the unchanged version) and a number.
func (r *VersionReconciler) publish(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) (ctrl.Result, error) {
	fs := fn.Status
	if notReady := functionNotReady(fn); notReady != "" {
		// Lambda answers 409 ResourceConflictException; a Version waits and publishes then.
		setCondition(&v.Status.Conditions, v.Generation, contract.ConditionPublished, false, contract.ReasonFunctionNotReady, "waiting to publish: "+notReady)
		readiness.Reconciling(&v.Status.Conditions, v.Generation, contract.ReasonFunctionNotReady, "waiting to publish: "+notReady)
		v.Status.State = lambdav1alpha1.StatePending
		return ctrl.Result{}, nil
	}
	if want := v.Spec.CodeSha256; want != "" && want != fs.CodeSha256 {
		r.preconditionFailed(v, fmt.Sprintf("codeSha256 %s does not match the function's code %s", want, fs.CodeSha256))
		return ctrl.Result{}, nil
	}
	if want := v.Spec.RevisionID; want != "" && want != fs.RevisionID {
		r.preconditionFailed(v, fmt.Sprintf("revisionId %s does not match the function's revision %s", want, fs.RevisionID))
		return ctrl.Result{}, nil
	}
	// No-op publish: nothing changed since the last published version.
	if last := fs.LastPublishedVersion; last != "" {
		prev, err := r.publishedVersion(ctx, v.Namespace, fn.Name, last)
		if err != nil {
			return ctrl.Result{}, err
		}
		if prev != nil && sameRevision(prev, fn) {
			r.publishUnchanged(v, prev)
			return ctrl.Result{}, nil
		}
	}
	num, err := r.takeNumber(ctx, fn)
	if apierrors.IsConflict(err) {
		// Someone else took a number since the Function was read: read it again.
		readiness.Reconciling(&v.Status.Conditions, v.Generation, contract.ReasonInProgress, "publishing: another version took the next number first; retrying")
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	r.recordPublished(v, fn, num)
	// Label the Version that owns number N, for the activator's selectors.
	labeled := v.DeepCopy()
	if labeled.Labels == nil {
		labeled.Labels = map[string]string{}
	}
	labeled.Labels[contract.LabelFunction] = contract.FunctionLabelValue(fn.Name)
	labeled.Labels[contract.LabelVersion] = num
	if err := r.Patch(ctx, labeled, client.MergeFrom(v)); err != nil {
		return ctrl.Result{}, err
	}
	v.Labels, v.ResourceVersion = labeled.Labels, labeled.ResourceVersion
	return ctrl.Result{}, r.deploy(ctx, v, fn)
}

// functionNotReady says why the function can't be published yet ("" when it can).
func functionNotReady(fn *lambdav1alpha1.Function) string {
	fs := fn.Status
	switch {
	case fs.ObservedGeneration != fn.Generation:
		return "the function's latest change is not processed yet"
	case fs.State != lambdav1alpha1.StateActive:
		return fmt.Sprintf("the function is %s", fs.State)
	case fs.LastUpdateStatus != lambdav1alpha1.LastUpdateSuccessful:
		return fmt.Sprintf("the function's last update is %s", fs.LastUpdateStatus)
	}
	return ""
}

// publishUnchanged makes v refer to version prev, as Lambda's PublishVersion answers when
// nothing changed.
func (r *VersionReconciler) publishUnchanged(v, prev *lambdav1alpha1.Version) {
	gen, last := v.Generation, prev.Status.Version
	conditions := v.Status.Conditions
	v.Status = *prev.Status.DeepCopy()
	v.Status.Conditions = append([]metav1.Condition(nil), conditions...)
	setCondition(&v.Status.Conditions, gen, contract.ConditionPublished, true, contract.ReasonUnchanged,
		fmt.Sprintf("nothing changed since version %s: this Version refers to version %s (Version %s) and runs nothing of its own", last, last, prev.Name))
	readiness.Ready(&v.Status.Conditions, gen, contract.ReasonUnchanged, "version "+last+" is "+string(prev.Status.State))
	r.Recorder.Eventf(v, nil, corev1.EventTypeNormal, "Unchanged", "Publish", "nothing changed since version %s; no new version published", last)
}

// takeNumber takes the function's next version number with an optimistic update of its
// status (a conflict: someone else took one since the Function was read).
func (r *VersionReconciler) takeNumber(ctx context.Context, fn *lambdav1alpha1.Function) (string, error) {
	n := max(fn.Status.NextVersionNumber, 1)
	fnNext := fn.DeepCopy()
	fnNext.Status.NextVersionNumber = n + 1
	fnNext.Status.LastPublishedVersion = strconv.FormatInt(n, 10)
	if err := r.Status().Update(ctx, fnNext); err != nil {
		if apierrors.IsConflict(err) {
			return "", err
		}
		return "", fmt.Errorf("taking version number %d of %s: %w", n, fn.Name, err)
	}
	return strconv.FormatInt(n, 10), nil
}

// recordPublished freezes the function's configuration and code as version num.
func (r *VersionReconciler) recordPublished(v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function, num string) {
	fs := fn.Status
	snapshot := fn.Spec.FunctionConfiguration.DeepCopy()
	if v.Spec.Description != "" {
		snapshot.Description = v.Spec.Description
	}
	now := metav1.Now()
	v.Status = lambdav1alpha1.VersionStatus{
		ObservedGeneration: v.Status.ObservedGeneration,
		Version:            num,
		FunctionARN:        lambdav1alpha1.QualifiedFunctionARN(r.Config.Region, r.Config.AccountID, fn.Name, num),
		Configuration:      snapshot,
		CodeSha256:         fs.CodeSha256,
		CodeSize:           fs.CodeSize,
		RevisionID:         revisionID(string(v.UID), num, fs.RevisionID),
		ResolvedImageURI:   fs.ResolvedImageURI,
		DerivedImageURI:    fs.DerivedImageURI,
		CodeStoreRef:       fs.CodeStoreRef,
		Layers:             append([]lambdav1alpha1.ResolvedLayer(nil), fs.Layers...),
		LastModified:       &now,
		State:              lambdav1alpha1.StatePending,
		StateReasonCode:    lambdav1alpha1.StateReasonCreating,
		StateReason:        "The version is being created.",
		Conditions:         append([]metav1.Condition(nil), v.Status.Conditions...),
	}
	setCondition(&v.Status.Conditions, v.Generation, contract.ConditionPublished, true, contract.ReasonPublished, "published as version "+num)
	r.Recorder.Eventf(v, nil, corev1.EventTypeNormal, "Published", "Publish", "published version %s of %s (code %s)", num, fn.Name, fs.CodeSha256)
}

// ReasonProvisioning: a Version's Deployment is applied and its provisioned concurrency is
// being allocated (Ready once it is READY).
const ReasonProvisioning = "ProvisionedConcurrencyInProgress"

// conflictRetry is how soon a publish that lost the race for a number tries again.
const conflictRetry = 50 * time.Millisecond

func (r *VersionReconciler) preconditionFailed(v *lambdav1alpha1.Version, msg string) {
	gen := v.Generation
	if c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished); c == nil || c.Message != msg {
		r.Recorder.Eventf(v, nil, corev1.EventTypeWarning, contract.ReasonPreconditionFailed, "Publish", "%s", msg)
	}
	setCondition(&v.Status.Conditions, gen, contract.ConditionPublished, false, contract.ReasonPreconditionFailed, msg)
	readiness.Stalled(&v.Status.Conditions, gen, contract.ReasonPreconditionFailed, msg)
	v.Status.State, v.Status.StateReason, v.Status.StateReasonCode = lambdav1alpha1.StateFailed, msg, lambdav1alpha1.StateReasonInvalidConfiguration
}

// sameRevision: the function's code and configuration are those version prev froze
// (descriptions aside, as Lambda compares code and configuration).
func sameRevision(prev *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) bool {
	if prev.Status.Configuration == nil || prev.Status.CodeSha256 != fn.Status.CodeSha256 || prev.Status.ResolvedImageURI != fn.Status.ResolvedImageURI {
		return false
	}
	a, b := prev.Status.Configuration.DeepCopy(), fn.Spec.FunctionConfiguration.DeepCopy()
	a.Description, b.Description = "", ""
	if !reflect.DeepEqual(a, b) {
		return false
	}
	if len(prev.Status.Layers) != len(fn.Status.Layers) {
		return false
	}
	for i := range prev.Status.Layers {
		if prev.Status.Layers[i].CodeSha256 != fn.Status.Layers[i].CodeSha256 || prev.Status.Layers[i].Name != fn.Status.Layers[i].Name {
			return false
		}
	}
	return true
}

// publishedVersion is the Version that took number num (uncached), or nil.
func (r *VersionReconciler) publishedVersion(ctx context.Context, ns, fn, num string) (*lambdav1alpha1.Version, error) {
	var list lambdav1alpha1.VersionList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	for i := range list.Items {
		v := &list.Items[i]
		if v.Spec.FunctionName == fn && v.Status.Version == num && isCanonical(v) {
			return v, nil
		}
	}
	return nil, nil
}

// isCanonical: this Version took its number (it is not an Unchanged publish).
func isCanonical(v *lambdav1alpha1.Version) bool {
	c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished)
	return v.Status.Version != "" && c != nil && c.Status == metav1.ConditionTrue && c.Reason == contract.ReasonPublished
}

// deploy runs a published version: its own Deployment and headless Service.
func (r *VersionReconciler) deploy(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) error {
	gen := v.Generation
	dep, err := r.applyVersion(ctx, v, fn)
	var rerr *ResolveError
	if errors.As(err, &rerr) {
		if v.Status.State != lambdav1alpha1.StateFailed {
			r.Recorder.Eventf(v, nil, corev1.EventTypeWarning, "Failed", "Deploy", "%s", rerr.Message)
		}
		v.Status.State, v.Status.StateReasonCode, v.Status.StateReason = lambdav1alpha1.StateFailed, rerr.Reason, rerr.Message
		readiness.Stalled(&v.Status.Conditions, gen, string(rerr.Reason), rerr.Message)
		return nil
	} else if err != nil {
		return err
	}
	if v.Status.State != lambdav1alpha1.StateActive {
		r.Recorder.Eventf(v, nil, corev1.EventTypeNormal, "Active", "Deploy", "version %s is Active", v.Status.Version)
	}
	v.Status.State, v.Status.StateReason, v.Status.StateReasonCode = lambdav1alpha1.StateActive, "", ""
	v.Status.LastUpdateStatus = lambdav1alpha1.LastUpdateSuccessful
	pcReason, err := r.reportProvisionedConcurrency(ctx, v, fn)
	if err != nil {
		return err
	}
	if pc := v.Status.ProvisionedConcurrency; pc != nil && pc.Status == lambdav1alpha1.ProvisionedConcurrencyFailed {
		readiness.Stalled(&v.Status.Conditions, gen, pcReason, "provisionedConcurrentExecutions: "+pc.StatusReason)
		return nil
	}
	if pc := v.Status.ProvisionedConcurrency; pc != nil && pc.Status != lambdav1alpha1.ProvisionedConcurrencyReady {
		readiness.Reconciling(&v.Status.Conditions, gen, ReasonProvisioning, fmt.Sprintf("Deployment %s is applied; %d of %d provisioned environments are available",
			dep.Name, pc.AvailableProvisionedConcurrentExecutions, pc.RequestedProvisionedConcurrentExecutions))
		return nil
	}
	readiness.Ready(&v.Status.Conditions, gen, string(lambdav1alpha1.StateActive), "Deployment "+dep.Name+" is applied")
	return nil
}

// applyVersion applies the version's Deployment and headless Service; a *ResolveError says
// why it can't.
func (r *VersionReconciler) applyVersion(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) (*appsv1.Deployment, error) {
	w, err := r.workload(ctx, v, fn)
	if err != nil {
		return nil, err
	}
	d, err := w.Deployment(r.Config, v.Namespace)
	if err != nil {
		return nil, err
	}
	provisioned, err := versionProvisioned(ctx, r.Client, v, fn)
	if err != nil {
		return nil, err
	}
	setInitializationType(d, provisioned)
	return applyWorkload(ctx, r.Client, r.APIReader, v, d, w.Service(v.Namespace))
}

// reportProvisionedConcurrency is how much of spec.provisionedConcurrentExecutions the
// version's Deployment has allocated and made available; FAILED when Lambda would refuse
// the configuration (over the function's reserved concurrency, or an alias configured
// before it already provisions this version) or its environments can't start.
func (r *VersionReconciler) reportProvisionedConcurrency(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) (string, error) {
	pc := v.Spec.ProvisionedConcurrentExecutions
	if pc == nil {
		v.Status.ProvisionedConcurrency = nil
		return "", nil
	}
	self := pcConfig{obj: v, shares: map[string]int32{v.Status.Version: *pc}}
	reason, failed, err := pcRefusal(ctx, r.Client, fn, self)
	if err != nil {
		return "", err
	}
	var allocated, available int32
	if failed == "" {
		if allocated, available, failed, err = pcAllocation(ctx, r.Client, v.Namespace, fn.Name, self.shares); err != nil {
			return "", err
		}
		reason = pcReasonAllocation
	}
	old := v.Status.ProvisionedConcurrency
	v.Status.ProvisionedConcurrency = nextPCStatus(old, *pc, allocated, available, failed)
	if ps := v.Status.ProvisionedConcurrency; ps.Status == lambdav1alpha1.ProvisionedConcurrencyFailed && (old == nil || old.StatusReason != ps.StatusReason) {
		r.Recorder.Eventf(v, nil, corev1.EventTypeWarning, reason, "Provision", "%s", failed)
	}
	return reason, nil
}

// workload rebuilds a published version's pods from its snapshot alone: the code copy or
// pinned source, the pinned image, and the LayerVersions (kept alive by their finalizer).
func (r *VersionReconciler) workload(ctx context.Context, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) (*Workload, error) {
	st := v.Status
	if st.Configuration == nil {
		return nil, invalid("the version has no configuration snapshot")
	}
	w := &Workload{Function: fn.Name, Qualifier: st.Version, Config: *st.Configuration.DeepCopy(), InvokeSecret: InvokeSecretName(fn.Name)}
	if st.Configuration.PackageType == lambdav1alpha1.PackageTypeImage {
		w.ImageURI, w.DerivedImageURI = st.ResolvedImageURI, st.DerivedImageURI
		if d, err := digestFromBase64(st.CodeSha256, st.CodeSize); err == nil {
			w.CodeDigest = d
		}
		return w, nil
	}
	d, err := digestFromBase64(st.CodeSha256, st.CodeSize)
	if err != nil {
		return nil, invalid("%v", err)
	}
	w.CodeDigest = d
	w.CodeStoreRef = st.CodeStoreRef
	if st.Configuration.Code.ConfigMapRef != nil {
		w.CodeCopy = codeConfigMapName(fn.Name, d.Hex)
	}
	for _, l := range st.Layers {
		var lv lambdav1alpha1.LayerVersion
		if err := r.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: l.Name}, &lv); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, invalid("layer %s (version %d) is gone", l.Name, l.Version)
			}
			return nil, err
		}
		wl, err := workloadLayer(&lv)
		if err != nil {
			return nil, invalid("layer %s: %v", l.Name, err)
		}
		w.Layers = append(w.Layers, wl)
	}
	return w, nil
}

// reconcileDelete keeps a version an Alias points to (Lambda refuses to delete it).
func (r *VersionReconciler) reconcileDelete(ctx context.Context, v *lambdav1alpha1.Version, fnGone bool) error {
	if !controllerutil.ContainsFinalizer(v, versionFinalizer) {
		return nil
	}
	if !fnGone && isCanonical(v) {
		aliases, err := aliasesUsing(ctx, r.Client, v.Namespace, v.Spec.FunctionName, v.Status.Version)
		if err != nil {
			return err
		}
		if len(aliases) > 0 {
			msg := fmt.Sprintf("version %s can't be deleted: Alias %s points to it", v.Status.Version, strings.Join(aliases, ", "))
			if c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionDeletionBlocked); c == nil || c.Message != msg {
				setCondition(&v.Status.Conditions, v.Generation, contract.ConditionDeletionBlocked, true, contract.ReasonReferencedByAlias, msg)
				r.Recorder.Eventf(v, nil, corev1.EventTypeWarning, contract.ReasonReferencedByAlias, "Delete", "%s", msg)
			}
			return nil
		}
	}
	controllerutil.RemoveFinalizer(v, versionFinalizer)
	return r.Update(ctx, v)
}

// aliasesUsing lists the Aliases of a function that route to version num or name it.
func aliasesUsing(ctx context.Context, c client.Reader, ns, fn, num string) ([]string, error) {
	var list lambdav1alpha1.AliasList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{indexFunctionName: fn}); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range list.Items {
		if !a.DeletionTimestamp.IsZero() {
			continue
		}
		// What the alias routes now (its status) and what its spec asks for.
		_, weighted := additionalWeights(&a)[num]
		_, routed := a.Status.AdditionalVersionWeights[num]
		if a.Spec.FunctionVersion == num || weighted || a.Status.FunctionVersion == num || routed {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

// SetupWithManager registers the controller. Versions are reconciled one at a time: with
// the optimistic update of the Function's counter, that keeps numbering simple.
func (r *VersionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	for _, obj := range []client.Object{&lambdav1alpha1.Version{}, &lambdav1alpha1.Alias{}} {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), obj, indexFunctionName, func(o client.Object) []string {
			switch t := o.(type) {
			case *lambdav1alpha1.Version:
				return []string{t.Spec.FunctionName}
			case *lambdav1alpha1.Alias:
				return []string{t.Spec.FunctionName}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	versionsOf := func(ctx context.Context, o client.Object, fn string) []reconcile.Request {
		var list lambdav1alpha1.VersionList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexFunctionName: fn}); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, v := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&v)})
		}
		return out
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&lambdav1alpha1.Version{}, ownObjectChanged).
		Owns(&appsv1.Deployment{}, deploymentChanged).
		Watches(&lambdav1alpha1.Function{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return versionsOf(ctx, o, o.GetName())
		})).
		Watches(&lambdav1alpha1.Alias{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return versionsOf(ctx, o, o.(*lambdav1alpha1.Alias).Spec.FunctionName)
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// additionalWeights is an Alias's additionalVersionWeights (nil when it has none).
func additionalWeights(a *lambdav1alpha1.Alias) map[string]float64 {
	if a.Spec.RoutingConfig == nil {
		return nil
	}
	return a.Spec.RoutingConfig.AdditionalVersionWeights
}
