package controllers

import (
	"context"
	"fmt"
	"sort"
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

// latestRevisions lists the $LATEST Deployments of function fn, by name.
func latestRevisions(t *testing.T, ns, fn string) map[string]*appsv1.Deployment {
	t.Helper()
	var list appsv1.DeploymentList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels(selectorLabels(fn, contract.Latest))); err != nil {
		t.Fatal(err)
	}
	out := map[string]*appsv1.Deployment{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

func names(m map[string]*appsv1.Deployment) string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

// revisionWith waits for the one $LATEST Deployment of fn whose template satisfies tpl.
func revisionWith(t *testing.T, ns, fn string, tpl func(*appsv1.Deployment) bool) *appsv1.Deployment {
	t.Helper()
	var found *appsv1.Deployment
	eventually(t, "a revision of "+fn+" with the template", func() string {
		found = nil
		for _, d := range latestRevisions(t, ns, fn) {
			if tpl(d) {
				if found != nil {
					return "two revisions with that template: " + found.Name + ", " + d.Name
				}
				found = d
			}
		}
		if found == nil {
			return "none among " + names(latestRevisions(t, ns, fn))
		}
		return ""
	})
	return found
}

// servingDeployment is the Deployment the Function's status says serves.
func servingDeployment(t *testing.T, ns, fn string) string {
	t.Helper()
	return getFunction(t, ns, fn).Status.ServingDeployment
}

// An update runs the new code in a new revision's Deployment beside the serving one (with
// as many replicas); invocations switch when the new revision's first environment is
// ready; the old revision is removed after draining. A failed update keeps the old
// revision serving, Failed and Stalled; a later update while the serving revision runs no
// environment switches at once.
func TestUpdateRunsNewRevisionBesideTheOld(t *testing.T) {
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "rev", "code"))
	fn := waitFunction(t, ns, "rev", isActive)
	first := getDeployment(t, ns, "rev-latest")
	if fn.Status.ServingDeployment != "rev-latest" || fn.Status.ServingSince == nil {
		t.Fatalf("a new function serves from its first Deployment: %q %v", fn.Status.ServingDeployment, fn.Status.ServingSince)
	}
	rev1 := first.Labels[contract.LabelRevision]
	if rev1 == "" || first.Spec.Selector.MatchLabels[contract.LabelRevision] != rev1 || first.Spec.Template.Labels[contract.LabelRevision] != rev1 {
		t.Fatalf("revision label missing from the Deployment, its selector or its pods: %v %v %v", first.Labels, first.Spec.Selector, first.Spec.Template.Labels)
	}
	if first.Spec.ProgressDeadlineSeconds == nil || *first.Spec.ProgressDeadlineSeconds != revisionProgressDeadline {
		t.Errorf("progressDeadlineSeconds = %v", first.Spec.ProgressDeadlineSeconds)
	}
	activatorScales(t, ns, "rev-latest", 2)
	deploymentReports(t, ns, "rev-latest", memoryIs(128), rolledOut(2))

	// The update: a second Deployment, born with the serving one's 2 replicas; the first
	// is untouched and still serves.
	updateFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	waitFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateInProgress
	})
	second := revisionWith(t, ns, "rev", memoryIs(256))
	if second.Name == "rev-latest" || second.Labels[contract.LabelRevision] == rev1 {
		t.Fatalf("the update changed the serving Deployment instead of adding a revision: %s", second.Name)
	}
	if second.Spec.Replicas == nil || *second.Spec.Replicas != 2 {
		t.Errorf("new revision born with %v replicas, want the serving revision's 2", second.Spec.Replicas)
	}
	if got := getDeployment(t, ns, "rev-latest"); !memoryIs(128)(got) || *got.Spec.Replicas != 2 {
		t.Errorf("the serving revision was changed during the update")
	}
	fn = getFunction(t, ns, "rev")
	if fn.Status.ServingDeployment != "rev-latest" || meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionReady) {
		t.Errorf("before the new revision's first environment is ready: serving %s, conditions %+v", fn.Status.ServingDeployment, fn.Status.Conditions)
	}

	// Its first environment is ready: the switch. Successful and Ready; the old revision
	// is deleted once drained (timeout 3 s + 5 s).
	oneReady := appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1}
	deploymentReports(t, ns, second.Name, memoryIs(256), oneReady)
	fn = waitFunction(t, ns, "rev", isActive)
	if fn.Status.ServingDeployment != second.Name || !meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionReady) {
		t.Fatalf("after the switch: serving %s, conditions %+v", fn.Status.ServingDeployment, fn.Status.Conditions)
	}
	if _, ok := latestRevisions(t, ns, "rev")["rev-latest"]; !ok {
		t.Errorf("the old revision was removed at the switch, before its invocations could drain")
	}
	// An update whose code can't be resolved makes no revision; the second keeps serving,
	// and the first still goes once drained.
	updateFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "gone" })
	fn = waitFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed
	})
	if fn.Status.ServingDeployment != second.Name || !meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionStalled) {
		t.Fatalf("a failed resolution: %+v", fn.Status)
	}
	eventually(t, "the old revision removed after draining", func() string {
		if got := names(latestRevisions(t, ns, "rev")); got != second.Name {
			return got
		}
		return ""
	})
	// Back to the serving revision's spec: nothing new to run, Successful at once.
	updateFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "code" })
	if fn = waitFunction(t, ns, "rev", isActive); fn.Status.ServingDeployment != second.Name {
		t.Fatalf("serving %s, want %s", fn.Status.ServingDeployment, second.Name)
	}

	// A failed update: the new revision makes no progress. The second keeps serving.
	updateFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 512 })
	third := revisionWith(t, ns, "rev", memoryIs(512))
	stuck := appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, Conditions: []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: fmt.Sprintf(`ReplicaSet %q has timed out progressing.`, third.Name+"-abc")}}}
	deploymentReports(t, ns, third.Name, memoryIs(512), stuck)
	fn = waitFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed
	})
	if fn.Status.ServingDeployment != second.Name || fn.Status.State != lambdav1alpha1.StateActive ||
		!meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionStalled) ||
		meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionReady) ||
		!strings.Contains(fn.Status.LastUpdateStatusReason, "previous code keeps serving") {
		t.Fatalf("a failed update: %+v", fn.Status)
	}
	if got := getDeployment(t, ns, second.Name); !memoryIs(256)(got) || *got.Spec.Replicas != 2 {
		t.Errorf("the failed update touched the serving revision")
	}

	// The activator scales the serving revision to zero; the next update switches at once
	// (no environment to wait for) and the failed revision goes.
	activatorScales(t, ns, second.Name, 0)
	deploymentReports(t, ns, second.Name, memoryIs(256), rolledOut(0))
	updateFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 1024 })
	fn = waitFunction(t, ns, "rev", func(f *lambdav1alpha1.Function) bool {
		return isActive(f) && f.Status.ServingDeployment != second.Name
	})
	fourth := revisionWith(t, ns, "rev", memoryIs(1024))
	if fn.Status.ServingDeployment != fourth.Name || *fourth.Spec.Replicas != 0 {
		t.Fatalf("at zero: serving %s (want %s), replicas %d", fn.Status.ServingDeployment, fourth.Name, *fourth.Spec.Replicas)
	}
	eventually(t, "old and failed revisions removed", func() string {
		if got := names(latestRevisions(t, ns, "rev")); got != fourth.Name {
			return got
		}
		return ""
	})
	// Every revision is owned by the Function (garbage-collected with it).
	if !metav1.IsControlledBy(fourth, fn) {
		t.Errorf("revision not controlled by the Function")
	}
}
