package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func newVersion(ns, name, fn string) *lambdav1alpha1.Version {
	return &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: lambdav1alpha1.VersionSpec{FunctionName: fn}}
}

func waitVersion(t *testing.T, ns, name string, ok func(*lambdav1alpha1.Version) bool) *lambdav1alpha1.Version {
	t.Helper()
	var v lambdav1alpha1.Version
	eventually(t, "Version "+name, func() string {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &v); err != nil {
			return err.Error()
		}
		if ok(&v) {
			return ""
		}
		return fmt.Sprintf("status %+v", v.Status)
	})
	return &v
}

func published(v *lambdav1alpha1.Version) bool {
	return meta.IsStatusConditionTrue(v.Status.Conditions, contract.ConditionPublished) && v.Status.State == lambdav1alpha1.StateActive
}

func publishedReason(v *lambdav1alpha1.Version) string {
	if c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished); c != nil {
		return c.Reason
	}
	return ""
}

func TestVersionPublishRules(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "pub", "code"))
	fn := waitFunction(t, ns, "pub", isActive)

	v1 := newVersion(ns, "pub-1", "pub")
	v1.Spec.Description = "first"
	v1.Spec.CodeSha256 = fn.Status.CodeSha256
	v1.Spec.RevisionID = fn.Status.RevisionID
	create(t, v1)
	got := waitVersion(t, ns, "pub-1", published)
	if got.Status.Version != "1" || publishedReason(got) != contract.ReasonPublished || got.Status.CodeSha256 != fn.Status.CodeSha256 ||
		got.Status.Configuration.Description != "first" || got.Status.Configuration.Runtime != "provided.al2023" ||
		got.Status.FunctionARN != "arn:aws:lambda:us-east-1:000000000000:function:pub:1" || got.Labels[contract.LabelVersion] != "1" {
		t.Errorf("version 1: %+v labels %v", got.Status, got.Labels)
	}
	if !metav1.IsControlledBy(got, fn) || !contains(got.Finalizers, versionFinalizer) {
		t.Errorf("owner/finalizer: %v %v", got.OwnerReferences, got.Finalizers)
	}
	dep := getDeployment(t, ns, "pub-v1")
	if !metav1.IsControlledBy(dep, got) || dep.Labels[contract.LabelVersion] != "1" || *dep.Spec.Replicas != 0 {
		t.Errorf("version Deployment: %v %v", dep.OwnerReferences, dep.Labels)
	}
	if e := envOf(dep.Spec.Template.Spec.Containers[0]); e["AWS_LAMBDA_FUNCTION_VERSION"].Value != "1" {
		t.Errorf("version env %+v", e["AWS_LAMBDA_FUNCTION_VERSION"])
	}
	if f := getFunction(t, ns, "pub"); f.Status.NextVersionNumber != 2 || f.Status.LastPublishedVersion != "1" {
		t.Errorf("counter: %d %s", f.Status.NextVersionNumber, f.Status.LastPublishedVersion)
	}

	// Nothing changed: the existing version.
	create(t, newVersion(ns, "pub-again", "pub"))
	same := waitVersion(t, ns, "pub-again", func(v *lambdav1alpha1.Version) bool { return v.Status.Version != "" })
	if same.Status.Version != "1" || publishedReason(same) != contract.ReasonUnchanged {
		t.Errorf("no-op publish: %s %s", same.Status.Version, publishedReason(same))
	}

	// Preconditions.
	bad := newVersion(ns, "pub-badsha", "pub")
	bad.Spec.CodeSha256 = strings.Repeat("A", 43) + "="
	create(t, bad)
	badRev := newVersion(ns, "pub-badrev", "pub")
	badRev.Spec.RevisionID = "not-the-revision"
	create(t, badRev)
	for _, n := range []string{"pub-badsha", "pub-badrev"} {
		v := waitVersion(t, ns, n, func(v *lambdav1alpha1.Version) bool { return publishedReason(v) == contract.ReasonPreconditionFailed })
		if v.Status.Version != "" || v.Status.State != lambdav1alpha1.StateFailed {
			t.Errorf("%s: %+v", n, v.Status)
		}
	}

	// A change, then version 2; delete it; the next is 3, never 2 again.
	updateFunction(t, ns, "pub", func(f *lambdav1alpha1.Function) { f.Spec.Timeout = 7 })
	waitFunction(t, ns, "pub", isActive)
	create(t, newVersion(ns, "pub-2", "pub"))
	if v := waitVersion(t, ns, "pub-2", published); v.Status.Version != "2" || v.Status.Configuration.Timeout != 7 {
		t.Errorf("version 2: %+v", v.Status)
	}
	if err := k8s.Delete(ctx, newVersion(ns, "pub-2", "pub")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pub-2 deleted", func() string {
		var v lambdav1alpha1.Version
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pub-2"}, &v); err != nil {
			return ""
		}
		return "still there"
	})
	updateFunction(t, ns, "pub", func(f *lambdav1alpha1.Function) { f.Spec.Timeout = 8 })
	waitFunction(t, ns, "pub", isActive)
	create(t, newVersion(ns, "pub-3", "pub"))
	if v := waitVersion(t, ns, "pub-3", published); v.Status.Version != "3" {
		t.Errorf("after deleting 2, the next version is %s, want 3", v.Status.Version)
	}
	// Version 1 still runs its frozen configuration.
	if e := envOf(getDeployment(t, ns, "pub-v1").Spec.Template.Spec.InitContainers[1]); e["AWS_LAMBDA_FUNCTION_TIMEOUT"].Value != "3" {
		t.Errorf("version 1 changed: %v", e["AWS_LAMBDA_FUNCTION_TIMEOUT"])
	}
}

// Two publishers reading the same Function: the second one's stale status update conflicts,
// so it takes no number and retries.
func TestVersionNumbersUseOptimisticConcurrency(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "race", "code"))
	stale := waitFunction(t, ns, "race", isActive)
	// Someone else takes number 1 first.
	fresh := stale.DeepCopy()
	fresh.Status.NextVersionNumber, fresh.Status.LastPublishedVersion = 2, "1"
	if err := k8s.Status().Update(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	r := &VersionReconciler{Client: k8s, APIReader: k8s, Recorder: nopRecorder{}, Config: testCfg}
	v := newVersion(ns, "race-x", "race")
	v.UID = "x"
	res, err := r.publish(ctx, v, stale)
	if err != nil || res.RequeueAfter == 0 || v.Status.Version != "" {
		t.Fatalf("publish with a stale Function: %v %+v %q", err, res, v.Status.Version)
	}
	if !meta.IsStatusConditionTrue(v.Status.Conditions, contract.ConditionReconciling) {
		t.Errorf("a publish that lost the race for a number is Reconciling: %+v", v.Status.Conditions)
	}
	if f := getFunction(t, ns, "race"); f.Status.NextVersionNumber != 2 {
		t.Errorf("counter %d", f.Status.NextVersionNumber)
	}
}

type nopRecorder struct{}

func (nopRecorder) Eventf(_, _ runtime.Object, _, _, _, _ string, _ ...any) {}

func TestAliasValidationAndVersionDeletionGuard(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "al", "code"))
	waitFunction(t, ns, "al", isActive)
	create(t, newVersion(ns, "al-1", "al"))
	waitVersion(t, ns, "al-1", published)

	alias := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: ns}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: "al", FunctionVersion: "1",
		RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.25}},
	}}
	create(t, alias)
	waitAlias := func(ok func(*lambdav1alpha1.Alias) bool) *lambdav1alpha1.Alias {
		var a lambdav1alpha1.Alias
		eventually(t, "alias", func() string {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prod"}, &a); err != nil {
				return err.Error()
			}
			if ok(&a) {
				return ""
			}
			return fmt.Sprintf("%+v", a.Status)
		})
		return &a
	}
	a := waitAlias(func(a *lambdav1alpha1.Alias) bool {
		c := meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady)
		return c != nil && c.Reason == contract.ReasonVersionNotFound
	})
	if !strings.Contains(meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady).Message, "version 2") {
		t.Errorf("alias message: %+v", a.Status.Conditions)
	}
	// Publishing version 2 makes the alias valid (it watches Versions).
	updateFunction(t, ns, "al", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 512 })
	waitFunction(t, ns, "al", isActive)
	create(t, newVersion(ns, "al-2", "al"))
	waitVersion(t, ns, "al-2", published)
	a = waitAlias(func(a *lambdav1alpha1.Alias) bool {
		return meta.IsStatusConditionTrue(a.Status.Conditions, contract.ConditionReady)
	})
	if a.Status.FunctionVersion != "1" || a.Status.AdditionalVersionWeights["2"] != 0.25 || a.Status.Name != "prod" ||
		a.Status.AliasARN != "arn:aws:lambda:us-east-1:000000000000:function:al:prod" || a.Status.RevisionID == "" {
		t.Errorf("alias status %+v", a.Status)
	}
	if !metav1.IsControlledBy(a, getFunction(t, ns, "al")) {
		t.Errorf("alias owner %v", a.OwnerReferences)
	}

	// Version 1 is referenced: deleting it waits, and says why.
	if err := k8s.Delete(ctx, newVersion(ns, "al-1", "al")); err != nil {
		t.Fatal(err)
	}
	v := waitVersion(t, ns, "al-1", func(v *lambdav1alpha1.Version) bool {
		return meta.IsStatusConditionTrue(v.Status.Conditions, contract.ConditionDeletionBlocked)
	})
	if c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionDeletionBlocked); c.Reason != contract.ReasonReferencedByAlias || !strings.Contains(c.Message, "prod") {
		t.Errorf("blocked condition %+v", c)
	}
	// The alias moves to version 2 only: version 1 goes.
	updateObject(t, a, func(a *lambdav1alpha1.Alias) { a.Spec.FunctionVersion, a.Spec.RoutingConfig = "2", nil })
	eventually(t, "al-1 deleted", func() string {
		var v lambdav1alpha1.Version
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "al-1"}, &v); err != nil {
			return ""
		}
		return "still there"
	})
	// An alias to a version that doesn't exist.
	a = waitAlias(func(a *lambdav1alpha1.Alias) bool { return a.Status.FunctionVersion == "2" })
	updateObject(t, a, func(a *lambdav1alpha1.Alias) { a.Spec.FunctionVersion = "1" })
	a = waitAlias(func(a *lambdav1alpha1.Alias) bool {
		c := meta.FindStatusCondition(a.Status.Conditions, contract.ConditionReady)
		return c != nil && c.Reason == contract.ReasonVersionNotFound && c.ObservedGeneration == a.Generation
	})
	if a.Status.FunctionVersion != "2" {
		t.Errorf("an invalid alias must keep its last valid routing, got %s", a.Status.FunctionVersion)
	}
}
