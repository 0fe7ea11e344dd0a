package async

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestDuplicateAliasDoesNotTakeTheAsyncConfig: a newer Alias with an alias's effective name
// must not supply the events' configuration (its destinations would receive the owner's
// records); the older one owns the name, as in the router and the alias controller.
func TestDuplicateAliasDoesNotTakeTheAsyncConfig(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = lambdav1alpha1.AddToScheme(scheme)
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn"}}
	old := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	owner := &lambdav1alpha1.Alias{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "z-live", CreationTimestamp: old},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "fn", Name: "live", FunctionVersion: "$LATEST",
			EventInvokeConfig: &lambdav1alpha1.EventInvokeConfig{DestinationConfig: &lambdav1alpha1.DestinationConfig{OnSuccess: natsDest("owner.records")}}},
		Status: lambdav1alpha1.AliasStatus{FunctionVersion: "$LATEST"},
	}
	intruder := &lambdav1alpha1.Alias{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a-live", CreationTimestamp: metav1.NewTime(old.Add(time.Hour))},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "fn", Name: "live", FunctionVersion: "$LATEST",
			EventInvokeConfig: &lambdav1alpha1.EventInvokeConfig{DestinationConfig: &lambdav1alpha1.DestinationConfig{OnSuccess: natsDest("intruder.records")}}},
		Status: lambdav1alpha1.AliasStatus{FunctionVersion: "$LATEST"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(fn, owner, intruder).Build()
	src := &KubeConfigSource{Client: c}
	for i := 0; i < 20; i++ {
		cfg, err := src.AsyncConfig(context.Background(), "ns", "fn", "live")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OnSuccess == nil || cfg.OnSuccess.NATS.Subject != "owner.records" {
			t.Fatalf("alias live's records go to %+v, want the older alias's owner.records", cfg.OnSuccess)
		}
	}
}

// TestAsyncAliasFollowsValidatedStatus: the async path takes an alias's version (and so its
// dead-letter config and the executed version it reports) from the validated status, as the
// router does: a spec ahead of it (a version not published yet, or a Version object named by
// functionVersionRef) never decides, and an alias never validated routes nothing.
func TestAsyncAliasFollowsValidatedStatus(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = lambdav1alpha1.AddToScheme(scheme)
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn"}}
	fn.Spec.DeadLetterConfig = &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.latest")}
	v1 := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn-1"},
		Spec:   lambdav1alpha1.VersionSpec{FunctionName: "fn"},
		Status: lambdav1alpha1.VersionStatus{Version: "1", Configuration: &lambdav1alpha1.FunctionConfiguration{DeadLetterConfig: &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.v1")}}}}
	ahead := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "live"},
		Spec:   lambdav1alpha1.AliasSpec{FunctionName: "fn", FunctionVersion: "9"},
		Status: lambdav1alpha1.AliasStatus{FunctionVersion: "1"}}
	byRef := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "canary"},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "fn", FunctionVersionRef: &lambdav1alpha1.VersionReference{Name: "fn-2"}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(fn, v1, ahead, byRef).Build()
	src := &KubeConfigSource{Client: c}
	cfg, err := src.AsyncConfig(context.Background(), "ns", "fn", "live")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != "1" || cfg.DeadLetter == nil || cfg.DeadLetter.Target.NATS.Subject != "dlq.v1" {
		t.Errorf("alias live (spec 9, validated 1): version %q, DLQ %+v; want version 1 and its DLQ", cfg.Version, cfg.DeadLetter)
	}
	if _, err := src.AsyncConfig(context.Background(), "ns", "fn", "canary"); !errors.Is(err, ErrFunctionNotFound) {
		t.Errorf("an alias not validated yet: %v, want ErrFunctionNotFound (not $LATEST's configuration)", err)
	}
}
