package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/klambda/klambda/api/contract"
)

// LabelComponentPool is contract.LabelComponent's value on a pool's Deployment, Secret and
// NetworkPolicy.
const LabelComponentPool = "pool"

// PoolNetworkPolicyName guards the generic pods of a namespace.
const PoolNetworkPolicyName = "klambda-pool-shim-ingress"

// poolResync re-applies a namespace's pools now and then (a deleted pool Deployment comes
// back): pool Deployments are not in the manager's cache.
const poolResync = 5 * time.Minute

// Pool Deployments of keys no version uses any more are deleted. The pool Secret is never
// deleted (the manager may not delete Secrets, test/rbac): it stays, unused, in a
// namespace whose pools are gone, and is used again when they come back.
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete

// PoolReconciler keeps, per namespace, one Deployment of generic pods for every configured
// pool key that one of the namespace's function versions can use (its Deployment carries
// contract.AnnotationSpecialization of that key), with the pool's Secret and a
// NetworkPolicy admitting only the activator; and removes them when no version needs them.
// Requests are namespaces (Name = namespace).
type PoolReconciler struct {
	client.Client
	// APIReader reads what the manager does not cache: pool Deployments, the pool Secret.
	APIReader client.Reader
	Config    Config
}

// Reconcile brings one namespace's pools to what its function versions need.
func (r *PoolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := req.Name
	var deps appsv1.DeploymentList
	if err := r.List(ctx, &deps, client.InNamespace(ns), client.HasLabels{contract.LabelFunction}); err != nil {
		return reconcile.Result{}, err
	}
	want := map[string]contract.PoolKey{} // by label value
	for i := range deps.Items {
		d := &deps.Items[i]
		raw := d.Annotations[contract.AnnotationSpecialization]
		if raw == "" || d.DeletionTimestamp != nil {
			continue
		}
		var st contract.SpecializationTemplate
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			continue
		}
		if r.Config.poolSize(st.Pool) > 0 {
			want[st.Pool.LabelValue()] = st.Pool
		}
	}
	var pools appsv1.DeploymentList
	if err := r.APIReader.List(ctx, &pools, client.InNamespace(ns), client.MatchingLabels{contract.LabelComponent: LabelComponentPool}); err != nil {
		return reconcile.Result{}, err
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		if _, ok := want[p.Labels[contract.LabelPool]]; ok && p.DeletionTimestamp == nil {
			continue
		}
		if err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID}); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, fmt.Errorf("deleting pool Deployment %s: %w", p.Name, err)
		}
	}
	if len(want) == 0 {
		return reconcile.Result{}, r.removeShared(ctx, ns)
	}
	if err := r.ensureSecret(ctx, ns); err != nil {
		return reconcile.Result{}, err
	}
	if err := r.applyNetworkPolicy(ctx, ns); err != nil {
		return reconcile.Result{}, err
	}
	for _, key := range want {
		d, err := PoolDeployment(r.Config, key, ns)
		if err != nil {
			return reconcile.Result{}, err
		}
		u, err := applyObject(d)
		if err != nil {
			return reconcile.Result{}, err
		}
		if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
			return reconcile.Result{}, fmt.Errorf("applying pool Deployment %s: %w", d.Name, err)
		}
	}
	return reconcile.Result{RequeueAfter: poolResync}, nil
}

// PoolDeployment is key's pool in a namespace: Config's size of generic pods. The
// manager owns its replicas (the activator never scales a pool); a pod taken from it
// leaves its ReplicaSet (its labels no longer match), which starts another.
func PoolDeployment(cfg Config, key contract.PoolKey, namespace string) (*appsv1.Deployment, error) {
	tpl, err := PoolPodTemplate(cfg, key)
	if err != nil {
		return nil, err
	}
	size := cfg.poolSize(key)
	zero, surge := intstr.FromInt32(0), intstr.FromString("25%")
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: key.PoolWorkloadName(), Namespace: namespace,
			Labels:      withLabels(sharedAppLabels(appComponentPool), map[string]string{contract.LabelPool: key.LabelValue(), contract.LabelComponent: LabelComponentPool}),
			Annotations: map[string]string{contract.AnnotationPoolKey: key.String()},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &size,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{contract.LabelPool: key.LabelValue()}},
			Template: tpl,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &surge}},
			RevisionHistoryLimit: ptrInt32(1),
		},
	}, nil
}

// ensureSecret creates the namespace's pool Secret (a random token) unless it exists. A
// Secret of that name klambda did not make is never used: the pools of that namespace
// fail until it is deleted.
func (r *PoolReconciler) ensureSecret(ctx context.Context, ns string) error {
	var s corev1.Secret
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: contract.PoolSecretName}, &s)
	if err == nil {
		if s.Labels[contract.LabelComponent] != LabelComponentPool {
			return fmt.Errorf("Secret %s/%s exists and was not made by klambda: no pool in this namespace until it is deleted", ns, contract.PoolSecretName)
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: contract.PoolSecretName, Namespace: ns, Labels: withLabels(sharedAppLabels(appComponentPool), map[string]string{contract.LabelComponent: LabelComponentPool})},
		Data:       map[string][]byte{contract.InvokeSecretKey: []byte(hex.EncodeToString(b))},
	}
	if err := r.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the pool Secret: %w", err)
	}
	return nil
}

// applyNetworkPolicy admits only the activator to the generic pods' invoke port, as
// functionNetworkPolicy does for a function's pods (none when policies are off). It
// selects every pod a pool made (contract.LabelPoolEnvironment), claimed ones too: a
// claimed pod is admitted by this policy and its function's alike (the same rule), so no
// moment of the claim's label change leaves it admitted by neither.
func (r *PoolReconciler) applyNetworkPolicy(ctx context.Context, ns string) error {
	cfg := r.Config.NetworkPolicy
	if cfg.Enabled != nil && !*cfg.Enabled {
		return r.deleteNetworkPolicy(ctx, ns)
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(contract.ShimPort)
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: PoolNetworkPolicyName, Namespace: ns,
			Labels: withLabels(sharedAppLabels(appComponentPool), map[string]string{contract.LabelComponent: LabelComponentPool})},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{contract.LabelPoolEnvironment: "true"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: cfg.ActivatorNamespace}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: cfg.ActivatorPodLabels},
				}},
			}},
		},
	}
	u, err := applyObject(np)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying NetworkPolicy %s: %w", np.Name, err)
	}
	return nil
}

func (r *PoolReconciler) deleteNetworkPolicy(ctx context.Context, ns string) error {
	var np networkingv1.NetworkPolicy
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: PoolNetworkPolicyName}, &np)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || np.Labels[contract.LabelComponent] != LabelComponentPool {
		return err
	}
	return client.IgnoreNotFound(r.Delete(ctx, &np, client.Preconditions{UID: &np.UID}))
}

// removeShared deletes the pool NetworkPolicy of a namespace without pools (the Secret
// stays, see above).
func (r *PoolReconciler) removeShared(ctx context.Context, ns string) error {
	return r.deleteNetworkPolicy(ctx, ns)
}

// RemoveLeftoverPools reconciles every namespace that holds a pool Deployment: with no
// pools configured (the manager then runs no PoolReconciler), it deletes the pool
// Deployments and NetworkPolicies an earlier configuration left, so that removing every
// pool from the configuration does not leave generic pods running. The manager runs it
// once at start (leader only).
func (r *PoolReconciler) RemoveLeftoverPools(ctx context.Context) error {
	var pools appsv1.DeploymentList
	if err := r.APIReader.List(ctx, &pools, client.MatchingLabels{contract.LabelComponent: LabelComponentPool}); err != nil {
		return fmt.Errorf("listing pool Deployments: %w", err)
	}
	done := map[string]bool{}
	for _, p := range pools.Items {
		if done[p.Namespace] {
			continue
		}
		done[p.Namespace] = true
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: p.Namespace}}); err != nil {
			return fmt.Errorf("removing the pools of namespace %s: %w", p.Namespace, err)
		}
	}
	return nil
}

// SetupWithManager reconciles a namespace when one of its function Deployments is
// created, deleted or changes its annotations or spec (not on every status change).
func (r *PoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetNamespace()}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("pool").
		Watches(&appsv1.Deployment{}, toNamespace, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Complete(r)
}
