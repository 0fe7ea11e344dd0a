package controllers

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
)

// hasAppLabels fails unless labels carry every recommended label of want with its value.
func hasAppLabels(t *testing.T, what string, labels, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("%s: label %s=%q, want %q (labels %v)", what, k, labels[k], v, labels)
		}
	}
}

// noAppLabelsIn fails if a selector uses a recommended label: a Deployment's selector is
// immutable, so one that did could not be updated from a manager that labelled less.
func noAppLabelsIn(t *testing.T, what string, selector map[string]string) {
	t.Helper()
	for k := range selector {
		if strings.HasPrefix(k, "app.kubernetes.io/") {
			t.Errorf("%s: selector %v uses %s", what, selector, k)
		}
	}
}

// A function's workload carries the recommended labels on the Deployment, its pods and its
// Service, never in the selectors; a function name of 64 characters gets a shortened
// instance, a valid label value.
func TestWorkloadCarriesTheRecommendedLabels(t *testing.T) {
	cfg := poolConfig(t, "")
	long := "a-function-name-of-sixty-four-characters-which-labels-must-hash1"
	for _, name := range []string{"hello", long} {
		w := urlWorkload()
		w.Function = name
		d, err := w.Deployment(cfg, "ns")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"app.kubernetes.io/name": "klambda-function", "app.kubernetes.io/instance": contract.FunctionLabelValue(name),
			"app.kubernetes.io/component": "function", "app.kubernetes.io/part-of": "klambda", "app.kubernetes.io/managed-by": "klambda-manager"}
		hasAppLabels(t, name+" Deployment", d.Labels, want)
		hasAppLabels(t, name+" pod template", d.Spec.Template.Labels, want)
		noAppLabelsIn(t, name+" Deployment", d.Spec.Selector.MatchLabels)
		svc := w.Service("ns")
		hasAppLabels(t, name+" Service", svc.Labels, want)
		noAppLabelsIn(t, name+" Service", svc.Spec.Selector)
		if len(want["app.kubernetes.io/instance"]) > 63 {
			t.Errorf("instance %q is longer than a label value", want["app.kubernetes.io/instance"])
		}
	}
}

// A pool's Deployment and its pods carry the pool's recommended labels, never in the
// selector. (test/rbac TestActivatorChangesOnlyTheDeletionCostOfPods claims such a pod for
// a version and checks it ends with the function's.)
func TestPoolCarriesTheRecommendedLabels(t *testing.T) {
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	d, err := PoolDeployment(cfg, key, "ns")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"app.kubernetes.io/name": "klambda-pool", "app.kubernetes.io/component": "pool",
		"app.kubernetes.io/part-of": "klambda", "app.kubernetes.io/managed-by": "klambda-manager"}
	hasAppLabels(t, "pool Deployment", d.Labels, want)
	hasAppLabels(t, "pool pod template", d.Spec.Template.Labels, want)
	noAppLabelsIn(t, "pool Deployment", d.Spec.Selector.MatchLabels)
	// Every recommended label of a generic pod is one a function's pod has too, so that the
	// claim, which sets the version's template labels, leaves none of the pool's.
	fn := functionAppLabels("fn")
	for k := range d.Spec.Template.Labels {
		if _, ok := fn[k]; strings.HasPrefix(k, "app.kubernetes.io/") && !ok {
			t.Errorf("pool pods' label %s is not a function pod's", k)
		}
	}
}

// getWithAppLabels reads obj and checks its recommended labels.
func getWithAppLabels(t *testing.T, obj client.Object, want map[string]string) {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("%T %s: %v", obj, obj.GetName(), err)
	}
	hasAppLabels(t, obj.GetName(), obj.GetLabels(), want)
	if d, ok := obj.(*appsv1.Deployment); ok {
		hasAppLabels(t, d.Name+" pod template", d.Spec.Template.Labels, want)
		noAppLabelsIn(t, d.Name, d.Spec.Selector.MatchLabels)
	}
}
