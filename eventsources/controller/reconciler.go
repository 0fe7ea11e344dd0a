// Package controller reconciles EventSourceMappings into pollers on this replica: it assigns
// the mapping's uuid, walks Lambda's states (Creating, Enabling, Enabled, Disabling,
// Disabled, Updating, Deleting) with stateTransitionReason and lastProcessingResult, starts,
// restarts and stops pollers as the spec changes, and holds a finalizer so a deleted mapping's
// poller is stopped before the object goes.
//
// Every replica reconciles every mapping; the replica holding the mapping's Lease (see
// Pollers) runs its poller and writes its settled states, while any replica may write the
// transitional ones (Creating, Updating, Enabling, Disabling, Deleting), which depend only
// on the spec.
package controller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/internal/readiness"
	"github.com/klambda/klambda/internal/statuspatch"
)

// Finalizer keeps a mapping until its poller has stopped.
const Finalizer = contract.FinalizerEventSourcePoller

// Lambda's stateTransitionReason values the mappings report (only the mappings use them).
const (
	ReasonUserInitiated  = "USER_INITIATED"
	ReasonConfigNotValid = "ESM_CONFIG_NOT_VALID"
)

// Reasons of condition contract.ConditionReady (contract.ReasonAccessDenied: the
// mapping's ServiceAccount may not invoke the function or read a Secret the mapping names;
// nothing is polled, authorize.go).
const (
	conditionReasonPolling   = "Polling"
	conditionReasonDisabled  = "Disabled"
	conditionReasonStarting  = "Starting"
	conditionReasonBadConfig = "ConfigNotValid"
	conditionReasonNoPoller  = "PollerNotStarted"
)

// Reconciler reconciles EventSourceMappings.
type Reconciler struct {
	Client  client.Client
	Pollers *Pollers
	Builder *Builder

	events chan event.GenericEvent
}

// The pollers' RBAC, exactly what they call (test/rbac checks it on a real kube-apiserver):
// their mappings through the manager's cache, finalizer and status patches; a Function's
// timeout and a mapping's Secrets by a single uncached Get (Builder.Reader is the API
// reader: no cache, so no list or watch of every Secret); invoke on functions, which the
// activator checks for the token every invocation carries (authorize.go first checks the
// mapping's own ServiceAccount); the per-mapping Leases, in the release namespace only (a
// Role; the chart sets its namespace).
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=eventsourcemappings,verbs=list;watch;patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=eventsourcemappings/status,verbs=patch
// +kubebuilder:rbac:groups=lambda.klambda.dev,resources=functions,verbs=get;invoke
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete,namespace=klambda-system

// SetupWithManager registers the reconciler, and wires the pollers' notifications back into it.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.events = make(chan event.GenericEvent, 1024)
	r.Pollers.Notify = r.notify
	if err := mgr.Add(stopPollersOnShutdown{r.Pollers}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Status patches (this reconcile's own, or another replica's) wake no one: the
		// pollers' notifications bring back what their progress changes.
		For(&lambdav1alpha1.EventSourceMapping{}, builder.WithPredicates(statuspatch.SpecOrMetadataChanged())).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		Named("eventsourcemapping").
		Complete(r)
}

// notify asks for a reconcile from a poller goroutine, never blocking it.
func (r *Reconciler) notify(key types.NamespacedName) {
	obj := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case r.events <- event.GenericEvent{Object: obj}:
	default:
		go func() { r.events <- event.GenericEvent{Object: obj} }()
	}
}

// stopPollersOnShutdown stops every poller when the manager stops; it runs on every replica.
type stopPollersOnShutdown struct{ p *Pollers }

func (s stopPollersOnShutdown) Start(ctx context.Context) error {
	<-ctx.Done()
	s.p.StopAll()
	return nil
}

func (stopPollersOnShutdown) NeedLeaderElection() bool { return false }

// Reconcile reads top to bottom: fetch, one deferred status patch (observedGeneration and
// the readiness conditions: Reconciling until the mapping's poller runs its generation),
// then deletion or the normal path.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var esm lambdav1alpha1.EventSourceMapping
	if err := r.Client.Get(ctx, req.NamespacedName, &esm); err != nil {
		if apierrors.IsNotFound(err) {
			r.Pollers.Remove(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	patch := statuspatch.New(r.Client, &esm)
	defer patch.Close(ctx, &err, func(rerr error) {
		esm.Status.ObservedGeneration = readiness.Observe(&esm.Status.Conditions, esm.Generation, esm.Status.ObservedGeneration, rerr)
	})
	if !esm.DeletionTimestamp.IsZero() {
		patch.Pending()
		return ctrl.Result{}, r.reconcileDelete(ctx, &esm, patch)
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, &esm, patch)
}

// reconcileDelete reports Deleting, stops the poller, deletes its Lease and lets the
// mapping go.
func (r *Reconciler) reconcileDelete(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, patch *statuspatch.Patch) error {
	transition(&esm.Status, lambdav1alpha1.EventSourceMappingDeleting, ReasonUserInitiated)
	// Written now: once the finalizer goes, so does the mapping.
	if err := patch.Flush(ctx); err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(esm)
	r.Pollers.Remove(key)
	if err := r.Pollers.DeleteLease(ctx, string(esm.UID)); err != nil {
		return fmt.Errorf("deleting the mapping's Lease: %w", err)
	}
	if controllerutil.ContainsFinalizer(esm, Finalizer) {
		base := esm.DeepCopy()
		controllerutil.RemoveFinalizer(esm, Finalizer)
		if err := r.Client.Patch(ctx, esm, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the finalizer: %w", err)
		}
		patch.Rebase()
	}
	log.FromContext(ctx).Info("event source mapping deleted, its poller stopped")
	return nil
}

// reconcileNormal holds the finalizer, assigns the uuid, reports the transitional state a
// spec change starts, applies the spec to the poller and, on the replica that polls,
// reports the settled state.
func (r *Reconciler) reconcileNormal(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, patch *statuspatch.Patch) error {
	if !controllerutil.ContainsFinalizer(esm, Finalizer) {
		base := esm.DeepCopy()
		controllerutil.AddFinalizer(esm, Finalizer)
		if err := r.Client.Patch(ctx, esm, client.MergeFrom(base)); err != nil {
			return fmt.Errorf("adding the finalizer: %w", err)
		}
		patch.Rebase()
	}
	s := &esm.Status
	if s.UUID == "" {
		s.UUID = string(esm.UID)
		s.EventSourceMappingARN = r.Builder.MappingARN(s.UUID)
		s.FunctionARN = r.Builder.FunctionARN(esm.Spec.FunctionName)
		s.LastProcessingResult = poller.ResultNoRecords
		transition(s, lambdav1alpha1.EventSourceMappingCreating, ReasonUserInitiated)
		readiness.Reconciling(&s.Conditions, esm.Generation, conditionReasonStarting, "the poller is starting")
	} else if s.ObservedGeneration != 0 && s.ObservedGeneration != esm.Generation && !inTransition(s.State) {
		next := nextTransition(esm)
		transition(s, next, ReasonUserInitiated)
		s.FunctionARN = r.Builder.FunctionARN(esm.Spec.FunctionName)
		readiness.Reconciling(&s.Conditions, esm.Generation, string(next), "the poller is applying generation "+strconv.FormatInt(esm.Generation, 10))
	}
	st := r.Pollers.Apply(esm)
	if !st.Leading || st.Applied != esm.Generation {
		// Another replica polls this mapping, or ours is still applying: its notification
		// (or the Lease holder's) brings us back. Until then the generation is Reconciling
		// (readiness.Observe), and a settled one stays as its poller reported it.
		return nil
	}
	settle(esm, st)
	return nil
}

// nextTransition is the transitional state a spec change starts.
func nextTransition(esm *lambdav1alpha1.EventSourceMapping) lambdav1alpha1.EventSourceMappingState {
	enabled := esm.Spec.Enabled == nil || *esm.Spec.Enabled
	switch {
	case esm.Status.State == lambdav1alpha1.EventSourceMappingDisabled && enabled:
		return lambdav1alpha1.EventSourceMappingEnabling
	case esm.Status.State == lambdav1alpha1.EventSourceMappingEnabled && !enabled:
		return lambdav1alpha1.EventSourceMappingDisabling
	}
	return lambdav1alpha1.EventSourceMappingUpdating
}

// settle reports the state the poller settled in for the mapping's generation: Ready in
// the desired state (Enabled and polling, or Disabled), Stalled when the configuration or
// the permissions keep it from polling, Reconciling while its poller can't start (retried).
func settle(esm *lambdav1alpha1.EventSourceMapping, st SlotStatus) {
	s, gen := &esm.Status, esm.Generation
	enabled := esm.Spec.Enabled == nil || *esm.Spec.Enabled
	switch {
	case st.Err != nil && isAccessDenied(st.Err):
		transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonConfigNotValid)
		readiness.Stalled(&s.Conditions, gen, contract.ReasonAccessDenied, st.Err.Error())
	case st.Err != nil && isConfigError(st.Err):
		transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonConfigNotValid)
		readiness.Stalled(&s.Conditions, gen, conditionReasonBadConfig, st.Err.Error())
	case st.Err != nil:
		transition(s, lambdav1alpha1.EventSourceMappingEnabled, ReasonUserInitiated)
		s.LastProcessingResult = "PROBLEM: " + st.Err.Error()
		readiness.Reconciling(&s.Conditions, gen, conditionReasonNoPoller, st.Err.Error())
	case enabled:
		transition(s, lambdav1alpha1.EventSourceMappingEnabled, ReasonUserInitiated)
		if st.LastResult != "" {
			s.LastProcessingResult = st.LastResult
		}
		readiness.Ready(&s.Conditions, gen, conditionReasonPolling, "polling the event source")
	default:
		transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonUserInitiated)
		readiness.Ready(&s.Conditions, gen, conditionReasonDisabled, "the mapping is disabled, as its spec says")
	}
}

func inTransition(s lambdav1alpha1.EventSourceMappingState) bool {
	switch s {
	case lambdav1alpha1.EventSourceMappingCreating, lambdav1alpha1.EventSourceMappingUpdating,
		lambdav1alpha1.EventSourceMappingEnabling, lambdav1alpha1.EventSourceMappingDisabling:
		return true
	}
	return false
}

// transition sets the state, and the reason and time when the state changes.
func transition(s *lambdav1alpha1.EventSourceMappingStatus, state lambdav1alpha1.EventSourceMappingState, reason string) {
	if s.State == state && s.StateTransitionReason == reason {
		return
	}
	s.State, s.StateTransitionReason = state, reason
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	s.LastModified = &now
}
