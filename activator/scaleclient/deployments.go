// Package scaleclient carries out the scaler's decisions on function Deployments: it
// owns spec.replicas through the scale subresource under the activator's own field
// manager, and marks idle pods for removal with the pod-deletion-cost annotation.
package scaleclient

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	autoscalingv1ac "k8s.io/client-go/applyconfigurations/autoscaling/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/internal/ownerchain"
	"github.com/klambda/klambda/activator/scaler"
	"github.com/klambda/klambda/api/contract"
)

const (
	// FieldManager is the activator's server-side apply identity; it owns spec.replicas.
	FieldManager = "klambda-activator"
	// PodDeletionCost is the annotation the ReplicaSet controller ranks pods by.
	PodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"
	// RemovalCost is the pod-deletion-cost MarkForRemoval gives.
	RemovalCost = "-1000"
)

// Deployments scales function Deployments: it finds a version's Deployment by its
// labels in the cache and owns spec.replicas through server-side apply.
type Deployments struct {
	Reader client.Reader
	Client kubernetes.Interface
	// FieldManager defaults to FieldManager.
	FieldManager string
}

var _ scaler.Deployments = (*Deployments)(nil)

func (d *Deployments) manager() string {
	if d.FieldManager == "" {
		return FieldManager
	}
	return d.FieldManager
}

func (d *Deployments) find(ctx context.Context, key fnkey.Key) (*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := d.Reader.List(ctx, &list, client.InNamespace(key.Namespace),
		client.MatchingLabels{contract.LabelFunction: contract.FunctionLabelValue(key.Function), contract.LabelVersion: contract.VersionLabelValue(key.Version)}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		dep := &list.Items[i]
		if dep.DeletionTimestamp != nil {
			continue
		}
		// Only the Deployment klambda made for this version: the labels alone could be
		// anyone's (or another long-named function's).
		if k, _, err := ownerchain.OfDeployment(ctx, d.Reader, dep); err == nil && k == key {
			return dep, nil
		}
	}
	return nil, scaler.ErrNoDeployment
}

// Version answers key's Deployment (from the cache) and the UID of its Function.
func (d *Deployments) Version(ctx context.Context, key fnkey.Key) (*appsv1.Deployment, types.UID, error) {
	dep, err := d.find(ctx, key)
	if err != nil {
		return nil, "", err
	}
	_, fnUID, err := ownerchain.OfDeployment(ctx, d.Reader, dep)
	return dep, fnUID, err
}

// Replicas answers spec.replicas (1 when unset: the API server's default).
func (d *Deployments) Replicas(key fnkey.Key) (int32, error) {
	dep, err := d.find(context.Background(), key)
	if err != nil {
		return 0, err
	}
	if dep.Spec.Replicas == nil {
		return 1, nil
	}
	return *dep.Spec.Replicas, nil
}

// Scale applies spec.replicas, and nothing else, as the activator's field manager, through
// the Deployment's scale subresource: the activator's role grants deployments/scale and no
// write on Deployments themselves, so it cannot change a function's pod template (image,
// ServiceAccount, volumes).
func (d *Deployments) Scale(ctx context.Context, key fnkey.Key, replicas int32) error {
	dep, err := d.find(ctx, key)
	if err != nil {
		return err
	}
	ac := autoscalingv1ac.Scale().WithSpec(autoscalingv1ac.ScaleSpec().WithReplicas(replicas))
	_, err = d.Client.AppsV1().Deployments(dep.Namespace).ApplyScale(ctx, dep.Name, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true})
	if err != nil {
		return fmt.Errorf("applying replicas=%d to Deployment %s/%s: %w", replicas, dep.Namespace, dep.Name, err)
	}
	return nil
}

// MarkForRemoval gives the pods the lowest deletion cost, so the ReplicaSet removes
// them before any busy pod.
func (d *Deployments) MarkForRemoval(ctx context.Context, key fnkey.Key, pods []string) error {
	for _, name := range pods {
		ac := corev1ac.Pod(name, key.Namespace).WithAnnotations(map[string]string{PodDeletionCost: RemovalCost})
		if _, err := d.Client.CoreV1().Pods(key.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true}); err != nil {
			return fmt.Errorf("marking pod %s/%s for removal: %w", key.Namespace, name, err)
		}
	}
	return nil
}

// Unmark removes the mark MarkForRemoval gave: an apply of nothing by the same field
// manager gives up the annotation, which nobody else owns.
func (d *Deployments) Unmark(ctx context.Context, key fnkey.Key, pods []string) error {
	for _, name := range pods {
		ac := corev1ac.Pod(name, key.Namespace)
		if _, err := d.Client.CoreV1().Pods(key.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: d.manager(), Force: true}); err != nil {
			return fmt.Errorf("unmarking pod %s/%s: %w", key.Namespace, name, err)
		}
	}
	return nil
}
