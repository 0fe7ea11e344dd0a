package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/klambda/klambda/internal/statuspatch"
)

// Each reconciler's own object wakes it when its spec or metadata changes, not when its
// status does: a reconcile's status patch would otherwise bring the next reconcile. What a
// status depends on elsewhere (another object's status) comes through that object's watch.
var ownObjectChanged = builder.WithPredicates(statuspatch.SpecOrMetadataChanged())

// deploymentChanged passes a version's Deployment when it comes or goes, when its spec or
// metadata changes (the activator scales it; someone edits it), and when its status does:
// the rollout and the replicas are what the Function's lastUpdateStatus and a Version's
// provisioned concurrency report.
var deploymentChanged = builder.WithPredicates(predicate.Or(statuspatch.SpecOrMetadataChanged(), predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*appsv1.Deployment)
		n, ok2 := e.ObjectNew.(*appsv1.Deployment)
		return !ok1 || !ok2 || !equality.Semantic.DeepEqual(o.Status, n.Status)
	},
}))
