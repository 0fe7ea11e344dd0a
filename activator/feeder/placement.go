package feeder

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/internal/ownerchain"
	"github.com/klambda/klambda/api/contract"
)

// placement is what the cluster says of a version's environments that are not ready:
// how many are placed and starting, and whether a new one cannot be placed
// (dispatch.Dispatcher.SetPlacement). A cluster without room is to klambda what an
// exhausted account concurrency is to Lambda: requests get 429 with its reason.
type placement struct {
	starting int
	refused  *dispatch.CapacityError
}

// countNotReady counts p, a pod of the version that is not ready, into pl: placed on a
// node (starting), or refused by the scheduler (Unschedulable).
func (pl *placement) countNotReady(p *corev1.Pod) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return
	}
	for _, c := range p.Status.Conditions {
		if c.Type != corev1.PodScheduled {
			continue
		}
		if c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			pl.refused = &dispatch.CapacityError{Reason: contract.ReasonAccountConcurrency, Cause: dispatch.CauseUnschedulable,
				Detail: "pod " + p.Name + ": " + c.Message}
			return
		}
		if c.Status == corev1.ConditionTrue {
			pl.starting++
		}
		return
	}
	if p.Spec.NodeName != "" {
		pl.starting++
	}
}

// replicaFailures adds to pls the versions whose ReplicaSet (function label value l in
// ns) cannot create the pods it wants (condition ReplicaFailure, e.g. FailedCreate over
// a ResourceQuota).
func (f *Feeder) replicaFailures(ctx context.Context, ns, l string, pls map[fnkey.Key]*placement) {
	var list appsv1.ReplicaSetList
	if err := f.Cache.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{contract.LabelFunction: l}); err != nil {
		f.Log.Error(err, "listing ReplicaSets", "namespace", ns, "function label", l)
		return
	}
	for i := range list.Items {
		rs := &list.Items[i]
		c := replicaFailure(rs)
		if c == nil || rs.DeletionTimestamp != nil || (rs.Spec.Replicas != nil && *rs.Spec.Replicas <= rs.Status.Replicas) {
			continue
		}
		key, _, err := ownerchain.OfReplicaSet(ctx, f.Cache, rs)
		if err != nil {
			continue
		}
		pl := pls[key]
		if pl == nil {
			pl = &placement{}
			pls[key] = pl
		}
		pl.refused = &dispatch.CapacityError{Reason: contract.ReasonAccountConcurrency, Cause: dispatch.CauseFailedCreate,
			Detail: "ReplicaSet " + rs.Name + ": " + c.Reason + ": " + c.Message}
	}
}

// replicaFailure is rs's ReplicaFailure condition when it is true.
func replicaFailure(rs *appsv1.ReplicaSet) *appsv1.ReplicaSetCondition {
	for i := range rs.Status.Conditions {
		if c := &rs.Status.Conditions[i]; c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// registerPlacement looks at a function's pods again when one of its ReplicaSets starts
// or stops failing to create pods, or wants another number of them.
func (f *Feeder) registerPlacement(ctx context.Context) error {
	return f.addHandler(ctx, &appsv1.ReplicaSet{}, toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, o any) {
			a, b := old.(*appsv1.ReplicaSet), o.(*appsv1.ReplicaSet)
			if l := b.Labels[contract.LabelFunction]; l != "" && (!equality.Semantic.DeepEqual(replicaFailure(a), replicaFailure(b)) ||
				!equality.Semantic.DeepEqual(a.Spec.Replicas, b.Spec.Replicas) || a.Status.Replicas != b.Status.Replicas) {
				f.syncLabel(ctx, b.Namespace, l, nil)
			}
		},
	})
}

// setPlacements tells the dispatcher what the cluster says of each version's environments
// not ready (after their ready ones were set); a version without a placement is cleared.
func (f *Feeder) setPlacements(keys map[fnkey.Key]bool, pls map[fnkey.Key]*placement) {
	for k := range keys {
		if pl := pls[k]; pl != nil {
			if pl.refused != nil {
				f.Log.V(1).Info("no new environment can be placed; waiting requests beyond those starting are refused", "key", k.String(),
					"cause", pl.refused.Cause, "detail", pl.refused.Detail, "starting", pl.starting)
			}
			f.Dispatcher.SetPlacement(k, pl.starting, pl.refused)
		} else {
			f.Dispatcher.SetPlacement(k, 0, nil)
		}
	}
}
