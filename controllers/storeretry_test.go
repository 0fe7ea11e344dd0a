package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func TestRetryingStoreHasAGracePerGeneration(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	store := &ResolveError{Reason: lambdav1alpha1.StateReasonInternalError, Message: "code: the code store: 503", Transient: true, Service: true}
	var conds []metav1.Condition

	if ok, msg := retryingStore(&conds, 1, store, t0); !ok || msg == "" {
		t.Fatalf("first store failure: retrying=%v %q; want retrying", ok, msg)
	}
	if ok, _ := retryingStore(&conds, 1, store, t0.Add(storeFailureGrace-time.Second)); !ok {
		t.Fatal("within the grace: want retrying")
	}
	if ok, _ := retryingStore(&conds, 1, store, t0.Add(storeFailureGrace)); ok {
		t.Fatal("after the grace: want failed")
	}
	c := meta.FindStatusCondition(conds, contract.ConditionCodeResolved)
	if c == nil || c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(t0) || c.Reason != string(lambdav1alpha1.StateReasonInternalError) {
		t.Fatalf("CodeResolved = %+v; want False since the first failure", c)
	}
	// A new generation starts its own clock.
	if ok, _ := retryingStore(&conds, 2, store, t0.Add(storeFailureGrace+time.Minute)); !ok {
		t.Fatal("a new generation's first store failure: want retrying")
	}
	// Resolved in between: the next failure starts a new clock.
	setCondition(&conds, 2, contract.ConditionCodeResolved, true, contract.ReasonResolved, "ok")
	if ok, _ := retryingStore(&conds, 2, store, t0.Add(time.Hour)); !ok {
		t.Fatal("a failure after the code was resolved: want retrying")
	}
	// Other failures are not the store's: no grace, and the condition is left to fail().
	other := &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidConfiguration, Message: "download failed", Transient: true}
	if ok, _ := retryingStore(&conds, 2, other, t0.Add(time.Hour)); ok {
		t.Fatal("a failed download is not the code store's: want no grace")
	}
}
