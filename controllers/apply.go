package controllers

import (
	"context"
	"fmt"

	"github.com/klambda/klambda/api/contract"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// applyWorkload server-side applies a version's Deployment and headless Service, owned by
// owner. The applied Deployment never has spec.replicas: a new one is first applied with
// replicas 0 by contract.ScalerFieldManager, which then keeps only spec.replicas; from then on
// spec.replicas belongs to whoever scales it (the activator), never to contract.FieldManager.
func applyWorkload(ctx context.Context, c client.Client, live client.Reader, owner client.Object, dep *appsv1.Deployment, svc *corev1.Service) (*appsv1.Deployment, error) {
	return applyWorkloadAt(ctx, c, live, owner, dep, svc, 0)
}

// applyWorkloadAt is applyWorkload with the replicas a new Deployment is born with (a new
// revision of $LATEST starts with as many as the revision it replaces: revisions.go).
func applyWorkloadAt(ctx context.Context, c client.Client, live client.Reader, owner client.Object, dep *appsv1.Deployment, svc *corev1.Service, initial int32) (*appsv1.Deployment, error) {
	if err := controllerutil.SetControllerReference(owner, dep, c.Scheme()); err != nil {
		return nil, err
	}
	if err := controllerutil.SetControllerReference(owner, svc, c.Scheme()); err != nil {
		return nil, err
	}
	u, err := applyObject(dep)
	if err != nil {
		return nil, err
	}
	var existing appsv1.Deployment
	err = c.Get(ctx, client.ObjectKeyFromObject(dep), &existing)
	created := false
	if apierrors.IsNotFound(err) {
		// Born at `initial` (0 but for a new revision): contract.ScalerFieldManager applies
		// the whole object with those replicas ...
		born := u.DeepCopy()
		if err := unstructured.SetNestedField(born.Object, int64(initial), "spec", "replicas"); err != nil {
			return nil, err
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(born), client.FieldOwner(contract.ScalerFieldManager)); err != nil {
			return nil, fmt.Errorf("creating Deployment %s at %d replicas: %w", dep.Name, initial, err)
		}
		created = true
	} else if err != nil {
		return nil, err
	}
	unstructured.RemoveNestedField(u.Object, "spec", "replicas")
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("applying Deployment %s: %w", dep.Name, err)
	}
	if created {
		// ... and then keeps only spec.replicas, so that every other field is contract.FieldManager's
		// alone and disappears when a later apply drops it. If the activator has already
		// scaled, the conflict means replicas are its own: nothing to do.
		replicasOnly := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": dep.Name, "namespace": dep.Namespace},
			"spec":     map[string]any{"replicas": int64(initial)},
		}}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(replicasOnly), client.FieldOwner(contract.ScalerFieldManager)); err != nil && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("handing Deployment %s over to %s: %w", dep.Name, contract.FieldManager, err)
		}
	}
	us, err := applyObject(svc)
	if err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(us), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("applying Service %s: %w", svc.Name, err)
	}
	// The live object (uncached): its generation and status say whether the rollout is done.
	var applied appsv1.Deployment
	if err := live.Get(ctx, client.ObjectKeyFromObject(dep), &applied); err != nil {
		return nil, err
	}
	return &applied, nil
}

// applyObject is obj as an apply configuration: without status and the null timestamps a
// typed object would otherwise claim.
func applyObject(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	return u, nil
}

// rolloutComplete: the Deployment runs the applied template everywhere (no pods, or all
// updated and available). Until then the old pods keep serving.
func rolloutComplete(d *appsv1.Deployment) (done bool, failed string) {
	s := d.Status
	for _, cond := range s.Conditions {
		// A failure the deployment controller reported before it saw the latest spec is
		// about an older template.
		if cond.Type == appsv1.DeploymentProgressing && cond.Status == corev1.ConditionFalse && cond.Reason == "ProgressDeadlineExceeded" && s.ObservedGeneration >= d.Generation {
			return false, cond.Message
		}
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		return true, ""
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas >= want && s.Replicas == s.UpdatedReplicas && s.AvailableReplicas >= want, ""
}
