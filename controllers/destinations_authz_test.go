package controllers

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestFunctionDestinationNeedsInvokeByTheFunctionsServiceAccount: a function destination is
// invoked by the activator; the Function reports whether its own ServiceAccount may invoke
// it (condition DestinationsAuthorized), and the activator refuses the delivery otherwise.
func TestFunctionDestinationNeedsInvokeByTheFunctionsServiceAccount(t *testing.T) {
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	withDest := func(name, sa string) *lambdav1alpha1.Function {
		f := zipFunction(ns, name, "code")
		f.Spec.ServiceAccountName = sa
		f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{DestinationConfig: &lambdav1alpha1.DestinationConfig{
			OnSuccess: &lambdav1alpha1.Destination{Function: &lambdav1alpha1.FunctionDestination{Name: "audit"}}}}
		return f
	}
	cond := func(name string) *metav1.Condition {
		var c *metav1.Condition
		waitFunction(t, ns, name, func(f *lambdav1alpha1.Function) bool {
			c = meta.FindStatusCondition(f.Status.Conditions, "DestinationsAuthorized")
			return isActive(f) && c != nil && c.ObservedGeneration == f.Generation
		})
		return c
	}

	// The default ServiceAccount may invoke nothing.
	create(t, withDest("src", ""))
	if c := cond("src"); c.Status != metav1.ConditionFalse || c.Reason != "AccessDenied" ||
		!strings.Contains(c.Message, "default") || !strings.Contains(c.Message, "audit") {
		t.Errorf("condition %+v", c)
	}

	// A ServiceAccount allowed to invoke audit.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invoke-audit"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{lambdav1alpha1.GroupVersion.Group}, Resources: []string{"functions"},
			Verbs: []string{"invoke"}, ResourceNames: []string{"audit"}}}}
	create(t, role)
	create(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "invoke-audit"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "invoke-audit"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "auditor"}}})
	create(t, withDest("src2", "auditor"))
	if c := cond("src2"); c.Status != metav1.ConditionTrue {
		t.Errorf("condition %+v", c)
	}
	// The first one switches to that ServiceAccount: authorized.
	updateFunction(t, ns, "src", func(f *lambdav1alpha1.Function) { f.Spec.ServiceAccountName = "auditor" })
	if c := cond("src"); c.Status != metav1.ConditionTrue {
		t.Errorf("after switching ServiceAccount: %+v", c)
	}
	// No function destination: no condition.
	updateFunction(t, ns, "src", func(f *lambdav1alpha1.Function) { f.Spec.EventInvokeConfig = nil })
	waitFunction(t, ns, "src", func(f *lambdav1alpha1.Function) bool {
		return meta.FindStatusCondition(f.Status.Conditions, "DestinationsAuthorized") == nil
	})
}
