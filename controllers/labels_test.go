package controllers

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/pool"
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

// A generic pod a function's version claims (activator/pool Claim, under the activator's
// pod policy, which lets a claim change labels) ends with the recommended labels of the
// version's own pods: every recommended label of a pool pod is one the claim overwrites.
func TestAClaimedPoolPodCarriesTheFunctionsRecommendedLabels(t *testing.T) {
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	d, err := PoolDeployment(cfg, key, "ns")
	if err != nil {
		t.Fatal(err)
	}
	poolWant := map[string]string{"app.kubernetes.io/name": "klambda-pool", "app.kubernetes.io/component": "pool",
		"app.kubernetes.io/part-of": "klambda", "app.kubernetes.io/managed-by": "klambda-manager"}
	hasAppLabels(t, "pool Deployment", d.Labels, poolWant)
	hasAppLabels(t, "pool pod template", d.Spec.Template.Labels, poolWant)
	noAppLabelsIn(t, "pool Deployment", d.Spec.Selector.MatchLabels)

	w := urlWorkload()
	dep, err := w.Deployment(cfg, "ns")
	if err != nil {
		t.Fatal(err)
	}
	asRevision(dep, dep.Name, "r1", 30)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "generic", Namespace: "ns", ResourceVersion: "1",
		Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations}}
	claimed, err := pool.Claim(context.Background(), fake.NewClientset(pod), pod, dep, &contract.SpecializationTemplate{Pool: key, InvokeSecretName: w.InvokeSecret})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range claimed.Labels {
		if strings.HasPrefix(k, "app.kubernetes.io/") && dep.Spec.Template.Labels[k] != v {
			t.Errorf("claimed pod: label %s=%q, the version's pods have %q", k, v, dep.Spec.Template.Labels[k])
		}
	}
	hasAppLabels(t, "claimed pod", claimed.Labels, functionAppLabels(w.Function))
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
