package controllers

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func i32(n int32) *int32 { return &n }

// initTypeIs waits until every container of Deployment name that has
// AWS_LAMBDA_INITIALIZATION_TYPE has it set to want.
func initTypeIs(t *testing.T, ns, name, want string) {
	t.Helper()
	eventually(t, "AWS_LAMBDA_INITIALIZATION_TYPE of "+name, func() string {
		d := getDeployment(t, ns, name)
		seen := 0
		for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
			if e, ok := envOf(c)["AWS_LAMBDA_INITIALIZATION_TYPE"]; ok {
				if e.Value != want {
					return c.Name + ": " + e.Value
				}
				seen++
			}
		}
		if seen == 0 {
			return "not set"
		}
		return ""
	})
}

// TestProvisionedConcurrencyLifecycle: an Alias's provisioned concurrency goes IN_PROGRESS →
// READY as its version's environments become available (the alias is Ready only then), and
// FAILED when they can't start; configurations Lambda refuses are FAILED with Lambda's
// message and Stalled: a second configuration for one version, more than the function's
// reserved concurrency, one on $LATEST.
func TestProvisionedConcurrencyLifecycle(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "Alias", ns)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	f := zipFunction(ns, "pcf", "code")
	f.Spec.ReservedConcurrentExecutions = i32(5)
	create(t, f)
	waitFunction(t, ns, "pcf", isActive)
	create(t, newVersion(ns, "pcf-1", "pcf"))
	waitVersion(t, ns, "pcf-1", published)

	live := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: "pcf", FunctionVersion: "1", ProvisionedConcurrentExecutions: i32(2)}}
	create(t, live)
	expect(t, "Alias", ns, "live", step{state: "provisioned concurrency IN_PROGRESS",
		ready: metav1.ConditionFalse, reason: ReasonProvisioning, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	a := waitAliasStatus(t, ns, "live", func(a *lambdav1alpha1.Alias) bool { return a.Status.ProvisionedConcurrency != nil })
	if ps := a.Status.ProvisionedConcurrency; ps.Status != lambdav1alpha1.ProvisionedConcurrencyInProgress || ps.RequestedProvisionedConcurrentExecutions != 2 {
		t.Errorf("live: %+v", ps)
	}
	deploymentReports(t, ns, WorkloadName("pcf", "1"), func(*appsv1.Deployment) bool { return true }, rolledOut(2))
	expect(t, "Alias", ns, "live", step{state: "provisioned concurrency READY",
		ready: metav1.ConditionTrue, reason: contract.ReasonResolved, kstatus: status.CurrentStatus, argo: "Healthy"})
	a = waitAliasStatus(t, ns, "live", func(a *lambdav1alpha1.Alias) bool { return true })
	if ps := a.Status.ProvisionedConcurrency; ps.Status != lambdav1alpha1.ProvisionedConcurrencyReady || ps.AvailableProvisionedConcurrentExecutions != 2 || ps.AllocatedProvisionedConcurrentExecutions != 2 {
		t.Errorf("live READY: %+v", ps)
	}

	// Version 1's environments are started for provisioned concurrency.
	initTypeIs(t, ns, WorkloadName("pcf", "1"), "provisioned-concurrency")

	// A second alias provisioning version 1: one configuration per version.
	create(t, &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "second"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: "pcf", FunctionVersion: "1", ProvisionedConcurrentExecutions: i32(1)}})
	expect(t, "Alias", ns, "second", step{state: "provisioned concurrency on a version already provisioned (FAILED)",
		ready: metav1.ConditionFalse, reason: pcReasonConflict, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	if ps := waitAliasStatus(t, ns, "second", func(*lambdav1alpha1.Alias) bool { return true }).Status.ProvisionedConcurrency; ps == nil ||
		ps.Status != lambdav1alpha1.ProvisionedConcurrencyFailed || ps.StatusReason != pcAliasOnVersion {
		t.Errorf("second: %+v", ps)
	}

	// A version's own configuration over the reserved concurrency left (5 - 2).
	updateFunction(t, ns, "pcf", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	waitFunction(t, ns, "pcf", isActive)
	v2 := newVersion(ns, "pcf-2", "pcf")
	v2.Spec.ProvisionedConcurrentExecutions = i32(4)
	create(t, v2)
	expect(t, "Version", ns, "pcf-2", step{state: "provisioned concurrency over reserved concurrency (FAILED)",
		ready: metav1.ConditionFalse, reason: pcReasonInvalid, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	v := waitVersion(t, ns, "pcf-2", func(*lambdav1alpha1.Version) bool { return true })
	if ps := v.Status.ProvisionedConcurrency; ps == nil || ps.Status != lambdav1alpha1.ProvisionedConcurrencyFailed || ps.StatusReason != pcOverReserved {
		t.Errorf("pcf-2: %+v", ps)
	}
	initTypeIs(t, ns, WorkloadName("pcf", "2"), "on-demand") // refused: nothing provisioned
	// Within it, the same version is accepted.
	updateObject(t, v, func(v *lambdav1alpha1.Version) { v.Spec.ProvisionedConcurrentExecutions = i32(3) })
	expect(t, "Version", ns, "pcf-2", step{state: "provisioned concurrency IN_PROGRESS",
		ready: metav1.ConditionFalse, reason: ReasonProvisioning, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	initTypeIs(t, ns, WorkloadName("pcf", "2"), "provisioned-concurrency")

	// On $LATEST.
	create(t, &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "latest"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: "pcf", FunctionVersion: "$LATEST", ProvisionedConcurrentExecutions: i32(1)}})
	expect(t, "Alias", ns, "latest", step{state: "provisioned concurrency on $LATEST (FAILED)",
		ready: metav1.ConditionFalse, reason: pcReasonInvalid, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	if ps := waitAliasStatus(t, ns, "latest", func(*lambdav1alpha1.Alias) bool { return true }).Status.ProvisionedConcurrency; ps == nil || ps.StatusReason != pcOnLatest {
		t.Errorf("latest: %+v", ps)
	}

	// The environments of version 1 can't start (the rollout's deadline passed): FAILED.
	failing := rolledOut(0)
	failing.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "pcf-v1-x" has timed out progressing.`}}
	deploymentReports(t, ns, WorkloadName("pcf", "1"), func(*appsv1.Deployment) bool { return true }, failing)
	expect(t, "Alias", ns, "live", step{state: "provisioned environments can't start (FAILED)",
		ready: metav1.ConditionFalse, reason: pcReasonAllocation, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	if ps := waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true }).Status.ProvisionedConcurrency; ps == nil ||
		ps.Status != lambdav1alpha1.ProvisionedConcurrencyFailed || !strings.Contains(ps.StatusReason, "timed out progressing") {
		t.Errorf("live after the failed rollout: %+v", ps)
	}
}
