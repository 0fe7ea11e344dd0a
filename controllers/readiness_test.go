package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/test/gitopshealth"
)

// step is one lifecycle state of an object: the summary conditions it must carry, and what
// kstatus (Flux, kubectl wait) and Argo CD (docs/argocd/health.lua) must conclude from them.
type step struct {
	state       string
	ready       metav1.ConditionStatus
	reason      string // Ready's reason
	reconciling bool
	stalled     bool
	kstatus     status.Status
	argo        string
	deleting    bool // the object is being deleted: conditions are not checked
}

type summaryStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Conditions         []metav1.Condition `json:"conditions"`
}

// expect waits until kind ns/name, read back from the apiserver, is in step s: its status
// describes its generation with the step's conditions, each carrying that generation, and
// kstatus and Argo CD judge it as the step says. It logs the step as a row of the table in
// docs/status.md.
func expect(t *testing.T, kind, ns, name string, s step) *unstructured.Unstructured {
	t.Helper()
	var u *unstructured.Unstructured
	var v gitopshealth.Verdict
	eventually(t, kind+" "+name+": "+s.state, func() string {
		var err error
		u, v, err = gitopshealth.Read(context.Background(), k8s, kind, client.ObjectKey{Namespace: ns, Name: name})
		if err != nil {
			return err.Error()
		}
		if msg := checkConditions(u, s); msg != "" {
			return msg
		}
		if v.Kstatus != s.kstatus || v.Argo != s.argo {
			return fmt.Sprintf("conditions as expected, but %s; want kstatus %s, Argo CD %s", v, s.kstatus, s.argo)
		}
		return ""
	})
	t.Logf("TABLE| %s | %s | %s | %s | %s (%s) |", kind, s.state, conditionsText(u), v.Kstatus, v.Argo, v.ArgoMessage)
	return u
}

func summaryOf(u *unstructured.Unstructured) summaryStatus {
	var st summaryStatus
	if m, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &st)
	}
	return st
}

func checkConditions(u *unstructured.Unstructured, s step) string {
	if s.deleting {
		if u.GetDeletionTimestamp() == nil {
			return "not being deleted"
		}
		return ""
	}
	st := summaryOf(u)
	if st.ObservedGeneration != u.GetGeneration() {
		return fmt.Sprintf("observedGeneration %d, generation %d", st.ObservedGeneration, u.GetGeneration())
	}
	ready := meta.FindStatusCondition(st.Conditions, contract.ConditionReady)
	if ready == nil || ready.Status != s.ready || (s.reason != "" && ready.Reason != s.reason) {
		return "conditions " + conditionsText(u)
	}
	if meta.IsStatusConditionTrue(st.Conditions, contract.ConditionReconciling) != s.reconciling ||
		meta.IsStatusConditionTrue(st.Conditions, contract.ConditionStalled) != s.stalled {
		return "conditions " + conditionsText(u)
	}
	for _, c := range st.Conditions {
		if c.ObservedGeneration != u.GetGeneration() && (c.Type == contract.ConditionReady || c.Type == contract.ConditionReconciling || c.Type == contract.ConditionStalled) {
			return fmt.Sprintf("condition %s describes generation %d, not %d", c.Type, c.ObservedGeneration, u.GetGeneration())
		}
	}
	return ""
}

// conditionsText is the summary conditions as the table shows them: Ready=False(Reason).
func conditionsText(u *unstructured.Unstructured) string {
	var parts []string
	for _, typ := range []string{contract.ConditionReady, contract.ConditionReconciling, contract.ConditionStalled, contract.ConditionDeletionBlocked} {
		if c := meta.FindStatusCondition(summaryOf(u).Conditions, typ); c != nil {
			parts = append(parts, fmt.Sprintf("%s=%s(%s)", c.Type, c.Status, c.Reason))
		}
	}
	return strings.Join(parts, " ")
}

// watchStatusWrites checks every write of kind's objects in ns until the test ends: each
// status written (of an object not being deleted) carries observedGeneration and a Ready
// condition of that generation.
func watchStatusWrites(t *testing.T, kind, ns string) {
	t.Helper()
	wc, err := client.NewWithWatch(testRestConfig, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(lambdav1alpha1.GroupVersion.WithKind(kind + "List"))
	ctx, cancel := context.WithCancel(context.Background())
	// From resourceVersion 0: the apiserver's watch cache of a kind nothing wrote lately
	// may lag behind etcd, and a watch from "now" waits for it and times out.
	w, err := wc.Watch(ctx, list, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bad []string
	writes, stopping := 0, false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				mu.Lock()
				if !stopping {
					bad = append(bad, fmt.Sprintf("watch event %s: %v", ev.Type, ev.Object))
				}
				mu.Unlock()
			}
			if !ok || u.GetDeletionTimestamp() != nil || u.Object["status"] == nil {
				continue
			}
			st := summaryOf(u)
			ready := meta.FindStatusCondition(st.Conditions, contract.ConditionReady)
			mu.Lock()
			writes++
			if st.ObservedGeneration == 0 || ready == nil || ready.ObservedGeneration != st.ObservedGeneration {
				bad = append(bad, fmt.Sprintf("%s %s (generation %d): observedGeneration %d, %s", kind, u.GetName(), u.GetGeneration(), st.ObservedGeneration, conditionsText(u)))
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		w.Stop()
		<-done
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if writes == 0 {
			t.Errorf("no %s status write seen", kind)
		}
		for _, b := range bad {
			t.Errorf("a status write without its generation or Ready: %s", b)
		}
	})
}

// activatorScales sets the replicas of a Deployment as the activator does.
func activatorScales(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	ac := appsv1ac.Deployment(name, ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(replicas))
	if err := k8s.Apply(context.Background(), ac, client.FieldOwner(contract.ScalerFieldManager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// deploymentReports plays the deployment controller (envtest has none): the status of the
// Deployment's current generation, once the template the controller applied is there.
func deploymentReports(t *testing.T, ns, name string, template func(*appsv1.Deployment) bool, st appsv1.DeploymentStatus) {
	t.Helper()
	eventually(t, "Deployment "+name+" template", func() string {
		d := getDeployment(t, ns, name)
		if !template(d) {
			return "template not applied yet"
		}
		st.ObservedGeneration = d.Generation
		d.Status = st
		if err := k8s.Status().Update(context.Background(), d); err != nil {
			return err.Error()
		}
		return ""
	})
}

func rolledOut(replicas int32) appsv1.DeploymentStatus {
	return appsv1.DeploymentStatus{Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas}
}

func memoryIs(mb int64) func(*appsv1.Deployment) bool {
	return func(d *appsv1.Deployment) bool {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Resources.Limits.Memory().Value() == mb<<20 {
				return true
			}
		}
		return false
	}
}

// A Function through create, a failed create, rollouts, a failed rollout, a failed update
// and the recovery: Ready only when the generation is rolled out and Active.
func TestFunctionConditionsThroughItsLifecycle(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "Function", ns)
	create(t, zipFunction(ns, "life", "code"))
	expect(t, "Function", ns, "life", step{state: "create failed (code ConfigMap missing): state Failed",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	expect(t, "Function", ns, "life", step{state: "Active, rolled out (zero replicas)",
		ready: metav1.ConditionTrue, reason: string(lambdav1alpha1.StateActive), kstatus: status.CurrentStatus, argo: "Healthy"})

	activatorScales(t, ns, "life-latest", 2)
	deploymentReports(t, ns, "life-latest", memoryIs(128), rolledOut(2))
	updateFunction(t, ns, "life", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	fn := waitFunction(t, ns, "life", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateInProgress
	})
	expect(t, "Function", ns, "life", step{state: "update rolling out: lastUpdateStatus InProgress",
		ready: metav1.ConditionFalse, reason: contract.ReasonInProgress, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	if fn.Status.State != lambdav1alpha1.StateActive {
		t.Errorf("state during a rollout: %s", fn.Status.State)
	}

	deploymentReports(t, ns, revisionWith(t, ns, "life", memoryIs(256)).Name, memoryIs(256), rolledOut(2))
	expect(t, "Function", ns, "life", step{state: "update rolled out: lastUpdateStatus Successful",
		ready: metav1.ConditionTrue, reason: string(lambdav1alpha1.StateActive), kstatus: status.CurrentStatus, argo: "Healthy"})

	// The activator scales a rolled-out generation: it stays Ready.
	activatorScales(t, ns, servingDeployment(t, ns, "life"), 3)
	eventually(t, "the scale seen", func() string {
		if c := meta.FindStatusCondition(getFunction(t, ns, "life").Status.Conditions, contract.ConditionRolloutComplete); c != nil && c.Status == metav1.ConditionFalse {
			return ""
		}
		return "RolloutComplete still True"
	})
	expect(t, "Function", ns, "life", step{state: "scaled up by the activator (pods not yet available)",
		ready: metav1.ConditionTrue, kstatus: status.CurrentStatus, argo: "Healthy"})

	updateFunction(t, ns, "life", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 512 })
	// The new revision's pods never become available (its own Deployment: none of the
	// serving revision's pods are counted there).
	failed := appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3}
	failed.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "life-latest-abc" has timed out progressing.`}}
	deploymentReports(t, ns, revisionWith(t, ns, "life", memoryIs(512)).Name, memoryIs(512), failed)
	expect(t, "Function", ns, "life", step{state: "update's rollout failed (ProgressDeadlineExceeded): lastUpdateStatus Failed",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInternalError), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	updateFunction(t, ns, "life", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "gone" })
	fn = waitFunction(t, ns, "life", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed && strings.Contains(f.Status.LastUpdateStatusReason, "gone")
	})
	expect(t, "Function", ns, "life", step{state: "update failed (code ConfigMap missing): state Active, lastUpdateStatus Failed",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	if fn.Status.State != lambdav1alpha1.StateActive {
		t.Errorf("a failed update must leave the function Active: %s", fn.Status.State)
	}

	updateFunction(t, ns, "life", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "code"; f.Spec.MemorySize = 1024 })
	expect(t, "Function", ns, "life", step{state: "fixed by a new generation, rolling out",
		ready: metav1.ConditionFalse, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	deploymentReports(t, ns, revisionWith(t, ns, "life", memoryIs(1024)).Name, memoryIs(1024), rolledOut(3))
	expect(t, "Function", ns, "life", step{state: "recovered: rolled out",
		ready: metav1.ConditionTrue, reason: string(lambdav1alpha1.StateActive), kstatus: status.CurrentStatus, argo: "Healthy"})
}

// A LayerVersion while its content downloads, published, with its content missing, and
// deleted while a Function uses it; the Function waits (Reconciling) for the layer.
func TestLayerVersionConditionsThroughItsLifecycle(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "LayerVersion", ns)
	layer := makeZip(t, zf{name: "lib/x.so", body: "x"})
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write(layer)
	}))
	defer srv.Close()
	defer once.Do(func() { close(release) })
	lv := newLayer(ns, "slow", "", "")
	lv.Spec.Content = lambdav1alpha1.CodeSource{URL: srv.URL + "/layer.zip", SHA256: codeloader.DigestOf(layer).Hex}
	create(t, lv)
	expect(t, "LayerVersion", ns, "slow", step{state: "content being fetched",
		ready: metav1.ConditionFalse, reason: contract.ReasonInProgress, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))
	create(t, zipFunction(ns, "user", "code", "slow"))
	expect(t, "Function", ns, "user", step{state: "create waiting for a layer being published: state Pending",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonCreating), reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})

	once.Do(func() { close(release) })
	expect(t, "LayerVersion", ns, "slow", step{state: "published",
		ready: metav1.ConditionTrue, reason: contract.ReasonResolved, kstatus: status.CurrentStatus, argo: "Healthy"})
	expect(t, "Function", ns, "user", step{state: "Active once its layer is published",
		ready: metav1.ConditionTrue, kstatus: status.CurrentStatus, argo: "Healthy"})

	create(t, zipFunction(ns, "nolayer", "code", "absent"))
	expect(t, "Function", ns, "nolayer", step{state: "create names a LayerVersion that does not exist: state Failed",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	create(t, newLayer(ns, "nocontent", "", "absent"))
	expect(t, "LayerVersion", ns, "nocontent", step{state: "content missing (ConfigMap not found)",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	if err := k8s.Delete(context.Background(), lv); err != nil {
		t.Fatal(err)
	}
	u := expect(t, "LayerVersion", ns, "slow", step{state: "deleted while a Function uses it (kept)", deleting: true, kstatus: status.TerminatingStatus, argo: "Progressing"})
	if c := meta.FindStatusCondition(summaryOf(u).Conditions, contract.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("a kept layer version must stay Ready for the functions using it: %s", conditionsText(u))
	}
}

// Versions: waiting for their Function, published, a failed precondition, provisioned
// concurrency IN_PROGRESS then READY, an unchanged publish.
func TestVersionConditionsThroughItsLifecycle(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "Version", ns)
	create(t, newVersion(ns, "first", "vfn"))
	expect(t, "Version", ns, "first", step{state: "its Function does not exist (yet)",
		ready: metav1.ConditionFalse, reason: contract.ReasonFunctionNotFound, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})

	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "vfn", "code"))
	expect(t, "Version", ns, "first", step{state: "published, its Deployment applied",
		ready: metav1.ConditionTrue, reason: string(lambdav1alpha1.StateActive), kstatus: status.CurrentStatus, argo: "Healthy"})

	bad := newVersion(ns, "pinned", "vfn")
	bad.Spec.CodeSha256 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	create(t, bad)
	expect(t, "Version", ns, "pinned", step{state: "codeSha256 precondition failed",
		ready: metav1.ConditionFalse, reason: contract.ReasonPreconditionFailed, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	same := newVersion(ns, "same", "vfn")
	create(t, same)
	expect(t, "Version", ns, "same", step{state: "nothing changed since version 1 (refers to it)",
		ready: metav1.ConditionTrue, reason: contract.ReasonUnchanged, kstatus: status.CurrentStatus, argo: "Healthy"})

	updateFunction(t, ns, "vfn", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	waitFunction(t, ns, "vfn", func(f *lambdav1alpha1.Function) bool { return isActive(f) && f.Status.CodeSha256 != "" })
	pc := newVersion(ns, "warm", "vfn")
	two := int32(2)
	pc.Spec.ProvisionedConcurrentExecutions = &two
	create(t, pc)
	v := expect(t, "Version", ns, "warm", step{state: "provisioned concurrency IN_PROGRESS",
		ready: metav1.ConditionFalse, reason: ReasonProvisioning, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	num, _, _ := unstructured.NestedString(v.Object, "status", "version")
	deploymentReports(t, ns, WorkloadName("vfn", num), func(*appsv1.Deployment) bool { return true }, rolledOut(2))
	expect(t, "Version", ns, "warm", step{state: "provisioned concurrency READY",
		ready: metav1.ConditionTrue, reason: string(lambdav1alpha1.StateActive), kstatus: status.CurrentStatus, argo: "Healthy"})
}

// Aliases: waiting for a version to be published, routing, weighted versions that
// disagree, a duplicate name; and a Version the Alias keeps from deletion.
func TestAliasConditionsThroughItsLifecycle(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "Alias", ns)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "afn", "code"))
	waitFunction(t, ns, "afn", isActive)
	live := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: lambdav1alpha1.AliasSpec{FunctionName: "afn", FunctionVersion: "1"}}
	create(t, live)
	expect(t, "Alias", ns, "live", step{state: "its version is not published yet",
		ready: metav1.ConditionFalse, reason: contract.ReasonVersionNotFound, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})

	v1 := newVersion(ns, "one", "afn")
	create(t, v1)
	expect(t, "Alias", ns, "live", step{state: "routing validated and in effect",
		ready: metav1.ConditionTrue, reason: contract.ReasonResolved, kstatus: status.CurrentStatus, argo: "Healthy"})

	updateFunction(t, ns, "afn", func(f *lambdav1alpha1.Function) { f.Spec.ServiceAccountName = "other" })
	waitFunction(t, ns, "afn", isActive)
	create(t, newVersion(ns, "two", "afn"))
	waitVersion(t, ns, "two", published)
	updateObject(t, live, func(a *lambdav1alpha1.Alias) {
		a.Spec.RoutingConfig = &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}}
	})
	expect(t, "Alias", ns, "live", step{state: "weighted versions with different serviceAccountName",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	dup := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live-again"}, Spec: lambdav1alpha1.AliasSpec{FunctionName: "afn", Name: "live", FunctionVersion: "1"}}
	create(t, dup)
	expect(t, "Alias", ns, "live-again", step{state: "duplicate alias name",
		ready: metav1.ConditionFalse, reason: ReasonDuplicateAlias, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})

	if err := k8s.Delete(context.Background(), v1); err != nil {
		t.Fatal(err)
	}
	u := expect(t, "Version", ns, "one", step{state: "deleted while an Alias routes to it (kept)", deleting: true, kstatus: status.TerminatingStatus, argo: "Progressing"})
	if !strings.Contains(conditionsText(u), "DeletionBlocked=True") {
		eventually(t, "DeletionBlocked", func() string {
			var v lambdav1alpha1.Version
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(v1), &v); err != nil {
				return err.Error()
			}
			if meta.IsStatusConditionTrue(v.Status.Conditions, contract.ConditionDeletionBlocked) {
				return ""
			}
			return "not blocked"
		})
	}
}
