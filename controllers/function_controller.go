package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	k8sauthn "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/readiness"
	"github.com/klambda/klambda/internal/statuspatch"
)

// FunctionReconciler makes $LATEST of a Function run: it resolves code and layers, keeps the
// per-function invoke Secret, applies the $LATEST Deployment and headless Service, and
// reports Lambda's state and lastUpdateStatus.
type FunctionReconciler struct {
	client.Client
	Resolver *Resolver
	Recorder events.EventRecorder
	Config   Config
	// Deriver makes Image functions' one-container images (nil: the sidecar shape).
	Deriver *ImageDeriver
}

// retryResolve is how long a download that failed waits before it is tried again.
const retryResolve = 30 * time.Second

// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions/finalizers,verbs=update
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=layerversions,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *FunctionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var fn lambdav1alpha1.Function
	if err := r.Get(ctx, req.NamespacedName, &fn); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fn.DeletionTimestamp.IsZero() {
		// Owner references take the versions, aliases, Deployments, Services, Secret and code copies.
		return ctrl.Result{}, nil
	}
	// A merge patch of the fields this reconcile changed, so that it never overwrites the
	// version counter the Version controller keeps in the status.
	patch := statuspatch.New(r.Client, &fn)
	defer patch.Close(ctx, &err, func(rerr error) {
		fn.Status.ObservedGeneration = readiness.Observe(&fn.Status.Conditions, fn.Generation, fn.Status.ObservedGeneration, rerr)
	})
	r.reportURL(&fn)
	return r.reconcileNormal(ctx, &fn, patch)
}

// reportURL sets status.functionUrl while spec.functionUrlConfig is set (the activator
// serves it from its informers), and clears it when the config is removed.
func (r *FunctionReconciler) reportURL(fn *lambdav1alpha1.Function) {
	fn.Status.FunctionURL = ""
	if fn.Spec.FunctionURLConfig != nil {
		fn.Status.FunctionURL = r.Config.FunctionURLs.FunctionURL(contract.FunctionURLID(string(fn.UID), fn.Namespace, fn.Name, ""))
	}
}

// reconcileNormal runs $LATEST: the invoke Secret and NetworkPolicy first, then the code,
// layers and Deployment, then the state they leave the function in.
func (r *FunctionReconciler) reconcileNormal(ctx context.Context, fn *lambdav1alpha1.Function, patch *statuspatch.Patch) (ctrl.Result, error) {
	if err := r.startChange(ctx, fn, patch); err != nil {
		return ctrl.Result{}, err
	}
	var rerr *ResolveError
	secret, err := r.ensureInvokeSecret(ctx, fn)
	if errors.As(err, &rerr) {
		return r.fail(fn, rerr), nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	// Before any pod can exist: only the activator may reach its invoke port.
	if err := reconcileNetworkPolicy(ctx, r.Client, fn, r.Config.NetworkPolicy); err != nil {
		return ctrl.Result{}, err
	}
	w, layers, ro, err := r.applyLatest(ctx, fn, secret)
	if errors.As(err, &rerr) {
		res := r.fail(fn, rerr)
		// The serving revision stays; revisions it replaced still drain and go.
		if wait, err := r.removeDrainedRevisions(ctx, fn); err != nil {
			return ctrl.Result{}, err
		} else if wait > 0 && (res.RequeueAfter == 0 || wait < res.RequeueAfter) {
			res.RequeueAfter = wait
		}
		return res, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	r.reportActive(fn, w, layers)
	r.reportRollout(fn, ro)
	if err := r.deleteUnusedCodeCopies(ctx, fn, w.CodeCopy); err != nil {
		logf.FromContext(ctx).Error(err, "deleting unused code copies")
	}
	res := ctrl.Result{RequeueAfter: ro.RequeueAfter}
	if denied, err := r.checkDestinations(ctx, fn); err != nil {
		return ctrl.Result{}, err
	} else if denied {
		if res.RequeueAfter == 0 || res.RequeueAfter > time.Minute {
			res.RequeueAfter = time.Minute // a RoleBinding granted later shows up here
		}
	}
	st := &fn.Status
	logf.FromContext(ctx).V(1).Info("function reconciled", "state", st.State, "lastUpdateStatus", st.LastUpdateStatus, "revisionId", st.RevisionID)
	return res, nil
}

// startChange reports what a new generation starts: a new function is Pending until its
// Deployment is applied; an update is InProgress meanwhile (the previous code keeps serving).
// A new function's first status is written at once, Reconciling, before its code is
// fetched: until then kstatus would read the object without status as current.
func (r *FunctionReconciler) startChange(ctx context.Context, fn *lambdav1alpha1.Function, patch *statuspatch.Patch) error {
	st := &fn.Status
	isUpdate := st.ObservedGeneration != 0 && st.ObservedGeneration != fn.Generation
	if st.State == "" {
		st.State, st.StateReasonCode, st.StateReason = lambdav1alpha1.StatePending, lambdav1alpha1.StateReasonCreating, "The function is being created."
		st.Version = contract.Latest
		st.FunctionARN = lambdav1alpha1.FunctionARN(r.Config.Region, r.Config.AccountID, fn.Name)
		r.Recorder.Eventf(fn, nil, corev1.EventTypeNormal, "Creating", "Create", "Function is Pending while its code is resolved")
	} else if isUpdate && st.LastUpdateStatus != lambdav1alpha1.LastUpdateInProgress {
		st.LastUpdateStatus, st.LastUpdateStatusReason, st.LastUpdateStatusReasonCode = lambdav1alpha1.LastUpdateInProgress, "The function is being updated.", ""
		r.Recorder.Eventf(fn, nil, corev1.EventTypeNormal, "UpdateInProgress", "Update", "Update to generation %d in progress; the previous code keeps serving", fn.Generation)
	}
	if st.ObservedGeneration != 0 {
		return nil // an older generation's status: tools see it is not this one's
	}
	readiness.Reconciling(&st.Conditions, fn.Generation, contract.ReasonInProgress, "resolving code and layers")
	st.ObservedGeneration = fn.Generation
	return patch.Flush(ctx)
}

// applyLatest resolves $LATEST and applies its revision's Deployment and the headless
// Service (revisions.go); a *ResolveError says why it can't.
func (r *FunctionReconciler) applyLatest(ctx context.Context, fn *lambdav1alpha1.Function, secret string) (*Workload, []lambdav1alpha1.ResolvedLayer, *rollout, error) {
	w, layers, err := r.resolve(ctx, fn)
	if err != nil {
		return nil, nil, nil, err
	}
	w.InvokeSecret = secret
	d, err := w.Deployment(r.Config, fn.Namespace)
	if err != nil {
		return nil, nil, nil, err
	}
	ro, err := r.applyRevision(ctx, fn, d, w.Service(fn.Namespace))
	return w, layers, ro, err
}

// reportActive records the applied code and revision: the function is Active (at zero
// replicas too, as in Lambda).
func (r *FunctionReconciler) reportActive(fn *lambdav1alpha1.Function, w *Workload, layers []lambdav1alpha1.ResolvedLayer) {
	st, gen := &fn.Status, fn.Generation
	prevRevision := st.RevisionID
	st.CodeSha256, st.CodeSize = w.CodeDigest.Base64, w.CodeDigest.Size
	st.ResolvedImageURI, st.ImageURI, st.DerivedImageURI = "", "", ""
	if fn.Spec.PackageType == lambdav1alpha1.PackageTypeImage {
		st.ResolvedImageURI, st.ImageURI, st.DerivedImageURI = w.ImageURI, fn.Spec.Code.ImageURI, w.DerivedImageURI
	}
	st.CodeStoreRef = w.CodeStoreRef
	st.Layers = layers
	layerDigests := make([]string, 0, len(layers))
	for _, l := range layers {
		layerDigests = append(layerDigests, l.CodeSha256)
	}
	st.RevisionID = revisionID(string(fn.UID), strconv.FormatInt(gen, 10), st.CodeSha256, st.ResolvedImageURI, strings.Join(layerDigests, ","))
	if st.RevisionID != prevRevision {
		now := metav1.Now()
		st.LastModified = &now
	}
	if st.State != lambdav1alpha1.StateActive {
		r.Recorder.Eventf(fn, nil, corev1.EventTypeNormal, "Active", "Deploy", "Function is Active (code %s)", st.CodeSha256)
	}
	st.State, st.StateReason, st.StateReasonCode = lambdav1alpha1.StateActive, "", ""
	setCondition(&st.Conditions, gen, contract.ConditionCodeResolved, true, contract.ReasonResolved, "code and layers resolved")
}

// reportRollout is lastUpdateStatus as the revisions stand: InProgress until invocations
// switch to this generation's revision, Successful from the switch, Failed when the new
// revision made no progress (the previous one keeps serving). Ready from the switch;
// Stalled when the update failed. RolloutComplete says whether the serving revision runs
// all its replicas.
func (r *FunctionReconciler) reportRollout(fn *lambdav1alpha1.Function, ro *rollout) {
	st, gen := &fn.Status, fn.Generation
	switch {
	case ro.Switched:
		if st.LastUpdateStatus != lambdav1alpha1.LastUpdateSuccessful {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeNormal, "UpdateSuccessful", "Update", "generation %d serves (Deployment %s)", gen, ro.Serving.Name)
		}
		st.LastUpdateStatus, st.LastUpdateStatusReason, st.LastUpdateStatusReasonCode = lambdav1alpha1.LastUpdateSuccessful, "", ""
		if done, _ := rolloutComplete(ro.Serving); done {
			setCondition(&st.Conditions, gen, contract.ConditionRolloutComplete, true, "RolloutComplete", "every pod of the serving revision is available")
		} else {
			setCondition(&st.Conditions, gen, contract.ConditionRolloutComplete, false, contract.ReasonInProgress, "the serving revision's new pods are starting")
		}
		readiness.Ready(&st.Conditions, gen, string(lambdav1alpha1.StateActive), fmt.Sprintf("generation %d serves", gen))
	case ro.Failed != "":
		if st.LastUpdateStatus != lambdav1alpha1.LastUpdateFailed {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "UpdateFailed", "Update", "the new revision's environments did not become ready: %s", ro.Failed)
		}
		st.LastUpdateStatus, st.LastUpdateStatusReasonCode = lambdav1alpha1.LastUpdateFailed, lambdav1alpha1.LastUpdateStatusReasonCode(lambdav1alpha1.StateReasonInternalError)
		st.LastUpdateStatusReason = "The new code's environments did not become ready; the previous code keeps serving: " + ro.Failed
		setCondition(&st.Conditions, gen, contract.ConditionRolloutComplete, false, "ProgressDeadlineExceeded", ro.Failed)
		readiness.Stalled(&st.Conditions, gen, string(st.LastUpdateStatusReasonCode), st.LastUpdateStatusReason)
	default:
		if st.LastUpdateStatus != lambdav1alpha1.LastUpdateInProgress {
			// Also an update that is no new generation (its ConfigMap code changed).
			st.LastUpdateStatus, st.LastUpdateStatusReason, st.LastUpdateStatusReasonCode = lambdav1alpha1.LastUpdateInProgress, "The function is being updated.", ""
		}
		setCondition(&st.Conditions, gen, contract.ConditionRolloutComplete, false, contract.ReasonInProgress, "the new revision's first environment is starting; the previous revision keeps serving")
		if !readyAt(st.Conditions, gen) {
			readiness.Reconciling(&st.Conditions, gen, contract.ReasonInProgress, fmt.Sprintf("generation %d: waiting for its first environment", gen))
		}
	}
}

// readyAt: generation gen was found realized.
func readyAt(conds []metav1.Condition, gen int64) bool {
	c := meta.FindStatusCondition(conds, contract.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen
}

// fail records a resolution failure. A function that never ran is Failed; an update that
// fails leaves the last good Deployment alone, so the function stays Active on it. Either
// is Stalled with Lambda's reason code (a transient failure is retried meanwhile). A
// function waiting for a layer being published is Reconciling, and so is one whose code
// store failed, for storeFailureGrace (storeretry.go).
func (r *FunctionReconciler) fail(fn *lambdav1alpha1.Function, rerr *ResolveError) ctrl.Result {
	st := &fn.Status
	gen := fn.Generation
	code := rerr.Reason
	if rerr.Waiting {
		// The LayerVersion watch brings the function back when the layer is published.
		setCondition(&st.Conditions, gen, contract.ConditionCodeResolved, false, contract.ReasonInProgress, rerr.Message)
		if st.State != lambdav1alpha1.StateActive {
			st.State, st.StateReasonCode, st.StateReason = lambdav1alpha1.StatePending, lambdav1alpha1.StateReasonCreating, rerr.Message
		}
		reason := string(rerr.Reason) // Creating
		if st.State == lambdav1alpha1.StateActive {
			reason = contract.ReasonInProgress // an update
		}
		readiness.Reconciling(&st.Conditions, gen, reason, rerr.Message)
		return ctrl.Result{RequeueAfter: retryResolve}
	}
	if retrying, msg := retryingStore(&st.Conditions, gen, rerr, time.Now()); retrying {
		if c := meta.FindStatusCondition(st.Conditions, contract.ConditionReconciling); c == nil || c.Reason != ReasonCodeStoreUnavailable {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, ReasonCodeStoreUnavailable, "Resolve", "%s", msg)
		}
		if st.State == lambdav1alpha1.StateActive {
			st.LastUpdateStatus, st.LastUpdateStatusReasonCode, st.LastUpdateStatusReason = lambdav1alpha1.LastUpdateInProgress, "", msg
		} else {
			st.State, st.StateReasonCode, st.StateReason = lambdav1alpha1.StatePending, lambdav1alpha1.StateReasonCreating, msg
		}
		readiness.Reconciling(&st.Conditions, gen, ReasonCodeStoreUnavailable, msg)
		return ctrl.Result{RequeueAfter: storeRetry}
	}
	if st.State == lambdav1alpha1.StateActive {
		if st.LastUpdateStatus != lambdav1alpha1.LastUpdateFailed || st.LastUpdateStatusReason != rerr.Message {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "UpdateFailed", "Update", "%s", rerr.Message)
		}
	} else {
		if st.State != lambdav1alpha1.StateFailed || st.StateReason != rerr.Message {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "Failed", "Create", "%s", rerr.Message)
		}
		st.State, st.StateReasonCode, st.StateReason = lambdav1alpha1.StateFailed, code, rerr.Message
	}
	st.LastUpdateStatus, st.LastUpdateStatusReasonCode, st.LastUpdateStatusReason = lambdav1alpha1.LastUpdateFailed, lambdav1alpha1.LastUpdateStatusReasonCode(code), rerr.Message
	setCondition(&st.Conditions, gen, contract.ConditionCodeResolved, false, string(code), rerr.Message)
	msg := rerr.Message
	if st.State == lambdav1alpha1.StateActive {
		msg = "the update failed; the previous code and configuration keep serving: " + msg
	}
	readiness.Stalled(&st.Conditions, gen, string(code), msg)
	if rerr.Transient {
		return ctrl.Result{RequeueAfter: retryResolve}
	}
	return ctrl.Result{}
}

// resolve turns $LATEST's spec into a Workload and the status' layer list.
func (r *FunctionReconciler) resolve(ctx context.Context, fn *lambdav1alpha1.Function) (*Workload, []lambdav1alpha1.ResolvedLayer, error) {
	w := &Workload{Function: fn.Name, Qualifier: contract.Latest, Config: *fn.Spec.FunctionConfiguration.DeepCopy()}
	if err := checkEnvironmentSize(ctx, r.Resolver.Reader, fn.Namespace, fn.Spec.Environment); err != nil {
		return nil, nil, err
	}
	if fn.Spec.PackageType == lambdav1alpha1.PackageTypeImage {
		img, err := r.resolveImage(ctx, fn)
		if err != nil {
			return nil, nil, err
		}
		if img.Unpinned != "" && fn.Status.ResolvedImageURI != img.URI {
			r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ImageNotPinned", "Resolve", "%s: %s", fn.Spec.Code.ImageURI, img.Unpinned)
		}
		w.ImageURI, w.CodeDigest = img.URI, img.Digest
		if w.DerivedImageURI, err = r.derivedImage(ctx, fn, img); err != nil {
			return nil, nil, err
		}
		return w, nil, nil
	}
	if _, ok := r.Config.RuntimeImages[string(fn.Spec.Runtime)]; !ok {
		return nil, nil, invalid("runtime %s has no base image: add it to runtimeImages in the manager configuration", fn.Spec.Runtime)
	}
	z, err := r.resolveCode(ctx, fn)
	if err != nil {
		return nil, nil, err
	}
	w.CodeDigest, w.CodeCopy, w.CodeStoreRef = z.Digest, z.ConfigMapCopy, z.StoreRef
	var resolved []lambdav1alpha1.ResolvedLayer
	for _, ref := range fn.Spec.Layers {
		lv, err := findLayerVersion(ctx, r.Client, fn.Namespace, ref)
		if err != nil {
			return nil, nil, err
		}
		inUse := false
		for _, l := range fn.Status.Layers {
			if lv != nil && l.Name == lv.Name && l.Version == lv.Status.Version {
				inUse = true
			}
		}
		switch {
		case lv == nil:
			return nil, nil, invalid("layers: LayerVersion %s not found", ref)
		case !lv.DeletionTimestamp.IsZero() && !inUse:
			return nil, nil, invalid("layers: LayerVersion %s was deleted; it can't be added to a function", ref)
		case !meta.IsStatusConditionTrue(lv.Status.Conditions, contract.ConditionReady) || lv.Status.Version == 0:
			c := meta.FindStatusCondition(lv.Status.Conditions, contract.ConditionReady)
			if c != nil && c.Reason != contract.ReasonInProgress {
				return nil, nil, invalid("layers: LayerVersion %s is not usable: %s", ref, c.Message)
			}
			return nil, nil, &ResolveError{Reason: lambdav1alpha1.StateReasonCreating, Message: fmt.Sprintf("layers: waiting for LayerVersion %s to be published", ref), Waiting: true}
		}
		wl, err := workloadLayer(lv)
		if err != nil {
			return nil, nil, invalid("layers: %s: %v", ref, err)
		}
		w.Layers = append(w.Layers, wl)
		resolved = append(resolved, lambdav1alpha1.ResolvedLayer{Name: lv.Name, Version: lv.Status.Version, ARN: lv.Status.LayerVersionARN, CodeSha256: lv.Status.CodeSha256, CodeSize: lv.Status.CodeSize})
	}
	return w, resolved, nil
}

// resolveImage pins $LATEST's image. The digest resolved for code.imageUri is kept in
// status.resolvedImageUri (with status.imageUri, the reference it was resolved from) and
// reused, so that a tag re-pointed while the manager restarts or fails over, or before a
// configuration-only update, does not change $LATEST: as Lambda resolves a tag only at
// UpdateFunctionCode, the registry is asked again only when code.imageUri changes. The
// registry is asked with the function's ServiceAccount's imagePullSecrets.
func (r *FunctionReconciler) resolveImage(ctx context.Context, fn *lambdav1alpha1.Function) (ImageResult, error) {
	st := &fn.Status
	// A status written before status.imageUri existed: reused for its own generation only.
	sameImage := st.ImageURI == fn.Spec.Code.ImageURI || (st.ImageURI == "" && resolvedThisGeneration(fn))
	if sameImage && strings.Contains(st.ResolvedImageURI, "@sha256:") {
		_, d, _ := strings.Cut(st.ResolvedImageURI, "@")
		return imageResult(st.ResolvedImageURI, d)
	}
	kc, err := r.pullKeychain(ctx, fn)
	if err != nil {
		return ImageResult{}, err
	}
	return r.Resolver.ResolveImage(ctx, fn.Spec.Code.ImageURI, kc)
}

// derivedImage is the one-container image of $LATEST's image (imagefunctions.go): ""
// for the sidecar shape, with a Warning Event when its derivation failed. When the
// repository can't be asked, the one this generation already runs (status) is kept.
func (r *FunctionReconciler) derivedImage(ctx context.Context, fn *lambdav1alpha1.Function, img ImageResult) (string, error) {
	der, err := r.Deriver.Derived(ctx, fn, img, func() (authn.Keychain, error) { return r.pullKeychain(ctx, fn) })
	if err != nil {
		return "", err
	}
	if der.Failed != "" && der.Tell {
		r.Recorder.Eventf(fn, nil, corev1.EventTypeWarning, "ImageNotDerived", "Derive", "%s: %s; the function runs in the sidecar shape (the runtime-shim beside the image)", img.URI, der.Failed)
	}
	return der.URI, nil
}

// pullKeychain is the registry credentials of the function's pods: the imagePullSecrets of
// its ServiceAccount (go-containerregistry's pkg/authn/kubernetes reads them as the kubelet
// does). A missing ServiceAccount or Secret is skipped, as the kubelet skips it.
func (r *FunctionReconciler) pullKeychain(ctx context.Context, fn *lambdav1alpha1.Function) (authn.Keychain, error) {
	saName := fn.Spec.ServiceAccountName
	if saName == "" {
		saName = "default"
	}
	var sa corev1.ServiceAccount
	if err := r.Resolver.Reader.Get(ctx, types.NamespacedName{Namespace: fn.Namespace, Name: saName}, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var secrets []corev1.Secret
	for _, ref := range sa.ImagePullSecrets {
		var sec corev1.Secret
		if err := r.Resolver.Reader.Get(ctx, types.NamespacedName{Namespace: fn.Namespace, Name: ref.Name}, &sec); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		secrets = append(secrets, sec)
	}
	if len(secrets) == 0 {
		return nil, nil
	}
	return k8sauthn.NewFromPullSecrets(ctx, secrets)
}

// resolveCode resolves $LATEST's .zip. Code from a URL or S3 that this generation already
// resolved into the code store is taken from the status, not downloaded again: after a
// restart of the manager, a source that changed or disappeared changes nothing (a new
// generation, an edit of the spec, resolves again). ConfigMap code is read every time: its
// ConfigMap's changes are updates.
func (r *FunctionReconciler) resolveCode(ctx context.Context, fn *lambdav1alpha1.Function) (ZipResult, error) {
	st := &fn.Status
	if r.Resolver.Store != nil && fn.Spec.Code.ConfigMapRef == nil && st.CodeStoreRef != "" && resolvedThisGeneration(fn) {
		if d, err := digestFromBase64(st.CodeSha256, st.CodeSize); err == nil {
			ref, err := r.Resolver.Stored(ctx, d)
			if err == nil {
				return ZipResult{Digest: d, StoreRef: ref}, nil
			}
			if !errors.Is(err, codestore.ErrNotFound) {
				return ZipResult{}, storeError("code", err)
			}
			// Not in the store any more (it was emptied): resolved again from the source.
		}
	}
	return r.Resolver.ResolveZip(ctx, fn, "code", fn.Spec.Code.CodeSource, taskRoot)
}

// resolvedThisGeneration: the status' code is this generation's (CodeResolved is True
// for it).
func resolvedThisGeneration(fn *lambdav1alpha1.Function) bool {
	c := meta.FindStatusCondition(fn.Status.Conditions, contract.ConditionCodeResolved)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == fn.Generation
}

// workloadLayer is a resolved LayerVersion as a pod loads it.
func workloadLayer(lv *lambdav1alpha1.LayerVersion) (WorkloadLayer, error) {
	d, err := digestFromBase64(lv.Status.CodeSha256, lv.Status.CodeSize)
	if err != nil {
		return WorkloadLayer{}, err
	}
	wl := WorkloadLayer{Content: lv.Spec.Content, Digest: d, StoreRef: lv.Status.CodeStoreRef}
	if lv.Spec.Content.ConfigMapRef != nil {
		wl.Copy = codeConfigMapName(lv.Name, d.Hex)
	}
	return wl, nil
}

// findLayerVersion finds a layer reference: a LayerVersion's object name, or
// <layerName>:<version>. It returns nil when there is none.
func findLayerVersion(ctx context.Context, c client.Reader, ns, ref string) (*lambdav1alpha1.LayerVersion, error) {
	if name, ver, ok := strings.Cut(ref, ":"); ok {
		n, err := strconv.ParseInt(ver, 10, 64)
		if err != nil {
			return nil, invalid("layers: %q: bad version", ref)
		}
		var list lambdav1alpha1.LayerVersionList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		// A LayerVersion of that layer that has no number yet may be about to become
		// version n (applied together with the function, as GitOps does): the caller waits
		// for it rather than failing the function; once numbered, the watch re-resolves.
		var unnumbered *lambdav1alpha1.LayerVersion
		for i := range list.Items {
			lv := &list.Items[i]
			if lv.EffectiveLayerName() != name {
				continue
			}
			if lv.Status.Version == n {
				return lv, nil
			}
			if lv.Status.Version == 0 && lv.DeletionTimestamp.IsZero() {
				unnumbered = lv
			}
		}
		return unnumbered, nil
	}
	var lv lambdav1alpha1.LayerVersion
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref}, &lv); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &lv, nil
}

// ensureInvokeSecret creates the function's invoke token once; it is owned by the Function.
// A Secret of that name the Function does not control (made before it, by anyone who may
// create Secrets in the namespace, so its token may be known) is never used: a transient
// *ResolveError (InvalidConfiguration) until it is deleted.
func (r *FunctionReconciler) ensureInvokeSecret(ctx context.Context, fn *lambdav1alpha1.Function) (string, error) {
	name := InvokeSecretName(fn.Name)
	var s corev1.Secret
	err := r.Resolver.Reader.Get(ctx, types.NamespacedName{Namespace: fn.Namespace, Name: name}, &s)
	if err == nil {
		if !metav1.IsControlledBy(&s, fn) {
			return "", &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidConfiguration, Transient: true,
				Message: fmt.Sprintf("Secret %s already exists and is not controlled by this Function: klambda does not use an invoke token it did not create. Delete or rename that Secret; the Function retries.", name)}
		}
		return name, nil
	}
	if !apierrors.IsNotFound(err) {
		return "", err
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fn.Namespace,
			Labels:      withLabels(functionAppLabels(fn.Name), map[string]string{contract.LabelFunction: contract.FunctionLabelValue(fn.Name), contract.LabelComponent: "invoke-secret"}),
			Annotations: map[string]string{contract.AnnotationFunctionName: fn.Name}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{contract.InvokeSecretKey: []byte(randomToken())},
	}
	if err := controllerutil.SetControllerReference(fn, &s, r.Scheme()); err != nil {
		return "", err
	}
	if err := r.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating the invoke Secret %s: %w", name, err)
	}
	return name, nil
}

// deleteUnusedCodeCopies deletes the function's ConfigMap code copies that neither $LATEST
// nor a published version runs any more.
func (r *FunctionReconciler) deleteUnusedCodeCopies(ctx context.Context, fn *lambdav1alpha1.Function, current string) error {
	var copies metav1.PartialObjectMetadataList
	copies.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMapList"))
	if err := r.List(ctx, &copies, client.InNamespace(fn.Namespace), client.MatchingLabels{contract.LabelComponent: "code", contract.LabelFunction: contract.FunctionLabelValue(fn.Name)}); err != nil {
		return err
	}
	if len(copies.Items) <= 1 {
		return nil
	}
	keep := map[string]bool{current: true}
	var versions lambdav1alpha1.VersionList
	if err := r.Resolver.Reader.List(ctx, &versions, client.InNamespace(fn.Namespace)); err != nil {
		return err
	}
	for _, v := range versions.Items {
		if v.Spec.FunctionName != fn.Name {
			continue
		}
		if v.Status.Version == "" && v.Status.CodeSha256 == "" {
			// Not published yet: it may be about to freeze the current code (kept above).
			continue
		}
		if d, err := digestFromBase64(v.Status.CodeSha256, 0); err == nil {
			keep[codeConfigMapName(fn.Name, d.Hex)] = true
		}
	}
	for i := range copies.Items {
		c := &copies.Items[i]
		if keep[c.Name] || !metav1.IsControlledBy(c, fn) && !ownedBy(c, fn) {
			continue
		}
		if err := r.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

func ownedBy(obj metav1.Object, owner metav1.Object) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
}

// Field indexes.
const (
	indexCodeConfigMap = "spec.code.configMapRef.name"
	indexFunctionName  = "spec.functionName"
)

// SetupWithManager registers the controller: Functions, the Deployments and Services they
// own, the LayerVersions they use and the ConfigMaps their code comes from (metadata only).
func (r *FunctionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &lambdav1alpha1.Function{}, indexCodeConfigMap, func(o client.Object) []string {
		if f := o.(*lambdav1alpha1.Function); f.Spec.Code.ConfigMapRef != nil {
			return []string{f.Spec.Code.ConfigMapRef.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&lambdav1alpha1.Function{}, ownObjectChanged).
		Owns(&appsv1.Deployment{}, deploymentChanged).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&lambdav1alpha1.LayerVersion{}, handler.EnqueueRequestsFromMapFunc(r.functionsUsingLayer)).
		WatchesMetadata(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.functionsUsingConfigMap), builder.WithPredicates())
	if r.Deriver != nil {
		// A function whose image was being derived comes back when the derivation ends.
		b = b.WatchesRawSource(source.Channel(r.Deriver.Wake(), &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

func (r *FunctionReconciler) functionsUsingConfigMap(ctx context.Context, o client.Object) []reconcile.Request {
	var list lambdav1alpha1.FunctionList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexCodeConfigMap: o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, f := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&f)})
	}
	return out
}

func (r *FunctionReconciler) functionsUsingLayer(ctx context.Context, o client.Object) []reconcile.Request {
	lv := o.(*lambdav1alpha1.LayerVersion)
	var list lambdav1alpha1.FunctionList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, f := range list.Items {
		for _, ref := range f.Spec.Layers {
			name, _, isPair := strings.Cut(ref, ":")
			if ref == lv.Name || (isPair && name == lv.EffectiveLayerName()) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&f)})
				break
			}
		}
	}
	return out
}
