package gitopshealth

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// The ConfigMap snippet users apply holds health.lua, unchanged, for each of the five kinds.
func TestArgoCDConfigMapHoldsTheScriptForEveryKind(t *testing.T) {
	script, err := os.ReadFile(ScriptPath())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(ScriptPath()), "argocd-cm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != "argocd-cm" || len(cm.Data) != 5 {
		t.Fatalf("ConfigMap %s with %d keys", cm.Name, len(cm.Data))
	}
	for _, kind := range []string{"Function", "Version", "Alias", "EventSourceMapping", "LayerVersion"} {
		key := "resource.customizations.health.lambda.klambda.dev_" + kind
		if cm.Data[key] != string(script) {
			t.Errorf("%s is not health.lua", key)
		}
	}
}

func object(status map[string]any, deleting bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "lambda.klambda.dev/v1alpha1", "kind": "Function",
		"metadata": map[string]any{"name": "f", "namespace": "ns", "generation": int64(2)},
	}}
	if status != nil {
		u.Object["status"] = status
	}
	if deleting {
		u.Object["metadata"].(map[string]any)["deletionTimestamp"] = "2026-12-02T00:00:00Z"
	}
	return u
}

func cond(typ, st, reason string) map[string]any {
	return map[string]any{"type": typ, "status": st, "reason": reason, "message": "m", "observedGeneration": int64(2)}
}

// The states the controllers' status writes can't show on a real object: before the first
// write, a write of an older generation, and what a tool sees of an object in between.
func TestVerdictsOfStatesBetweenWrites(t *testing.T) {
	cases := []struct {
		name    string
		obj     *unstructured.Unstructured
		kstatus status.Status
		argo    string
	}{
		// kstatus's rule for an object without status: current. Argo CD waits.
		{"no status yet", object(nil, false), status.CurrentStatus, "Progressing"},
		{"older generation", object(map[string]any{"observedGeneration": int64(1), "conditions": []any{cond("Ready", "True", "Active")}}, false), status.InProgressStatus, "Progressing"},
		{"retrying beside a Stalled verdict", object(map[string]any{"observedGeneration": int64(2), "conditions": []any{
			cond("Ready", "False", "X"), cond("Reconciling", "True", "Retrying"), cond("Stalled", "True", "X")}}, false), status.InProgressStatus, "Progressing"},
		{"Ready False alone", object(map[string]any{"observedGeneration": int64(2), "conditions": []any{cond("Ready", "False", "X")}}, false), status.InProgressStatus, "Progressing"},
		{"no Ready condition", object(map[string]any{"observedGeneration": int64(2)}, false), status.CurrentStatus, "Progressing"},
		{"being deleted", object(map[string]any{"observedGeneration": int64(2), "conditions": []any{cond("Ready", "True", "Active")}}, true), status.TerminatingStatus, "Progressing"},
	}
	for _, c := range cases {
		v, err := Judge(c.obj)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v.Kstatus != c.kstatus || v.Argo != c.argo {
			t.Errorf("%s: %s; want kstatus %s, Argo CD %s", c.name, v, c.kstatus, c.argo)
		}
	}
}

// A script error or an unknown status is an error, not a verdict.
func TestBadScriptsAreErrors(t *testing.T) {
	obj := object(nil, false).Object
	for _, script := range []string{`return 1`, `local hs = {status = "Fine"} return hs`, `error("boom")`, `while true do end`} {
		if st, _, err := RunHealthScript(script, obj); err == nil {
			t.Errorf("%q: %s, want an error", script, st)
		}
	}
}
