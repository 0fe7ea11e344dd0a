package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestDuplicateAliasIsRefused: a second Alias whose effective name (spec.name, or
// metadata.name) is already taken for the function is Ready=False, reason DuplicateAlias,
// and names the alias that owns the name; the owner stays Ready. When the owner goes, the
// other one takes the name.
func TestDuplicateAliasIsRefused(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "dup", "code"))
	waitFunction(t, ns, "dup", isActive)

	owner := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "dup-prod", Namespace: ns},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "dup", Name: "prod", FunctionVersion: "$LATEST"}}
	create(t, owner)
	ready := func(name string, ok func(*metav1.Condition) bool) *lambdav1alpha1.Alias {
		t.Helper()
		var a lambdav1alpha1.Alias
		eventually(t, "alias "+name, func() string {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &a); err != nil {
				return err.Error()
			}
			c := meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady)
			if c != nil && c.ObservedGeneration == a.Generation && ok(c) {
				return ""
			}
			return fmt.Sprintf("%+v", a.Status.Conditions)
		})
		return &a
	}
	isTrue := func(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue }
	ready("dup-prod", isTrue)

	// metadata.name "prod", no spec.name: the same effective name.
	intruder := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: ns},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "dup", FunctionVersion: "$LATEST"}}
	create(t, intruder)
	a := ready("prod", func(c *metav1.Condition) bool {
		return c.Status == metav1.ConditionFalse && c.Reason == "DuplicateAlias"
	})
	if c := meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady); !strings.Contains(c.Message, "dup-prod") {
		t.Errorf("the duplicate's message must name the alias that owns the name: %q", c.Message)
	}
	if a.Status.FunctionVersion != "" {
		t.Errorf("a duplicate reports routing %q; it routes nothing", a.Status.FunctionVersion)
	}
	ready("dup-prod", isTrue)

	// An alias of another function may use the name.
	create(t, zipFunction(ns, "other", "code"))
	waitFunction(t, ns, "other", isActive)
	create(t, &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "other-prod", Namespace: ns},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "other", Name: "prod", FunctionVersion: "$LATEST"}})
	ready("other-prod", isTrue)

	// The owner goes: the remaining alias takes the name.
	if err := k8s.Delete(ctx, owner); err != nil {
		t.Fatal(err)
	}
	ready("prod", isTrue)
}
