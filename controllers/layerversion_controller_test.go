package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

func newLayer(ns, name, layerName, cm string) *lambdav1alpha1.LayerVersion {
	return &lambdav1alpha1.LayerVersion{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: lambdav1alpha1.LayerVersionSpec{
		LayerName: layerName,
		Content:   lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: cm, Key: "code.zip"}},
	}}
}

func waitLayer(t *testing.T, ns, name string, ok func(*lambdav1alpha1.LayerVersion) bool) *lambdav1alpha1.LayerVersion {
	t.Helper()
	var lv lambdav1alpha1.LayerVersion
	eventually(t, "LayerVersion "+name, func() string {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &lv); err != nil {
			return err.Error()
		}
		if ok(&lv) {
			return ""
		}
		return fmt.Sprintf("%+v", lv.Status)
	})
	return &lv
}

func layerReady(lv *lambdav1alpha1.LayerVersion) bool {
	return meta.IsStatusConditionTrue(lv.Status.Conditions, contract.ConditionReady)
}

func gone(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, obj.GetName()+" deleted", func() string {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return ""
		}
		return "still there"
	})
}

func TestLayersInOrderNumberingAndDeletion(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	z1 := makeZip(t, zf{name: "bin/tool", body: "one"})
	z2 := makeZip(t, zf{name: "bin/tool", body: "two"})
	createZipConfigMap(t, ns, "l1", z1)
	createZipConfigMap(t, ns, "l2", z2)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))

	create(t, newLayer(ns, "tools-a", "tools", "l1"))
	a := waitLayer(t, ns, "tools-a", layerReady)
	create(t, newLayer(ns, "tools-b", "tools", "l2"))
	b := waitLayer(t, ns, "tools-b", layerReady)
	if a.Status.Version != 1 || b.Status.Version != 2 || a.Status.LayerName != "tools" ||
		a.Status.LayerVersionARN != "arn:aws:lambda:us-east-1:000000000000:layer:tools:1" ||
		a.Status.CodeSha256 != codeloader.DigestOf(z1).Base64 || a.Status.CodeSize != int64(len(z1)) {
		t.Fatalf("layer status: %+v / %+v", a.Status, b.Status)
	}
	if !contains(a.Finalizers, layerFinalizer) {
		t.Errorf("finalizers %v", a.Finalizers)
	}

	// Order as listed: b (by object name) first, then tools:1 — the last wins in /opt.
	create(t, zipFunction(ns, "withlayers", "code", "tools-b", "tools:1"))
	fn := waitFunction(t, ns, "withlayers", isActive)
	if len(fn.Status.Layers) != 2 || fn.Status.Layers[0].Name != "tools-b" || fn.Status.Layers[1].Name != "tools-a" || fn.Status.Layers[1].Version != 1 {
		t.Fatalf("status.layers %+v", fn.Status.Layers)
	}
	args := getDeployment(t, ns, "withlayers-latest").Spec.Template.Spec.InitContainers[0].Args
	var layers []string
	for _, a := range args {
		if strings.HasPrefix(a, "--layer=") {
			layers = append(layers, a)
		}
	}
	want := []string{
		"--layer=file:///klambda/sources/layer-1/code.zip#sha256=" + codeloader.DigestOf(z2).Hex,
		"--layer=file:///klambda/sources/layer-2/code.zip#sha256=" + codeloader.DigestOf(z1).Hex,
	}
	if fmt.Sprint(layers) != fmt.Sprint(want) {
		t.Errorf("layer args %v, want %v", layers, want)
	}
	var vols []corev1.Volume
	for _, v := range getDeployment(t, ns, "withlayers-latest").Spec.Template.Spec.Volumes {
		if strings.HasPrefix(v.Name, "src-layer") {
			vols = append(vols, v)
		}
	}
	if len(vols) != 2 || vols[0].ConfigMap.Name != codeConfigMapName("tools-b", codeloader.DigestOf(z2).Hex) {
		t.Errorf("layer volumes %+v", vols)
	}
	// The layers' objects carry the recommended labels of the layer component.
	getWithAppLabels(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: codeConfigMapName("tools-b", codeloader.DigestOf(z2).Hex)}}, sharedAppLabels(appComponentLayer))
	getWithAppLabels(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: LayerVersionCounterConfigMap}}, sharedAppLabels(appComponentLayer))

	// A missing layer fails a new function.
	create(t, zipFunction(ns, "nolayer", "code", "tools:9"))
	f := waitFunction(t, ns, "nolayer", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if !strings.Contains(f.Status.StateReason, "tools:9 not found") {
		t.Errorf("missing layer: %s", f.Status.StateReason)
	}

	// Deleting a layer version in use: it stays (and keeps working) until no one uses it.
	if err := k8s.Delete(ctx, newLayer(ns, "tools-a", "", "")); err != nil {
		t.Fatal(err)
	}
	waitLayer(t, ns, "tools-a", func(lv *lambdav1alpha1.LayerVersion) bool {
		return meta.IsStatusConditionTrue(lv.Status.Conditions, contract.ConditionDeletionBlocked)
	})
	updateFunction(t, ns, "withlayers", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 300 })
	waitFunction(t, ns, "withlayers", func(f *lambdav1alpha1.Function) bool { return isActive(f) && len(f.Status.Layers) == 2 })
	// A new function can't add the deleted version.
	create(t, zipFunction(ns, "late", "code", "tools-a"))
	f = waitFunction(t, ns, "late", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if !strings.Contains(f.Status.StateReason, "was deleted") {
		t.Errorf("deleted layer: %s", f.Status.StateReason)
	}
	if err := k8s.Delete(ctx, getFunction(t, ns, "late")); err != nil {
		t.Fatal(err)
	}
	// Dropping it from the function releases it.
	updateFunction(t, ns, "withlayers", func(f *lambdav1alpha1.Function) { f.Spec.Layers = []string{"tools-b"} })
	gone(t, newLayer(ns, "tools-a", "", ""))

	// Numbers are never reused: delete version 2 (its function drops it), publish again → 3.
	updateFunction(t, ns, "withlayers", func(f *lambdav1alpha1.Function) { f.Spec.Layers = nil })
	waitFunction(t, ns, "withlayers", func(f *lambdav1alpha1.Function) bool { return isActive(f) && len(f.Status.Layers) == 0 })
	if err := k8s.Delete(ctx, newLayer(ns, "tools-b", "", "")); err != nil {
		t.Fatal(err)
	}
	gone(t, newLayer(ns, "tools-b", "", ""))
	create(t, newLayer(ns, "tools-c", "tools", "l1"))
	if c := waitLayer(t, ns, "tools-c", layerReady); c.Status.Version != 3 {
		t.Errorf("after deletes the next layer version is %d, want 3", c.Status.Version)
	}
}

func TestLayerWithUnsafeContentFails(t *testing.T) {
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "evil", makeZip(t, zf{name: "../../etc/x", body: "x"}))
	create(t, newLayer(ns, "evil", "", "evil"))
	lv := waitLayer(t, ns, "evil", func(lv *lambdav1alpha1.LayerVersion) bool {
		return meta.FindStatusCondition(lv.Status.Conditions, contract.ConditionReady) != nil
	})
	c := meta.FindStatusCondition(lv.Status.Conditions, contract.ConditionReady)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "unsafe archive") || lv.Status.Version != 0 {
		t.Errorf("unsafe layer: %+v %+v", c, lv.Status)
	}
}

// envtest runs no garbage collector: deleting a Function relies on owner references, so
// check that every object it leads to is owned by it (directly or through a Version).
func TestEverythingAFunctionMakesIsOwnedByIt(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))
	create(t, zipFunction(ns, "own", "code"))
	fn := waitFunction(t, ns, "own", isActive)
	create(t, newVersion(ns, "own-1", "own"))
	v := waitVersion(t, ns, "own-1", published)
	owned := func(obj client.Object, owner metav1.Object) {
		t.Helper()
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatalf("%T %s: %v", obj, obj.GetName(), err)
		}
		for _, ref := range obj.GetOwnerReferences() {
			if ref.UID == owner.GetUID() {
				return
			}
		}
		t.Errorf("%T %s is not owned by %s", obj, obj.GetName(), owner.GetName())
	}
	owned(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-latest"}}, fn)
	owned(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-invoke"}}, fn)
	owned(&lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-1"}}, fn)
	owned(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-v1"}}, v)
	owned(getDeployment(t, ns, "own-latest"), fn)
	owned(getDeployment(t, ns, "own-v1"), v)
	d, _ := digestFromBase64(fn.Status.CodeSha256, 0)
	owned(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: codeConfigMapName("own", d.Hex)}}, fn)
	// And each carries the recommended labels of a function's objects (its pods too).
	for _, obj := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-latest"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-v1"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-invoke"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: codeConfigMapName("own", d.Hex)}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: NetworkPolicyName("own")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-latest"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-v1"}},
	} {
		getWithAppLabels(t, obj, functionAppLabels("own"))
	}

	// Deleting the Function releases its versions' finalizer (nothing can use them any more).
	if err := k8s.Delete(ctx, fn); err != nil {
		t.Fatal(err)
	}
	gone(t, fn)
	if err := k8s.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
	gone(t, v)
}

// A function created while its layer is still being published is Pending, then Active.
func TestFunctionWaitsPendingForALayerBeingPublished(t *testing.T) {
	ns := newNamespace(t)
	layer := makeZip(t, zf{name: "lib/x.so", body: "x"})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write(layer)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	lv := newLayer(ns, "slow", "", "")
	lv.Spec.Content = lambdav1alpha1.CodeSource{URL: srv.URL + "/layer.zip", SHA256: codeloader.DigestOf(layer).Hex}
	create(t, lv)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))
	create(t, zipFunction(ns, "waits", "code", "slow"))
	eventually(t, "Pending", func() string {
		f := getFunction(t, ns, "waits")
		if f.Status.State == lambdav1alpha1.StatePending && strings.Contains(f.Status.StateReason, "waiting for LayerVersion slow") {
			return ""
		}
		return fmt.Sprintf("%+v", f.Status)
	})
	close(release)
	fn := waitFunction(t, ns, "waits", isActive)
	if len(fn.Status.Layers) != 1 || fn.Status.Layers[0].Version != 1 {
		t.Errorf("layers %+v", fn.Status.Layers)
	}
}
