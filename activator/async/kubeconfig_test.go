package async

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func i32(v int32) *int32 { return &v }

func TestKubeConfigSourcePerQualifier(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = lambdav1alpha1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	dlqLatest := &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.latest")}
	dlqV1 := &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.v1")}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn"},
		Spec: lambdav1alpha1.FunctionSpec{
			FunctionConfiguration:        lambdav1alpha1.FunctionConfiguration{DeadLetterConfig: dlqLatest},
			ReservedConcurrentExecutions: i32(5),
			EventInvokeConfig: &lambdav1alpha1.EventInvokeConfig{MaximumRetryAttempts: i32(0), MaximumEventAgeInSeconds: i32(60),
				DestinationConfig: &lambdav1alpha1.DestinationConfig{OnFailure: natsDest("fail.latest")}},
		},
	}
	v1 := &lambdav1alpha1.Version{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn-1"},
		Spec: lambdav1alpha1.VersionSpec{FunctionName: "fn",
			EventInvokeConfig: &lambdav1alpha1.EventInvokeConfig{MaximumRetryAttempts: i32(1)}},
		Status: lambdav1alpha1.VersionStatus{Version: "1", Configuration: &lambdav1alpha1.FunctionConfiguration{DeadLetterConfig: dlqV1}},
	}
	live := &lambdav1alpha1.Alias{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fn-live"},
		Spec:       lambdav1alpha1.AliasSpec{FunctionName: "fn", Name: "live", FunctionVersion: "1"},
		Status:     lambdav1alpha1.AliasStatus{FunctionVersion: "1"},
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sqs"},
		Data: map[string][]byte{"AWS_ACCESS_KEY_ID": []byte("k")}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(fn, v1, live, secret).
		WithStatusSubresource(&lambdav1alpha1.Version{}).Build()
	src := &KubeConfigSource{Client: c}
	ctx := context.Background()

	for _, q := range []string{"", "$LATEST"} {
		got, err := src.AsyncConfig(ctx, "ns", "fn", q)
		if err != nil {
			t.Fatal(err)
		}
		if got.MaximumRetryAttempts != 0 || got.MaximumEventAge != time.Minute || got.OnFailure.NATS.Subject != "fail.latest" ||
			got.Version != "$LATEST" || got.DeadLetter != nil && got.DeadLetter.Target.NATS.Subject != "dlq.latest" || *got.ReservedConcurrency != 5 {
			t.Errorf("qualifier %q: %+v", q, got)
		}
	}
	got, err := src.AsyncConfig(ctx, "ns", "fn", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got.MaximumRetryAttempts != 1 || got.MaximumEventAge != DefaultMaximumEventAge || got.OnFailure != nil ||
		got.DeadLetter.Target.NATS.Subject != "dlq.v1" || *got.ReservedConcurrency != 5 {
		t.Errorf("version 1: %+v", got)
	}
	// An alias without its own configuration gets Lambda's defaults, and the DLQ of the
	// version it points to.
	got, err = src.AsyncConfig(ctx, "ns", "fn", "live")
	if err != nil {
		t.Fatal(err)
	}
	if got.MaximumRetryAttempts != 2 || got.MaximumEventAge != DefaultMaximumEventAge || got.Version != "1" ||
		got.DeadLetter.Target.NATS.Subject != "dlq.v1" {
		t.Errorf("alias live: %+v", got)
	}
	if d, err := src.DeadLetterConfig(ctx, "ns", "fn", "$LATEST"); err != nil || d.Target.NATS.Subject != "dlq.latest" {
		t.Errorf("DLQ of $LATEST: %v %v", d, err)
	}
	for _, q := range []string{"2", "nope"} {
		if _, err := src.AsyncConfig(ctx, "ns", "fn", q); !errors.Is(err, ErrFunctionNotFound) {
			t.Errorf("qualifier %q: %v", q, err)
		}
	}
	if _, err := src.AsyncConfig(ctx, "ns", "gone", ""); !errors.Is(err, ErrFunctionNotFound) {
		t.Errorf("missing function: %v", err)
	}
	if data, err := KubeSecrets(c)(ctx, "ns", "sqs"); err != nil || string(data["AWS_ACCESS_KEY_ID"]) != "k" {
		t.Errorf("secret: %v %v", data, err)
	}
}

func TestRetryDelayAnnotation(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = lambdav1alpha1.AddToScheme(scheme)
	fn := func(name, delays string) *lambdav1alpha1.Function {
		return &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Annotations: map[string]string{contract.AnnotationAsyncRetryDelays: delays}}}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(fn("fast", "1s, 2500ms"), fn("bad", "soon")).Build()
	ctx := context.Background()
	for _, tc := range []struct {
		allowed bool
		fn      string
		want    []time.Duration
	}{
		{false, "fast", nil}, // the operator did not allow it: Lambda's delays
		{true, "fast", []time.Duration{time.Second, 2500 * time.Millisecond}},
		{true, "bad", nil},
	} {
		got, err := (&KubeConfigSource{Client: c, RetryDelayAnnotation: tc.allowed}).AsyncConfig(ctx, "ns", tc.fn, "")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.FunctionErrorDelays) != fmt.Sprint(tc.want) {
			t.Errorf("allowed=%v %s: delays %v, want %v", tc.allowed, tc.fn, got.FunctionErrorDelays, tc.want)
		}
	}
	for _, bad := range []string{"", "1s,2s,3s", "-1s", "2h", "x"} {
		if ds, err := ParseRetryDelays(bad); err == nil {
			t.Errorf("ParseRetryDelays(%q) = %v, want an error", bad, ds)
		}
	}
}
