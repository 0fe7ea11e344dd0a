package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func waitAliasStatus(t *testing.T, ns, name string, ok func(*lambdav1alpha1.Alias) bool) *lambdav1alpha1.Alias {
	t.Helper()
	var a lambdav1alpha1.Alias
	eventually(t, "Alias "+name, func() string {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &a); err != nil {
			return err.Error()
		}
		if a.Status.ObservedGeneration == a.Generation && ok(&a) {
			return ""
		}
		return fmt.Sprintf("generation %d, status %+v", a.Generation, a.Status)
	})
	return &a
}

func readyReason(conds []metav1.Condition) (metav1.ConditionStatus, string, string) {
	c := meta.FindStatusCondition(conds, contract.ConditionReady)
	if c == nil {
		return "", "", ""
	}
	return c.Status, c.Reason, c.Message
}

// TestAliasVersionRefs: an Alias names Version objects (functionVersionRef and
// additionalVersionRefWeights) instead of numbers. The controller resolves each to the number
// its Version published and reports that routing in status (what the router and the async
// path use); a ref to a Version not published yet waits (Reconciling) keeping the last valid
// routing; refs that can't resolve (a precondition failed, another function's Version, two
// refs to one version) stall with a reason saying which.
func TestAliasVersionRefs(t *testing.T) {
	ns := newNamespace(t)
	watchStatusWrites(t, "Alias", ns)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	create(t, zipFunction(ns, "rf", "code"))
	waitFunction(t, ns, "rf", isActive)

	live := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: "rf", FunctionVersionRef: &lambdav1alpha1.VersionReference{Name: "rel-a"}}}
	create(t, live)
	expect(t, "Alias", ns, "live", step{state: "functionVersionRef: its Version does not exist yet",
		ready: metav1.ConditionFalse, reason: contract.ReasonVersionNotFound, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	if a := waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true }); a.Status.FunctionVersion != "" {
		t.Errorf("an alias whose Version is not published routes %q; want nothing", a.Status.FunctionVersion)
	}

	// The Version comes (publishes 1): the alias routes to 1.
	create(t, newVersion(ns, "rel-a", "rf"))
	waitVersion(t, ns, "rel-a", published)
	expect(t, "Alias", ns, "live", step{state: "functionVersionRef resolved and routed",
		ready: metav1.ConditionTrue, reason: contract.ReasonResolved, kstatus: status.CurrentStatus, argo: "Healthy"})
	if a := waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true }); a.Status.FunctionVersion != "1" || a.Status.AdditionalVersionWeights != nil {
		t.Errorf("live by ref: %+v, want version 1", a.Status)
	}

	// A canary by ref: version 2 published from a changed function, 20 % of the traffic.
	updateFunction(t, ns, "rf", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256 })
	waitFunction(t, ns, "rf", isActive)
	create(t, newVersion(ns, "rel-b", "rf"))
	waitVersion(t, ns, "rel-b", published)
	updateObject(t, live, func(a *lambdav1alpha1.Alias) {
		a.Spec.RoutingConfig = &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionRefWeights: map[string]float64{"rel-b": 0.2}}
	})
	a := waitAliasStatus(t, ns, "live", func(a *lambdav1alpha1.Alias) bool {
		return meta.IsStatusConditionTrue(a.Status.Conditions, contract.ConditionReady)
	})
	if a.Status.FunctionVersion != "1" || len(a.Status.AdditionalVersionWeights) != 1 || a.Status.AdditionalVersionWeights["2"] != 0.2 {
		t.Errorf("canary by ref: %+v, want version 1 and 0.2 to version 2", a.Status)
	}
	canaryRevision := a.Status.RevisionID

	// A ref to a Version that isn't there yet: waits, keeping the last valid routing.
	updateObject(t, live, func(a *lambdav1alpha1.Alias) { a.Spec.FunctionVersionRef.Name = "rel-c" })
	expect(t, "Alias", ns, "live", step{state: "functionVersionRef to a Version not applied yet (last routing kept)",
		ready: metav1.ConditionFalse, reason: contract.ReasonVersionNotFound, reconciling: true, kstatus: status.InProgressStatus, argo: "Progressing"})
	a = waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true })
	if a.Status.FunctionVersion != "1" || a.Status.AdditionalVersionWeights["2"] != 0.2 || a.Status.RevisionID != canaryRevision {
		t.Errorf("while rel-c is missing the alias must keep routing 1 + 0.2 to 2 (revision %s): %+v", canaryRevision, a.Status)
	}
	if _, _, msg := readyReason(a.Status.Conditions); !strings.Contains(msg, "functionVersionRef") || !strings.Contains(msg, "rel-c") {
		t.Errorf("message %q should name functionVersionRef and rel-c", msg)
	}

	// rel-c pins code the function doesn't have: its precondition fails and the alias stalls,
	// still routing as before.
	other := makeZip(t, zf{name: "bootstrap", body: "v2"})
	sum := sha256.Sum256(other)
	relC := newVersion(ns, "rel-c", "rf")
	relC.Spec.CodeSha256 = base64.StdEncoding.EncodeToString(sum[:])
	create(t, relC)
	expect(t, "Alias", ns, "live", step{state: "functionVersionRef to a Version whose precondition failed",
		ready: metav1.ConditionFalse, reason: contract.ReasonPreconditionFailed, stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	a = waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true })
	if _, _, msg := readyReason(a.Status.Conditions); a.Status.FunctionVersion != "1" || !strings.Contains(msg, "rel-c") || !strings.Contains(msg, "codeSha256") {
		t.Errorf("stalled alias: routes %s (want 1), message %q", a.Status.FunctionVersion, msg)
	}

	// The function's code becomes what rel-c pins (the rest of the same Git commit arrives):
	// rel-c is evaluated again, publishes 3, and the alias moves to it.
	createZipConfigMap(t, ns, "code2", other)
	updateFunction(t, ns, "rf", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "code2" })
	v := waitVersion(t, ns, "rel-c", published)
	if v.Status.Version != "3" || v.Status.CodeSha256 != relC.Spec.CodeSha256 {
		t.Errorf("rel-c published %+v", v.Status)
	}
	a = waitAliasStatus(t, ns, "live", func(a *lambdav1alpha1.Alias) bool {
		return meta.IsStatusConditionTrue(a.Status.Conditions, contract.ConditionReady)
	})
	if a.Status.FunctionVersion != "3" || a.Status.AdditionalVersionWeights["2"] != 0.2 {
		t.Errorf("after rel-c published: %+v, want 3 and 0.2 to 2", a.Status)
	}

	// A Version of another function.
	create(t, zipFunction(ns, "elsewhere", "code"))
	waitFunction(t, ns, "elsewhere", isActive)
	create(t, newVersion(ns, "foreign", "elsewhere"))
	waitVersion(t, ns, "foreign", published)
	updateObject(t, live, func(a *lambdav1alpha1.Alias) { a.Spec.FunctionVersionRef.Name = "foreign" })
	expect(t, "Alias", ns, "live", step{state: "functionVersionRef to another function's Version",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
	a = waitAliasStatus(t, ns, "live", func(*lambdav1alpha1.Alias) bool { return true })
	if _, _, msg := readyReason(a.Status.Conditions); a.Status.FunctionVersion != "3" || !strings.Contains(msg, "elsewhere") {
		t.Errorf("foreign ref: routes %s (want 3), message %q", a.Status.FunctionVersion, msg)
	}

	// Two refs that resolve to one version (rel-b, and an unchanged publish referring to it).
	create(t, newVersion(ns, "rel-c-again", "rf"))
	waitVersion(t, ns, "rel-c-again", func(v *lambdav1alpha1.Version) bool { return publishedReason(v) == contract.ReasonUnchanged })
	updateObject(t, live, func(a *lambdav1alpha1.Alias) {
		a.Spec.FunctionVersionRef.Name = "rel-c"
		a.Spec.RoutingConfig.AdditionalVersionRefWeights = map[string]float64{"rel-c-again": 0.5}
	})
	expect(t, "Alias", ns, "live", step{state: "two refs to the same version",
		ready: metav1.ConditionFalse, reason: string(lambdav1alpha1.StateReasonInvalidConfiguration), stalled: true, kstatus: status.FailedStatus, argo: "Degraded"})
}

// TestAliasVersionRefValidation: the apiserver refuses an Alias without exactly one of
// functionVersion and functionVersionRef, and refs mixed with numbers in one routing.
func TestAliasVersionRefValidation(t *testing.T) {
	ns := newNamespace(t)
	ref := func(n string) *lambdav1alpha1.VersionReference { return &lambdav1alpha1.VersionReference{Name: n} }
	for _, c := range []struct {
		name string
		spec lambdav1alpha1.AliasSpec
		want string // "" accepted
	}{
		{"neither", lambdav1alpha1.AliasSpec{FunctionName: "f"}, "exactly one of functionVersion and functionVersionRef"},
		{"both", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersion: "1", FunctionVersionRef: ref("v")}, "exactly one of functionVersion and functionVersionRef"},
		{"ref", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v")}, ""},
		{"refweights", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v"),
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionRefWeights: map[string]float64{"w": 0.1}}}, ""},
		{"numberweights-and-ref", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v"),
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}}}, ""},
		{"two-additional", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersion: "1",
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}, AdditionalVersionRefWeights: map[string]float64{"w": 0.1}}},
			"at most one additional version"},
		{"self-ref", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v"),
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionRefWeights: map[string]float64{"v": 0.1}}}, "must differ from functionVersionRef"},
		{"bad-weight", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v"),
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionRefWeights: map[string]float64{"w": 1.5}}}, "between 0.0 and 1.0"},
		{"bad-name", lambdav1alpha1.AliasSpec{FunctionName: "f", FunctionVersionRef: ref("v"),
			RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionRefWeights: map[string]float64{"Not_A_Name": 0.1}}}, "Version object names"},
	} {
		a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: c.name}, Spec: c.spec}
		err := k8s.Create(context.Background(), a)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
}
