// Package gitopshealth says what GitOps tools conclude from an object read back from the
// apiserver: kstatus's verdict (Flux, kubectl wait, cli-utils) and the health Argo CD
// computes with the script klambda ships (docs/argocd/health.lua), run the way Argo CD runs
// a health script: gopher-lua with only its package, base and table libraries, obj as a
// global, a table {status, message} returned.
package gitopshealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Verdict is what both tools say of one object.
type Verdict struct {
	Kstatus        status.Status
	KstatusMessage string
	// Argo is Argo CD's health status (Healthy, Progressing, Degraded, ...).
	Argo        string
	ArgoMessage string
}

func (v Verdict) String() string {
	return fmt.Sprintf("kstatus %s (%s), Argo CD %s (%s)", v.Kstatus, v.KstatusMessage, v.Argo, v.ArgoMessage)
}

// Read gets kind/key from the apiserver as unstructured (as both tools see it) and judges it.
func Read(ctx context.Context, c client.Reader, kind string, key client.ObjectKey) (*unstructured.Unstructured, Verdict, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: lambdav1alpha1.GroupVersion.Group, Version: lambdav1alpha1.GroupVersion.Version, Kind: kind})
	if err := c.Get(ctx, key, u); err != nil {
		return nil, Verdict{}, err
	}
	v, err := Judge(u)
	return u, v, err
}

// Judge computes both verdicts of u.
func Judge(u *unstructured.Unstructured) (Verdict, error) {
	res, err := status.Compute(u)
	if err != nil {
		return Verdict{}, fmt.Errorf("kstatus: %w", err)
	}
	h, msg, err := ArgoCDHealth(u)
	if err != nil {
		return Verdict{}, err
	}
	return Verdict{Kstatus: res.Status, KstatusMessage: res.Message, Argo: h, ArgoMessage: msg}, nil
}

// ScriptPath is docs/argocd/health.lua in this module.
func ScriptPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "argocd", "health.lua")
}

// ArgoCDHealth runs health.lua on u.
func ArgoCDHealth(u *unstructured.Unstructured) (string, string, error) {
	script, err := os.ReadFile(ScriptPath())
	if err != nil {
		return "", "", err
	}
	return RunHealthScript(string(script), u.Object)
}

// RunHealthScript runs an Argo CD health script on obj and returns its status and message.
func RunHealthScript(script string, obj map[string]any) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", fmt.Errorf("health.lua: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health.lua returned %s, not a table", l.Get(-1).Type())
	}
	st, msg := ret.RawGetString("status"), ret.RawGetString("message")
	switch st.String() {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		return "", "", fmt.Errorf("health.lua returned status %q, which Argo CD does not know", st.String())
	}
	if msg.Type() != lua.LTString && msg.Type() != lua.LTNil {
		return "", "", fmt.Errorf("health.lua returned a %s message", msg.Type())
	}
	if msg.Type() == lua.LTNil {
		return st.String(), "", nil
	}
	return st.String(), msg.String(), nil
}

// toLua converts an unstructured value as Argo CD does: maps and slices to tables, numbers
// (float64, int64, json.Number as a string) and strings and booleans to their Lua values.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
