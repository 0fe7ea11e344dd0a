package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Revisions of $LATEST (issue #18, "no mixed code"). Every pod template of $LATEST is a
// revision with its own Deployment; a Deployment's template never changes. An update
// creates the new revision's Deployment beside the serving one, with as many replicas; the
// activator routes $LATEST to the pods of status.servingDeployment only. The switch
// (status.servingDeployment := the new revision) happens when the new revision's first
// environment is ready, or at once when the serving revision runs no environment. The
// previous revision is deleted once the invocations it may still run have ended (its
// drain time after the switch). A new revision that makes no progress for
// revisionProgressDeadline fails the update; the previous revision keeps serving.
const (
	// revisionProgressDeadline is the new revision Deployment's progressDeadlineSeconds: no
	// ready environment (no progress) for this long and the update is Failed.
	revisionProgressDeadline = 120
	// annotationDrainSeconds (on a revision's Deployment): how long after the switch away
	// from it the revision may still run an invocation it was sent before the switch.
	annotationDrainSeconds = "lambda.klambda.dev/drain-seconds"
	// drainMargin is added to the function's timeout: the activator learns the switch
	// through its informers, and an invocation it dispatched just before may start a moment
	// later.
	drainMargin = 5
	// maxTimeoutSeconds is Lambda's longest timeout: the drain time of a revision that does
	// not say its own.
	maxTimeoutSeconds = 900
)

// templateRevision names a pod template: 10 hex characters of the SHA-256 of its JSON.
func templateRevision(tpl *corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(tpl)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10], nil
}

// revisionDeploymentName is the Deployment of revision rev of $LATEST: the function's first
// Deployment is <function>-latest (WorkloadName), later ones <function>-latest-<revision>.
func revisionDeploymentName(function, rev string, first bool) string {
	if first {
		return WorkloadName(function, contract.Latest)
	}
	return shortName(function, "latest", rev)
}

// rollout is where an update of $LATEST stands after a reconcile.
type rollout struct {
	// Serving is the Deployment the activator routes to (after this reconcile's switch).
	Serving *appsv1.Deployment
	// Switched: Serving runs this generation's template.
	Switched bool
	// Failed says why the new revision failed (it made no progress); Serving is the old one.
	Failed string
	// RequeueAfter: when the next old revision has drained and can be deleted.
	RequeueAfter time.Duration
}

// applyRevision applies d (the $LATEST Deployment of this generation, without revision)
// as its revision, switches to it when it may serve, and deletes drained old revisions.
func (r *FunctionReconciler) applyRevision(ctx context.Context, fn *lambdav1alpha1.Function, d *appsv1.Deployment, svc *corev1.Service) (*rollout, error) {
	rev, err := templateRevision(&d.Spec.Template)
	if err != nil {
		return nil, err
	}
	deps, err := r.latestDeployments(ctx, fn)
	if err != nil {
		return nil, err
	}
	st := &fn.Status
	var serving, target *appsv1.Deployment
	for i := range deps {
		dep := &deps[i]
		if dep.Labels[contract.LabelRevision] == rev {
			target = dep
		}
		if dep.Name == st.ServingDeployment || st.ServingDeployment == "" && dep.Name == WorkloadName(fn.Name, contract.Latest) {
			// (Without servingDeployment: a function made before revisions, whose one
			// Deployment serves.)
			serving = dep
		}
	}
	name := revisionDeploymentName(fn.Name, rev, len(deps) == 0)
	if target != nil {
		name = target.Name
	}
	asRevision(d, name, rev, int32(fn.Spec.EffectiveTimeout()/time.Second)+drainMargin)
	initial := int32(0)
	if serving != nil && serving.Name != name && serving.Spec.Replicas != nil {
		initial = *serving.Spec.Replicas
	}
	applied, err := applyWorkloadAt(ctx, r.Client, r.Resolver.Reader, fn, d, svc, initial)
	if err != nil {
		return nil, err
	}

	ro := &rollout{Serving: serving}
	switch {
	case serving == nil || serving.Name == applied.Name:
		ro.Switched = true // nothing else serves
	case serving.Spec.Replicas != nil && *serving.Spec.Replicas == 0:
		ro.Switched = true // the serving revision runs no environment: nothing to wait for
	case applied.Status.ObservedGeneration >= applied.Generation && applied.Status.AvailableReplicas >= 1:
		ro.Switched = true // the new revision's first environment is ready
	default:
		ro.Failed = progressFailed(applied)
	}
	if ro.Switched {
		ro.Serving = applied
		if st.ServingDeployment != applied.Name {
			now := metav1.Now()
			prev := st.ServingDeployment
			st.ServingDeployment, st.ServingSince = applied.Name, &now
			if prev != "" {
				r.Recorder.Eventf(fn, nil, corev1.EventTypeNormal, "Switched", "Update", "invocations go to Deployment %s (was %s)", applied.Name, prev)
			}
		}
	}
	ro.RequeueAfter, err = r.removeDrained(ctx, fn, deps, ro.Serving.Name, applied.Name)
	return ro, err
}

// asRevision makes d the Deployment of revision rev: its name, the revision label on it,
// its selector and its pods, its progress deadline and its drain time.
func asRevision(d *appsv1.Deployment, name, rev string, drainSeconds int32) {
	d.Name = name
	d.Labels = maps.Clone(d.Labels)
	d.Labels[contract.LabelRevision] = rev
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: maps.Clone(d.Spec.Selector.MatchLabels)}
	d.Spec.Selector.MatchLabels[contract.LabelRevision] = rev
	d.Spec.Template.Labels = maps.Clone(d.Spec.Template.Labels)
	if d.Spec.Template.Labels == nil {
		d.Spec.Template.Labels = map[string]string{}
	}
	d.Spec.Template.Labels[contract.LabelRevision] = rev
	d.Annotations = maps.Clone(d.Annotations)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[annotationDrainSeconds] = strconv.Itoa(int(drainSeconds))
	d.Spec.ProgressDeadlineSeconds = ptrInt32(revisionProgressDeadline)
}

// latestDeployments lists the $LATEST Deployments the Function controls, from the API
// server (a revision created by the previous reconcile may not be in the cache yet).
func (r *FunctionReconciler) latestDeployments(ctx context.Context, fn *lambdav1alpha1.Function) ([]appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := r.Resolver.Reader.List(ctx, &list, client.InNamespace(fn.Namespace), client.MatchingLabels(selectorLabels(fn.Name, contract.Latest))); err != nil {
		return nil, err
	}
	out := list.Items[:0]
	for _, d := range list.Items {
		if metav1.IsControlledBy(&d, fn) && d.DeletionTimestamp.IsZero() {
			out = append(out, d)
		}
	}
	return out, nil
}

// removeDrained deletes the revisions that neither serve nor are this generation's, once
// the invocations sent to them before the last switch have ended: at once when they run
// no pods, else their drain time after status.servingSince. It answers when to look again.
func (r *FunctionReconciler) removeDrained(ctx context.Context, fn *lambdav1alpha1.Function, deps []appsv1.Deployment, serving, target string) (time.Duration, error) {
	var next time.Duration
	for i := range deps {
		d := &deps[i]
		if d.Name == serving || d.Name == target {
			continue
		}
		wait := time.Duration(0)
		if d.Spec.Replicas == nil || *d.Spec.Replicas > 0 || d.Status.Replicas > 0 {
			drain, err := strconv.Atoi(d.Annotations[annotationDrainSeconds])
			if err != nil || drain <= 0 {
				drain = maxTimeoutSeconds + drainMargin
			}
			since := time.Time{}
			if fn.Status.ServingSince != nil {
				since = fn.Status.ServingSince.Time
			}
			wait = time.Until(since.Add(time.Duration(drain) * time.Second))
		}
		if wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		if err := r.Delete(ctx, d, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &d.UID}); client.IgnoreNotFound(err) != nil {
			return 0, fmt.Errorf("deleting the old revision %s: %w", d.Name, err)
		}
		logf.FromContext(ctx).Info("old revision removed", "deployment", d.Name, "serving", serving)
	}
	if next > 0 {
		next += time.Second
	}
	return next, nil
}

// removeDrainedRevisions removes the drained revisions that are not serving when this
// generation has none (its resolution failed): a pending revision of an earlier generation
// is superseded.
func (r *FunctionReconciler) removeDrainedRevisions(ctx context.Context, fn *lambdav1alpha1.Function) (time.Duration, error) {
	if fn.Status.ServingDeployment == "" {
		return 0, nil // a function from before revisions, or one that never served
	}
	deps, err := r.latestDeployments(ctx, fn)
	if err != nil {
		return 0, err
	}
	return r.removeDrained(ctx, fn, deps, fn.Status.ServingDeployment, "")
}

// progressFailed is the deployment controller's verdict on a revision that made no progress
// (its template is never changed, so the verdict is about this revision).
func progressFailed(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return c.Message
		}
	}
	return ""
}
