package async

import (
	"context"
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
	}
	intruder := &lambdav1alpha1.Alias{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a-live", CreationTimestamp: metav1.NewTime(old.Add(time.Hour))},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "fn", Name: "live", FunctionVersion: "$LATEST",
			EventInvokeConfig: &lambdav1alpha1.EventInvokeConfig{DestinationConfig: &lambdav1alpha1.DestinationConfig{OnSuccess: natsDest("intruder.records")}}},
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
