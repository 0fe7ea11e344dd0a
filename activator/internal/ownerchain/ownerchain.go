// Package ownerchain decides which version a function pod or Deployment serves, by its
// owner chain: pod → ReplicaSet → Deployment → the Function ($LATEST) or a Version of it,
// each link the controller reference with the UID of the object read. Labels alone never
// decide: anyone may copy them.
package ownerchain

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// ControllerRef is o's controller reference if it is of group and kind.
func ControllerRef(o metav1.Object, group, kind string) (*metav1.OwnerReference, error) {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil {
		return nil, fmt.Errorf("%s has no controller", o.GetName())
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != group || ref.Kind != kind {
		return nil, fmt.Errorf("%s is controlled by %s %s, not a %s", o.GetName(), ref.APIVersion, ref.Kind, kind)
	}
	return ref, nil
}

// getRef reads ref's object (of o's type) from r (the cache) and checks its UID.
func getRef(ctx context.Context, r client.Reader, ns string, ref *metav1.OwnerReference, o client.Object) error {
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, o); err != nil {
		return fmt.Errorf("%s %s: %w", ref.Kind, ref.Name, err)
	}
	if o.GetUID() != ref.UID || o.GetDeletionTimestamp() != nil {
		return fmt.Errorf("%s %s is not the one referenced (UID %s) or is being deleted", ref.Kind, ref.Name, ref.UID)
	}
	return nil
}

// OfPod follows p's owner chain to the version it belongs to, reading from r (the cache)
// (a pod claimed from a pool, contract.AnnotationSpecializedFrom: pod → Deployment → …);
// it answers the version's key and its Function's UID (the invoke Secret's owner). The
// pod's labels must be those of that version.
func OfPod(ctx context.Context, r client.Reader, p *corev1.Pod) (fnkey.Key, types.UID, error) {
	var none fnkey.Key
	var key fnkey.Key
	var fnUID types.UID
	if _, claimed := p.Annotations[contract.AnnotationSpecializedFrom]; claimed {
		// A pod taken from a pool (docs/pools.md) is controlled by the version's
		// Deployment itself, not by one of its ReplicaSets.
		depRef, err := ControllerRef(p, appsv1.GroupName, "Deployment")
		if err != nil {
			return none, "", err
		}
		var dep appsv1.Deployment
		if err := getRef(ctx, r, p.Namespace, depRef, &dep); err != nil {
			return none, "", err
		}
		if key, fnUID, err = OfDeployment(ctx, r, &dep); err != nil {
			return none, "", err
		}
	} else {
		rsRef, err := ControllerRef(p, appsv1.GroupName, "ReplicaSet")
		if err != nil {
			return none, "", err
		}
		var rs appsv1.ReplicaSet
		if err := getRef(ctx, r, p.Namespace, rsRef, &rs); err != nil {
			return none, "", err
		}
		if key, fnUID, err = OfReplicaSet(ctx, r, &rs); err != nil {
			return none, "", err
		}
	}
	if p.Labels[contract.LabelFunction] != contract.FunctionLabelValue(key.Function) || p.Labels[contract.LabelVersion] != contract.VersionLabelValue(key.Version) {
		return none, "", fmt.Errorf("labels %v are not those of %s", p.Labels, key.String())
	}
	return key, fnUID, nil
}

// OfReplicaSet answers the version a ReplicaSet's pods run: its controller is a Deployment
// OfDeployment accepts.
func OfReplicaSet(ctx context.Context, r client.Reader, rs *appsv1.ReplicaSet) (fnkey.Key, types.UID, error) {
	depRef, err := ControllerRef(rs, appsv1.GroupName, "Deployment")
	if err != nil {
		return fnkey.Key{}, "", err
	}
	var dep appsv1.Deployment
	if err := getRef(ctx, r, rs.Namespace, depRef, &dep); err != nil {
		return fnkey.Key{}, "", err
	}
	return OfDeployment(ctx, r, &dep)
}

// OfDeployment answers the version a Deployment runs: its controller is the Function
// ($LATEST; only its serving revision, see Serving) or a published Version controlled by
// the Function, with the cache's UIDs.
func OfDeployment(ctx context.Context, r client.Reader, dep *appsv1.Deployment) (fnkey.Key, types.UID, error) {
	var none fnkey.Key
	ref := metav1.GetControllerOfNoCopy(dep)
	if ref == nil {
		return none, "", fmt.Errorf("Deployment %s has no controller", dep.Name)
	}
	if ref.Kind == "Version" {
		vref, err := ControllerRef(dep, lambdav1alpha1.GroupVersion.Group, "Version")
		if err != nil {
			return none, "", err
		}
		var v lambdav1alpha1.Version
		if err := getRef(ctx, r, dep.Namespace, vref, &v); err != nil {
			return none, "", err
		}
		if v.Status.Version == "" {
			return none, "", fmt.Errorf("Version %s has no number yet", v.Name)
		}
		fref, err := ControllerRef(&v, lambdav1alpha1.GroupVersion.Group, "Function")
		if err != nil {
			return none, "", err
		}
		var fn lambdav1alpha1.Function
		if err := getRef(ctx, r, dep.Namespace, fref, &fn); err != nil {
			return none, "", err
		}
		if fn.Name != v.Spec.FunctionName {
			return none, "", fmt.Errorf("Version %s names function %s but is controlled by %s", v.Name, v.Spec.FunctionName, fn.Name)
		}
		return fnkey.Key{Namespace: dep.Namespace, Function: fn.Name, Version: v.Status.Version}, fn.UID, nil
	}
	fref, err := ControllerRef(dep, lambdav1alpha1.GroupVersion.Group, "Function")
	if err != nil {
		return none, "", err
	}
	var fn lambdav1alpha1.Function
	if err := getRef(ctx, r, dep.Namespace, fref, &fn); err != nil {
		return none, "", err
	}
	if !Serving(&fn, dep.Name) {
		return none, "", fmt.Errorf("Deployment %s is not the serving revision of %s (%s)", dep.Name, fn.Name, fn.Status.ServingDeployment)
	}
	return fnkey.Key{Namespace: dep.Namespace, Function: fn.Name, Version: contract.Latest}, fn.UID, nil
}

// Serving: deployment (one of fn's $LATEST revisions) is the one invocations go to, as
// the Function's status.servingDeployment says. An update runs the new revision beside
// the serving one until the manager switches this field; the old revision's pods then get
// no more invocations (those in flight finish). Before any switch was recorded (a
// Function from before revisions) its one Deployment serves.
func Serving(fn *lambdav1alpha1.Function, deployment string) bool {
	return fn.Status.ServingDeployment == "" || fn.Status.ServingDeployment == deployment
}
