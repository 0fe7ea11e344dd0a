package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// NetworkPolicyConfig is the networkPolicy section of the manager's configuration: the
// NetworkPolicy the manager keeps next to every Function, so that only the activator
// reaches the shim's invoke port (9000) of the function's pods. The shim also checks the
// per-function invoke secret; the policy keeps every other pod of the cluster from even
// opening a connection to it.
type NetworkPolicyConfig struct {
	// Enabled (default true) keeps one NetworkPolicy per Function; false deletes the ones
	// the manager made.
	Enabled *bool `json:"enabled,omitempty"`
	// ActivatorNamespace is the namespace the activator runs in (default klambda-system;
	// the chart sets its release namespace).
	ActivatorNamespace string `json:"activatorNamespace,omitempty"`
	// ActivatorPodLabels select the activator's pods in that namespace (default
	// app.kubernetes.io/name=klambda, app.kubernetes.io/component=activator; the chart sets
	// its own selector labels).
	ActivatorPodLabels map[string]string `json:"activatorPodLabels,omitempty"`
}

// DefaultActivatorNamespace is where the activator runs when the configuration names none.
const DefaultActivatorNamespace = "klambda-system"

// LabelComponentShimIngress is contract.LabelComponent's value on the NetworkPolicy of a function.
const LabelComponentShimIngress = "shim-ingress"

func (n *NetworkPolicyConfig) applyDefaults() {
	if n.Enabled == nil {
		t := true
		n.Enabled = &t
	}
	if n.ActivatorNamespace == "" {
		n.ActivatorNamespace = DefaultActivatorNamespace
	}
	if len(n.ActivatorPodLabels) == 0 {
		n.ActivatorPodLabels = map[string]string{"app.kubernetes.io/name": "klambda", "app.kubernetes.io/component": "activator"}
	}
}

func (n *NetworkPolicyConfig) validate() error {
	if n.ActivatorNamespace != "" {
		if errs := validation.IsDNS1123Label(n.ActivatorNamespace); len(errs) > 0 {
			return fmt.Errorf("networkPolicy.activatorNamespace %q is not a namespace name: %v", n.ActivatorNamespace, errs)
		}
	}
	for k, v := range n.ActivatorPodLabels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("networkPolicy.activatorPodLabels: key %q: %v", k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("networkPolicy.activatorPodLabels[%s]: value %q: %v", k, v, errs)
		}
	}
	return nil
}

// NetworkPolicyName is the name of the NetworkPolicy that guards a function's pods.
func NetworkPolicyName(function string) string { return shortName(function, "shim-ingress") }

// functionNetworkPolicy admits, to every pod of the function (all versions: they share
// contract.LabelFunction), only TCP to the shim's invoke port from the activator's pods. Every
// other ingress to those pods is denied; the kubelet's probes come from the node, which
// NetworkPolicy implementations admit.
func functionNetworkPolicy(fn *lambdav1alpha1.Function, cfg NetworkPolicyConfig) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(contract.ShimPort)
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name: NetworkPolicyName(fn.Name), Namespace: fn.Namespace,
			Labels:      withLabels(functionAppLabels(fn.Name), map[string]string{contract.LabelFunction: contract.FunctionLabelValue(fn.Name), contract.LabelComponent: LabelComponentShimIngress}),
			Annotations: map[string]string{contract.AnnotationFunctionName: fn.Name},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{contract.LabelFunction: contract.FunctionLabelValue(fn.Name)}},
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
}

// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete

// reconcileNetworkPolicy applies the function's NetworkPolicy (owned by the Function, so
// it goes with it), or, when the configuration turns policies off, deletes the one the
// manager made earlier.
func reconcileNetworkPolicy(ctx context.Context, c client.Client, fn *lambdav1alpha1.Function, cfg NetworkPolicyConfig) error {
	np := functionNetworkPolicy(fn, cfg)
	if cfg.Enabled != nil && !*cfg.Enabled {
		var existing networkingv1.NetworkPolicy
		err := c.Get(ctx, client.ObjectKeyFromObject(np), &existing)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if !metav1.IsControlledBy(&existing, fn) {
			return nil // not ours: someone else's policy of that name
		}
		if err := c.Delete(ctx, &existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting NetworkPolicy %s (networkPolicy.enabled is false): %w", np.Name, err)
		}
		return nil
	}
	if err := controllerutil.SetControllerReference(fn, np, c.Scheme()); err != nil {
		return err
	}
	u, err := applyObject(np)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(contract.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying NetworkPolicy %s: %w", np.Name, err)
	}
	return nil
}
