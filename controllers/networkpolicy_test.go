package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/klambda/klambda/api/contract"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// policiesSelecting lists the namespace's NetworkPolicies that select pods with podLabels.
func policiesSelecting(t *testing.T, ns string, podLabels map[string]string) []networkingv1.NetworkPolicy {
	t.Helper()
	var list networkingv1.NetworkPolicyList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []networkingv1.NetworkPolicy
	for _, np := range list.Items {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labels.Set(podLabels)) {
			out = append(out, np)
		}
	}
	return out
}

// onlyActivatorReachesShim says what is wrong with np as the guard of a function's pods:
// ingress only, one rule, TCP 9000, from the activator's pods in the activator namespace.
func onlyActivatorReachesShim(np *networkingv1.NetworkPolicy, activatorNS string, activatorLabels map[string]string) string {
	s := np.Spec
	if len(s.PolicyTypes) != 1 || s.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		return fmt.Sprintf("policyTypes %v, want [Ingress]", s.PolicyTypes)
	}
	if len(s.Ingress) != 1 {
		return fmt.Sprintf("%d ingress rules, want 1", len(s.Ingress))
	}
	r := s.Ingress[0]
	if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.IntValue() != 9000 || r.Ports[0].Protocol == nil || *r.Ports[0].Protocol != corev1.ProtocolTCP || r.Ports[0].EndPort != nil {
		return fmt.Sprintf("ports %+v, want TCP 9000 only", r.Ports)
	}
	if len(r.From) != 1 {
		return fmt.Sprintf("%d peers, want 1 (the activator)", len(r.From))
	}
	p := r.From[0]
	if p.IPBlock != nil || p.NamespaceSelector == nil || p.PodSelector == nil ||
		len(p.NamespaceSelector.MatchExpressions) != 0 || len(p.PodSelector.MatchExpressions) != 0 ||
		len(p.NamespaceSelector.MatchLabels) != 1 || p.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != activatorNS ||
		!labels.Equals(p.PodSelector.MatchLabels, activatorLabels) {
		return fmt.Sprintf("peer %+v, want pods %v of namespace %s", p, activatorLabels, activatorNS)
	}
	return ""
}

// The manager keeps a NetworkPolicy next to every Function: only the activator's pods
// reach the invoke port of the function's pods (every version's), nothing else reaches
// them; a tenant's edit of it is undone, and it goes with the Function.
func TestFunctionPodsAdmitOnlyTheActivator(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755}))
	long := "a-function-name-of-sixty-four-characters-which-labels-must-hash1"
	for _, name := range []string{"hello", long} {
		create(t, zipFunction(ns, name, "code"))
	}
	activatorLabels := map[string]string{"app.kubernetes.io/name": "klambda", "app.kubernetes.io/component": "activator"}
	for _, name := range []string{"hello", long} {
		fn := waitFunction(t, ns, name, isActive)
		pod := getDeployment(t, ns, WorkloadName(name, contract.Latest)).Spec.Template.Labels
		var nps []networkingv1.NetworkPolicy
		eventually(t, "NetworkPolicy of "+name, func() string {
			if nps = policiesSelecting(t, ns, pod); len(nps) != 1 {
				return fmt.Sprintf("%d NetworkPolicies select the pods %v, want 1", len(nps), pod)
			}
			return ""
		})
		np := &nps[0]
		if msg := onlyActivatorReachesShim(np, "klambda-system", activatorLabels); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
		if !metav1.IsControlledBy(np, fn) {
			t.Errorf("%s: NetworkPolicy %s is not controlled by the Function: %v", name, np.Name, np.OwnerReferences)
		}
		// A published version's pods carry the same function label.
		if v := selectorLabels(name, "3"); len(policiesSelecting(t, ns, v)) != 1 {
			t.Errorf("%s: version 3's pods %v are not selected", name, v)
		}
	}
	// Another function's pods are not this one's business.
	if n := len(policiesSelecting(t, ns, map[string]string{contract.LabelFunction: "other"})); n != 0 {
		t.Errorf("%d policies select another function's pods", n)
	}

	// Someone opens the policy to every pod: the manager puts it back.
	np := policiesSelecting(t, ns, selectorLabels("hello", contract.Latest))[0]
	updateObject(t, &np, func(p *networkingv1.NetworkPolicy) {
		p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	})
	eventually(t, "the opened policy restored", func() string {
		var got networkingv1.NetworkPolicy
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&np), &got); err != nil {
			return err.Error()
		}
		return onlyActivatorReachesShim(&got, "klambda-system", activatorLabels)
	})
	// Deleted: made again.
	if err := k8s.Delete(ctx, &np); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted policy made again", func() string {
		var got networkingv1.NetworkPolicy
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&np), &got); err != nil {
			return err.Error()
		}
		if got.UID == np.UID {
			return "not deleted yet"
		}
		return onlyActivatorReachesShim(&got, "klambda-system", activatorLabels)
	})
}

// networkPolicy.enabled: false removes the policies the manager made, and only those;
// the activator's namespace and labels come from the configuration. (A Function the
// running manager does not know, so that only these calls touch its policy.)
func TestNetworkPolicyFollowsTheConfiguration(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	fn := zipFunction(ns, "ghost", "code")
	fn.UID = types.UID("5b0f3c8e-1111-4222-8333-944455556666")

	cfg, err := ParseConfig([]byte("networkPolicy:\n  activatorNamespace: platform\n  activatorPodLabels: {app: my-activator}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reconcileNetworkPolicy(ctx, k8s, fn, cfg.NetworkPolicy); err != nil {
		t.Fatal(err)
	}
	var got networkingv1.NetworkPolicy
	key := client.ObjectKey{Namespace: ns, Name: NetworkPolicyName("ghost")}
	if err := k8s.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	if msg := onlyActivatorReachesShim(&got, "platform", map[string]string{"app": "my-activator"}); msg != "" {
		t.Error(msg)
	}
	if !metav1.IsControlledBy(&got, fn) {
		t.Errorf("not controlled by the Function: %v", got.OwnerReferences)
	}

	off, err := ParseConfig([]byte("networkPolicy: {enabled: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reconcileNetworkPolicy(ctx, k8s, fn, off.NetworkPolicy); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, key, &got); !apierrors.IsNotFound(err) {
		t.Fatalf("networkPolicy.enabled=false left the policy: %v", err)
	}
	// Nothing to delete: fine.
	if err := reconcileNetworkPolicy(ctx, k8s, fn, off.NetworkPolicy); err != nil {
		t.Fatal(err)
	}
	// A policy of that name the manager did not make stays.
	create(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}})
	if err := reconcileNetworkPolicy(ctx, k8s, fn, off.NetworkPolicy); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, key, &got); err != nil {
		t.Errorf("a policy the manager did not make was deleted: %v", err)
	}
}

func TestParseConfigNetworkPolicy(t *testing.T) {
	d := DefaultConfig().NetworkPolicy
	if !*d.Enabled || d.ActivatorNamespace != "klambda-system" || d.ActivatorPodLabels["app.kubernetes.io/component"] != "activator" {
		t.Errorf("defaults %+v", d)
	}
	for in, want := range map[string]string{
		"networkPolicy: {activatorNamespace: Not_A_Namespace}\n":     "activatorNamespace",
		"networkPolicy: {activatorPodLabels: {'bad key!': x}}\n":     "activatorPodLabels",
		"networkPolicy: {activatorPodLabels: {app: 'bad value!'}}\n": "activatorPodLabels",
		"networkPolicy: {enable: true}\n":                            "enable",
	} {
		if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one naming %s", in, err, want)
		}
	}
}
