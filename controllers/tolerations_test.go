package controllers

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// The configuration's tolerations go to the pods of their architecture's functions and
// pools, and only to those.
func TestTolerationsFollowTheArchitecture(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
shimImage: registry.test/runtime-shim:test
runtimeImages: {provided.al2023: registry.test/provided:al2023}
embeddedShim: {provided.al2023: {path: /klambda/runtime-shim}}
pools: [{runtime: provided.al2023, architecture: arm64, size: 1}]
tolerations:
  arm64:
    - {key: kubernetes.io/arch, operator: Equal, value: arm64, effect: NoSchedule}
    - {key: pool.example/spot, operator: Exists}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []corev1.Toleration{
		{Key: "kubernetes.io/arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoSchedule},
		{Key: "pool.example/spot", Operator: corev1.TolerationOpExists},
	}
	arm := zipWorkload("provided.al2023", "bootstrap")
	arm.Config.Architectures = []lambdav1alpha1.Architecture{lambdav1alpha1.ArchitectureArm64}
	tpl, err := arm.PodTemplate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tpl.Spec.Tolerations, want) || tpl.Spec.NodeSelector[corev1.LabelArchStable] != "arm64" {
		t.Fatalf("arm64 function pod: tolerations %+v, node selector %v", tpl.Spec.Tolerations, tpl.Spec.NodeSelector)
	}
	x86 := zipWorkload("provided.al2023", "bootstrap")
	if tpl, err = x86.PodTemplate(cfg); err != nil {
		t.Fatal(err)
	}
	if len(tpl.Spec.Tolerations) != 0 || tpl.Spec.NodeSelector[corev1.LabelArchStable] != "amd64" {
		t.Fatalf("x86_64 function pod: tolerations %+v, node selector %v", tpl.Spec.Tolerations, tpl.Spec.NodeSelector)
	}
	pool, err := PoolPodTemplate(cfg, contract.PoolKey{Runtime: "provided.al2023", Architecture: "arm64", MemoryMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pool.Spec.Tolerations, want) {
		t.Fatalf("arm64 pool pod: tolerations %+v", pool.Spec.Tolerations)
	}
	// The pod's list is its own: changing it leaves the configuration alone.
	tpl, _ = arm.PodTemplate(cfg)
	tpl.Spec.Tolerations[0].Value = "changed"
	if cfg.Tolerations["arm64"][0].Value != "arm64" {
		t.Fatal("a pod template shares the configuration's tolerations")
	}
}

// A toleration the API server would refuse in a pod is refused when the configuration is
// read, naming the entry.
func TestParseConfigRefusesBadTolerations(t *testing.T) {
	for body, want := range map[string]string{
		`{amd64: [{key: a, operator: Exists}]}`:                                           `"amd64" is not an architecture`,
		`{arm64: [{key: "bad key", operator: Exists}]}`:                                   `tolerations.arm64[0].key "bad key"`,
		`{arm64: [{operator: Equal, value: x}]}`:                                          `tolerations.arm64[0]: an empty key needs operator Exists`,
		`{arm64: [{key: a, operator: Exists, value: x}]}`:                                 `operator Exists takes no value`,
		`{arm64: [{key: a, operator: In, value: x}]}`:                                     `tolerations.arm64[0].operator "In"`,
		`{x86_64: [{key: a}, {key: b, value: "not a label value!"}]}`:                     `tolerations.x86_64[1].value`,
		`{arm64: [{key: a, operator: Exists, effect: Never}]}`:                            `tolerations.arm64[0].effect "Never"`,
		`{arm64: [{key: a, operator: Exists, effect: NoSchedule, tolerationSeconds: 5}]}`: `tolerationSeconds is for effect NoExecute only`,
		`{arm64: [{key: a, operator: Exists, tolerate: yes}]}`:                            `unknown field`,
	} {
		_, err := ParseConfig([]byte("tolerations: " + body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("tolerations: %s: error %v, want one containing %q", body, err, want)
		}
	}
	// What the API server takes: an empty key with Exists, effect NoExecute with seconds.
	if _, err := ParseConfig([]byte(`tolerations: {arm64: [{operator: Exists}, {key: a, value: b, effect: NoExecute, tolerationSeconds: 30}]}`)); err != nil {
		t.Fatal(err)
	}
}
