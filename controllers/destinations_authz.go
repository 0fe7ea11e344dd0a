package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// A function destination (eventInvokeConfig onSuccess/onFailure, a dead-letter target) is
// invoked by the activator, with its own authority. So that a Function author can't use it
// to invoke what they couldn't, the function's ServiceAccount (its execution role:
// spec.serviceAccountName, else default) must hold invoke on the destination function. The
// activator enforces it at delivery (activator/async); the Function reports it here, in
// condition DestinationsAuthorized.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// ReasonAuthorized (condition contract.ConditionDestinationsAuthorized, absent when the
// function names no destination): its ServiceAccount may invoke every destination function;
// contract.ReasonAccessDenied: it may not, and those deliveries are refused.
const ReasonAuthorized = "Authorized"

// ServiceAccountOf is the ServiceAccount a function configuration runs as.
func ServiceAccountOf(c *lambdav1alpha1.FunctionConfiguration) string {
	if c != nil && c.ServiceAccountName != "" {
		return c.ServiceAccountName
	}
	return "default"
}

// destinationFunctions lists the functions a Function's $LATEST destinations invoke.
func destinationFunctions(fn *lambdav1alpha1.Function) []string {
	set := map[string]bool{}
	add := func(d *lambdav1alpha1.Destination) {
		if d != nil && d.Function != nil {
			set[d.Function.Name] = true
		}
	}
	if c := fn.Spec.EventInvokeConfig; c != nil && c.DestinationConfig != nil {
		add(c.DestinationConfig.OnSuccess)
		add(c.DestinationConfig.OnFailure)
	}
	if d := fn.Spec.DeadLetterConfig; d != nil {
		add(&d.Target)
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// checkDestinations sets or removes condition DestinationsAuthorized; it answers whether
// some destination is refused (the caller checks again later: RBAC changes aren't watched).
func (r *FunctionReconciler) checkDestinations(ctx context.Context, fn *lambdav1alpha1.Function) (bool, error) {
	targets := destinationFunctions(fn)
	if len(targets) == 0 {
		meta.RemoveStatusCondition(&fn.Status.Conditions, contract.ConditionDestinationsAuthorized)
		return false, nil
	}
	sa := ServiceAccountOf(&fn.Spec.FunctionConfiguration)
	var denied []string
	for _, t := range targets {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + fn.Namespace + ":" + sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + fn.Namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: fn.Namespace, Verb: "invoke",
				Group: lambdav1alpha1.GroupVersion.Group, Resource: "functions", Name: t},
		}}
		if err := r.Create(ctx, sar); err != nil {
			return false, fmt.Errorf("checking whether ServiceAccount %s may invoke destination %s: %w", sa, t, err)
		}
		if !sar.Status.Allowed {
			denied = append(denied, t)
		}
	}
	if len(denied) > 0 {
		setCondition(&fn.Status.Conditions, fn.Generation, contract.ConditionDestinationsAuthorized, false, contract.ReasonAccessDenied,
			fmt.Sprintf("ServiceAccount %s may not invoke destination function(s) %s: deliveries to them are refused; grant it verb invoke on functions.lambda.klambda.dev (a Role and RoleBinding)",
				sa, strings.Join(denied, ", ")))
		return true, nil
	}
	setCondition(&fn.Status.Conditions, fn.Generation, contract.ConditionDestinationsAuthorized, true, ReasonAuthorized,
		fmt.Sprintf("ServiceAccount %s may invoke every destination function", sa))
	return false, nil
}
