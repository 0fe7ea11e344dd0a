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
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/poller"
)

// Finalizer keeps a mapping until its poller has stopped.
const Finalizer = "lambda.klambda.dev/event-source-poller"

// Reasons of state transitions.
const (
	ReasonUserInitiated      = "USER_INITIATED"
	ReasonConfigNotValid     = "ESM_CONFIG_NOT_VALID"
	ConditionReady           = "Ready"
	conditionReasonPolling   = "Polling"
	conditionReasonDisabled  = "Disabled"
	conditionReasonStarting  = "Starting"
	conditionReasonBadConfig = "ConfigNotValid"
	conditionReasonNoPoller  = "PollerNotStarted"
	// ConditionReasonAccessDenied: the mapping's ServiceAccount may not invoke the function
	// or read a Secret the mapping names; nothing is polled (authorize.go).
	ConditionReasonAccessDenied = "AccessDenied"
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
		For(&lambdav1alpha1.EventSourceMapping{}).
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

// Reconcile reads top to bottom: fetch, deletion, finalizer, uuid, transitional state,
// apply to the poller, settled state.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var esm lambdav1alpha1.EventSourceMapping
	if err := r.Client.Get(ctx, req.NamespacedName, &esm); err != nil {
		if apierrors.IsNotFound(err) {
			r.Pollers.Remove(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}

	if !esm.DeletionTimestamp.IsZero() {
		if esm.Status.State != lambdav1alpha1.EventSourceMappingDeleting {
			if err := r.patchStatus(ctx, &esm, func(s *lambdav1alpha1.EventSourceMappingStatus) {
				transition(s, lambdav1alpha1.EventSourceMappingDeleting, ReasonUserInitiated)
			}); err != nil {
				return ctrl.Result{}, err
			}
		}
		r.Pollers.Remove(req.NamespacedName)
		if err := r.Pollers.DeleteLease(ctx, string(esm.UID)); err != nil {
			return ctrl.Result{}, fmt.Errorf("deleting the mapping's Lease: %w", err)
		}
		if controllerutil.ContainsFinalizer(&esm, Finalizer) {
			base := esm.DeepCopy()
			controllerutil.RemoveFinalizer(&esm, Finalizer)
			if err := r.Client.Patch(ctx, &esm, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
			}
		}
		logger.Info("event source mapping deleted, its poller stopped")
		return ctrl.Result{}, nil
	}

	if !controllerutil.ContainsFinalizer(&esm, Finalizer) {
		base := esm.DeepCopy()
		controllerutil.AddFinalizer(&esm, Finalizer)
		if err := r.Client.Patch(ctx, &esm, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
	}

	if esm.Status.UUID == "" {
		err := r.patchStatus(ctx, &esm, func(s *lambdav1alpha1.EventSourceMappingStatus) {
			s.UUID = string(esm.UID)
			s.EventSourceMappingARN = r.Builder.MappingARN(s.UUID)
			s.FunctionARN = r.Builder.FunctionARN(esm.Spec.FunctionName)
			s.LastProcessingResult = poller.ResultNoRecords
			transition(s, lambdav1alpha1.EventSourceMappingCreating, ReasonUserInitiated)
			setReady(s, esm.Generation, metav1.ConditionFalse, conditionReasonStarting, "the poller is starting")
		})
		return ctrl.Result{}, err
	}

	enabled := esm.Spec.Enabled == nil || *esm.Spec.Enabled
	if esm.Status.ObservedGeneration != 0 && esm.Status.ObservedGeneration != esm.Generation && !inTransition(esm.Status.State) {
		next := lambdav1alpha1.EventSourceMappingUpdating
		switch {
		case esm.Status.State == lambdav1alpha1.EventSourceMappingDisabled && enabled:
			next = lambdav1alpha1.EventSourceMappingEnabling
		case esm.Status.State == lambdav1alpha1.EventSourceMappingEnabled && !enabled:
			next = lambdav1alpha1.EventSourceMappingDisabling
		}
		if err := r.patchStatus(ctx, &esm, func(s *lambdav1alpha1.EventSourceMappingStatus) {
			transition(s, next, ReasonUserInitiated)
			s.FunctionARN = r.Builder.FunctionARN(esm.Spec.FunctionName)
		}); err != nil {
			return ctrl.Result{}, err
		}
	}

	st := r.Pollers.Apply(&esm)
	if !st.Leading || st.Applied != esm.Generation {
		// Another replica polls this mapping, or ours is still applying: its notification
		// (or the Lease holder's) brings us back.
		return ctrl.Result{}, nil
	}

	err := r.patchStatus(ctx, &esm, func(s *lambdav1alpha1.EventSourceMappingStatus) {
		s.ObservedGeneration = esm.Generation
		switch {
		case st.Err != nil && isAccessDenied(st.Err):
			transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonConfigNotValid)
			setReady(s, esm.Generation, metav1.ConditionFalse, ConditionReasonAccessDenied, st.Err.Error())
		case st.Err != nil && isConfigError(st.Err):
			transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonConfigNotValid)
			setReady(s, esm.Generation, metav1.ConditionFalse, conditionReasonBadConfig, st.Err.Error())
		case st.Err != nil:
			transition(s, lambdav1alpha1.EventSourceMappingEnabled, ReasonUserInitiated)
			s.LastProcessingResult = "PROBLEM: " + st.Err.Error()
			setReady(s, esm.Generation, metav1.ConditionFalse, conditionReasonNoPoller, st.Err.Error())
		case enabled:
			transition(s, lambdav1alpha1.EventSourceMappingEnabled, ReasonUserInitiated)
			if st.LastResult != "" {
				s.LastProcessingResult = st.LastResult
			}
			setReady(s, esm.Generation, metav1.ConditionTrue, conditionReasonPolling, "polling the event source")
		default:
			transition(s, lambdav1alpha1.EventSourceMappingDisabled, ReasonUserInitiated)
			setReady(s, esm.Generation, metav1.ConditionFalse, conditionReasonDisabled, "the mapping is disabled")
		}
	})
	return ctrl.Result{}, err
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

func setReady(s *lambdav1alpha1.EventSourceMappingStatus, gen int64, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// patchStatus applies mutate to the status and patches it when it changed.
func (r *Reconciler) patchStatus(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, mutate func(*lambdav1alpha1.EventSourceMappingStatus)) error {
	base := esm.DeepCopy()
	mutate(&esm.Status)
	if equality.Semantic.DeepEqual(base.Status, esm.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, esm, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("writing the status of %s/%s: %w", esm.Namespace, esm.Name, err)
	}
	return nil
}
