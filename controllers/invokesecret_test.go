package controllers

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// A Secret named <fn>-invoke that exists before the Function (anyone who may create
// Secrets in the namespace could have made it, and knows its token) is not adopted: the
// Function fails with a clear reason, gets no Deployment, and the Secret is left as it was.
func TestForeignInvokeSecretIsNotUsed(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: InvokeSecretName("squat"), Namespace: ns},
		Data: map[string][]byte{contract.InvokeSecretKey: []byte("known-to-the-tenant")}}
	create(t, foreign)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))
	create(t, zipFunction(ns, "squat", "code"))
	fn := waitFunction(t, ns, "squat", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if fn.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidConfiguration || !strings.Contains(fn.Status.StateReason, "not controlled by this Function") {
		t.Errorf("status %s: %s", fn.Status.StateReasonCode, fn.Status.StateReason)
	}
	if c := meta.FindStatusCondition(fn.Status.Conditions, contract.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(lambdav1alpha1.StateReasonInvalidConfiguration) {
		t.Errorf("Ready condition %+v", c)
	}
	var dep appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: WorkloadName("squat", contract.Latest)}, &dep); err == nil {
		t.Error("the function got a Deployment that would run with the foreign token")
	}
	var sec corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(foreign), &sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.OwnerReferences) != 0 || string(sec.Data[contract.InvokeSecretKey]) != "known-to-the-tenant" {
		t.Errorf("the foreign Secret was changed: owners %v", sec.OwnerReferences)
	}
	// A function whose Secret klambda made is unaffected (and its Secret is the Function's).
	create(t, zipFunction(ns, "own", "code"))
	own := waitFunction(t, ns, "own", isActive)
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: InvokeSecretName("own")}, &sec); err != nil || !metav1.IsControlledBy(&sec, own) {
		t.Errorf("own Secret %v %v", sec.OwnerReferences, err)
	}
}
