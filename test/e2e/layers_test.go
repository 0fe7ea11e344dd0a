//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestZipFromConfigMapWithLayer: the code is a ConfigMap whose `bootstrap` (unpacked into
// /var/task by load-code) execs /opt/bootstrap, which only a layer (unpacked into /opt)
// provides: an answer proves both landed where Lambda puts them, in a pod run by the kubelet.
func TestZipFromConfigMapWithLayer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (the layer is served from its node)")
	}
	ns := cluster.Namespace(t)
	layerZip, err := BuildGoExample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url, sha, err := cluster.ServeCode(ns+"-layer.zip", layerZip)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &lambdav1alpha1.LayerVersion{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-bin-1"},
		Spec:       lambdav1alpha1.LayerVersionSpec{LayerName: "hello-bin", Content: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "code"},
		Data:       map[string]string{"bootstrap": "#!/bin/sh\nexec /opt/bootstrap \"$@\"\n"},
	}); err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "layered"},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023",
			Handler: "bootstrap",
			Timeout: 10,
			Code:    lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "code"}}},
			Layers:  []string{"hello-bin:1"},
		}},
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	got, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Layers) != 1 || got.Status.Layers[0].Version != 1 {
		t.Fatalf("status.layers = %+v", got.Status.Layers)
	}
	if err := cluster.ScaleFunction(ctx, ns, fn.Name, VersionLatest, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.WaitForReadyPod(ctx, ns, fn.Name, VersionLatest, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cluster.InvokePod(ctx, pod, []byte(`{"name":"layers"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Message string `json:"message"`
	}
	if res.Status != 200 || json.Unmarshal(res.Body, &body) != nil || body.Message != "Hello, layers!" {
		t.Fatalf("invoke: HTTP %d %s", res.Status, res.Body)
	}
}
