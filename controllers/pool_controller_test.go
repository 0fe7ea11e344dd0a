package controllers

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/klambda/klambda/api/contract"
)

// Against a real kube-apiserver: a namespace gets the pool of a key one of its function
// versions can use — a Deployment of generic pods, the pool Secret and a NetworkPolicy —
// and loses them when no version needs them any more.
func TestPoolObjectsFollowTheVersionsThatUseThem(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 2}\n- {runtime: provided.al2023, memorySize: 256, size: 1}")
	r := &PoolReconciler{Client: k8s, APIReader: k8s, Config: cfg}
	reconcileNS := func() {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}

	// A version that cannot use the pool (its own ServiceAccount) brings none.
	w := urlWorkload()
	w.Config.ServiceAccountName = "reader"
	ineligible, err := w.Deployment(cfg, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, ineligible); err != nil {
		t.Fatal(err)
	}
	reconcileNS()
	var pools appsv1.DeploymentList
	if err := k8s.List(ctx, &pools, client.InNamespace(ns), client.HasLabels{contract.LabelPool}); err != nil || len(pools.Items) != 0 {
		t.Fatalf("pools for an ineligible version: %d (%v)", len(pools.Items), err)
	}

	w = urlWorkload()
	w.Function = "other"
	dep, err := w.Deployment(cfg, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	reconcileNS()
	var pool appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.PoolWorkloadName()}, &pool); err != nil {
		t.Fatal(err)
	}
	if *pool.Spec.Replicas != 2 || pool.Spec.Template.Labels[contract.LabelPool] != key.LabelValue() || pool.Spec.Template.Spec.Containers[0].Args[0] != "generic" {
		t.Fatalf("pool Deployment: replicas %d, template %v %v", *pool.Spec.Replicas, pool.Spec.Template.Labels, pool.Spec.Template.Spec.Containers[0].Args)
	}
	// Only the 128 MB key is used: no pool of the 256 MB one.
	if err := k8s.List(ctx, &pools, client.InNamespace(ns), client.HasLabels{contract.LabelPool}); err != nil || len(pools.Items) != 1 {
		t.Fatalf("pools: %d (%v)", len(pools.Items), err)
	}
	var secret corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: contract.PoolSecretName}, &secret); err != nil || len(secret.Data[contract.InvokeSecretKey]) != 64 {
		t.Fatalf("pool Secret: %v %d", err, len(secret.Data[contract.InvokeSecretKey]))
	}
	var np networkingv1.NetworkPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: PoolNetworkPolicyName}, &np); err != nil {
		t.Fatal(err)
	}
	// It selects every pod a pool made, claimed ones too (they keep LabelPoolEnvironment).
	if sel := np.Spec.PodSelector; len(sel.MatchExpressions) != 0 || len(sel.MatchLabels) != 1 || sel.MatchLabels[contract.LabelPoolEnvironment] != "true" || len(np.Spec.Ingress[0].From) != 1 {
		t.Fatalf("policy %+v", np.Spec)
	}
	for _, obj := range []client.Object{&pool, &secret, &np} {
		getWithAppLabels(t, obj, sharedAppLabels(appComponentPool))
	}
	token := string(secret.Data[contract.InvokeSecretKey])
	reconcileNS() // idempotent: the token stays
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: contract.PoolSecretName}, &secret); err != nil || string(secret.Data[contract.InvokeSecretKey]) != token {
		t.Fatalf("the pool Secret changed (%v)", err)
	}

	// The last version that used it goes: so do the pool and its policy (the Secret stays:
	// the manager may not delete Secrets).
	if err := k8s.Delete(ctx, dep); err != nil {
		t.Fatal(err)
	}
	reconcileNS()
	for name, obj := range map[string]client.Object{key.PoolWorkloadName(): &appsv1.Deployment{}, PoolNetworkPolicyName: &networkingv1.NetworkPolicy{}} {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		if err == nil && obj.GetDeletionTimestamp() == nil {
			t.Errorf("%s is still there", name)
		} else if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// A Secret of the pool's name that klambda did not make is never used.
func TestPoolRefusesAForeignSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: contract.PoolSecretName, Namespace: ns}, StringData: map[string]string{"token": "chosen"}}); err != nil {
		t.Fatal(err)
	}
	dep, err := urlWorkload().Deployment(cfg, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	r := &PoolReconciler{Client: k8s, APIReader: k8s, Config: cfg}
	_, err = r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: ns}})
	if err == nil || !strings.Contains(err.Error(), "not made by klambda") {
		t.Fatalf("err = %v", err)
	}
	var pools appsv1.DeploymentList
	if err := k8s.List(ctx, &pools, client.InNamespace(ns), client.HasLabels{contract.LabelPool}); err != nil || len(pools.Items) != 0 {
		t.Fatalf("a pool was made with a foreign Secret: %d (%v)", len(pools.Items), err)
	}
}

// With no pools configured, RemoveLeftoverPools (run once at the manager's start) deletes
// the pool Deployments and NetworkPolicies an earlier configuration left, and nothing else.
func TestRemoveLeftoverPoolsWithNoPoolsConfigured(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	before := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	w := urlWorkload()
	dep, err := w.Deployment(before, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	r := &PoolReconciler{Client: k8s, APIReader: k8s, Config: before}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	var pool appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.PoolWorkloadName()}, &pool); err != nil {
		t.Fatalf("the pool Deployment was not made: %v", err)
	}

	after := &PoolReconciler{Client: k8s, APIReader: k8s, Config: poolConfig(t, "")}
	if err := after.RemoveLeftoverPools(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.PoolWorkloadName()}, &pool); err == nil && pool.DeletionTimestamp == nil {
		t.Fatal("the pool Deployment is still there")
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: PoolNetworkPolicyName}, &np); !apierrors.IsNotFound(err) {
		t.Fatalf("the pool NetworkPolicy: %v, want it gone", err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), &appsv1.Deployment{}); err != nil {
		t.Fatalf("the function's own Deployment: %v", err)
	}
}
