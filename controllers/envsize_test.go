package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func TestJSONStringLen(t *testing.T) {
	for s, want := range map[string]int{"": 2, "my-bucket": 11, `a"b`: 6, "a\nb\\": 8, "\x01": 8, "é": 4} {
		if got := jsonStringLen(s); got != want {
			t.Errorf("jsonStringLen(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestEnvironmentFromSecretsCountsTowardTheLimit: values from Secrets count toward Lambda's
// 4 KB environment limit (the schema counts only literal values): a function over it is
// Failed with Lambda's message (never the values), a failed update keeps the previous
// configuration; a Secret not there yet is waited for.
func TestEnvironmentFromSecretsCountsTowardTheLimit(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	fn := zipFunction(ns, "envf", "code")
	fn.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "FROM_SECRET", ValueFrom: &lambdav1alpha1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "vals"}, Key: "v"}}},
	}}
	create(t, fn)
	waitFunction(t, ns, "envf", func(f *lambdav1alpha1.Function) bool {
		return f.Status.State == lambdav1alpha1.StatePending && strings.Contains(f.Status.StateReason, "waiting for Secret vals")
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vals"}, Data: map[string][]byte{"v": []byte(strings.Repeat("s", 100))}}
	create(t, secret)
	// The waiting function retries (retryResolve, 30 s): no Secret watch is needed.
	deadline := time.Now().Add(2*retryResolve + 10*time.Second)
	for f := getFunction(t, ns, "envf"); !isActive(f); f = getFunction(t, ns, "envf") {
		if time.Now().After(deadline) {
			t.Fatalf("the function did not become Active once its Secret came: %+v", f.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// {"PLAIN":"x","FROM_SECRET":"<4067 bytes>"} is 4097 bytes: one over.
	secret.Data["v"] = []byte(strings.Repeat("s", 4067))
	if err := k8s.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	updateFunction(t, ns, "envf", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	got := waitFunction(t, ns, "envf", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed
	})
	if msg := got.Status.LastUpdateStatusReason; !strings.Contains(msg, "exceeded the 4KB limit") || !strings.Contains(msg, "4097 bytes") ||
		!strings.Contains(msg, "FROM_SECRET") || strings.Contains(msg, "sss") || got.Status.State != lambdav1alpha1.StateActive {
		t.Errorf("an update over 4 KB: state %s, lastUpdateStatusReason %q", got.Status.State, msg)
	}
	// One byte less fits.
	secret.Data["v"] = []byte(strings.Repeat("s", 4066))
	if err := k8s.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	updateFunction(t, ns, "envf", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 257 })
	waitFunction(t, ns, "envf", isActive)

	// A new function over the limit fails.
	big := zipFunction(ns, "envbig", "code")
	big.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "FROM_SECRET", ValueFrom: &lambdav1alpha1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "vals2"}, Key: "v"}}},
	}}
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vals2"}, Data: map[string][]byte{"v": []byte(strings.Repeat("s", 5000))}})
	create(t, big)
	got = waitFunction(t, ns, "envbig", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if got.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidConfiguration || !strings.Contains(got.Status.StateReason, "exceeded the 4KB limit") {
		t.Errorf("a new function over 4 KB: %s %q", got.Status.StateReasonCode, got.Status.StateReason)
	}
}
