package controllers

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

func poolConfig(t *testing.T, pools string) Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(`
shimImage: registry.test/runtime-shim:test
runtimeImages: {provided.al2023: registry.test/provided:al2023}
embeddedShim:
  provided.al2023: {path: /klambda/runtime-shim}
pools:
` + pools))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// urlWorkload is a function a pool can serve: code by URL, 128 MB, a literal and a Secret
// variable.
func urlWorkload() *Workload {
	w := &Workload{Function: "fn", Qualifier: "$LATEST", InvokeSecret: "fn-invoke", CodeDigest: codeloader.DigestOf([]byte("code"))}
	w.Config.Runtime, w.Config.Handler, w.Config.MemorySize = "provided.al2023", "bootstrap", 128
	w.Config.Code.URL = "https://code.test/fn.zip"
	w.Config.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{
		{Name: "GREETING", Value: "hello $(HOME) $$"},
		{Name: "PASSWORD", ValueFrom: &lambdav1alpha1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
	}}
	return w
}

func deploymentAnnotations(t *testing.T, cfg Config, w *Workload) map[string]string {
	t.Helper()
	d, err := w.Deployment(cfg, "ns")
	if err != nil {
		t.Fatal(err)
	}
	return d.Annotations
}

// A function whose pod differs from a generic pod only in its command, variables and code
// source gets a specialization template that reproduces exactly that pod's container.
func TestSpecializationTemplateReproducesThePod(t *testing.T) {
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 2}")
	w := urlWorkload()
	ann := deploymentAnnotations(t, cfg, w)
	if r := ann[contract.AnnotationPoolIneligible]; r != "" {
		t.Fatalf("ineligible: %s", r)
	}
	var st contract.SpecializationTemplate
	if err := json.Unmarshal([]byte(ann[contract.AnnotationSpecialization]), &st); err != nil {
		t.Fatalf("template %q: %v", ann[contract.AnnotationSpecialization], err)
	}
	if st.Pool != (contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}) || st.InvokeSecretName != "fn-invoke" {
		t.Fatalf("pool %v secret %q", st.Pool, st.InvokeSecretName)
	}
	tpl, _ := w.PodTemplate(cfg)
	fn := tpl.Spec.Containers[0]
	if got, want := strings.Join(st.Command, " "), strings.Join(fn.Args[len(fn.Args)-len(st.Command):], " "); got != want || !strings.Contains(got, "/var/task/bootstrap") {
		t.Fatalf("command %q, the pod runs %q", got, want)
	}
	if !strings.HasPrefix(st.Code, "https://code.test/fn.zip#sha256=") || len(st.Layers) != 0 {
		t.Fatalf("code %q layers %v", st.Code, st.Layers)
	}
	// Every variable of the pod's container but the invoke secret, in order, as written.
	var want []string
	for _, v := range fn.Env {
		if v.Name != contract.InvokeSecretEnv {
			want = append(want, v.Name)
		}
	}
	var got []string
	byName := map[string]contract.TemplateEnvVar{}
	for _, v := range st.Env {
		got = append(got, v.Name)
		byName[v.Name] = v
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("variables %v, pod %v", got, want)
	}
	if v := byName["PASSWORD"]; v.SecretKeyRef == nil || v.SecretKeyRef.Name != "db" || v.SecretKeyRef.Key != "password" {
		t.Fatalf("PASSWORD %+v", v)
	}
	if v := byName["GREETING"]; v.Value != "hello $$(HOME) $$$$" {
		t.Fatalf("GREETING %+v (want the pod spec's escaped form)", v)
	}
	if !byName["KLAMBDA_POD_UID"].PodUID || byName["AWS_LAMBDA_LOG_STREAM_NAME"].Value != "[$$LATEST]$(KLAMBDA_POD_UID)" {
		t.Fatalf("pod uid %+v, stream %+v", byName["KLAMBDA_POD_UID"], byName["AWS_LAMBDA_LOG_STREAM_NAME"])
	}
}

// What a generic pod cannot take on once it runs sends a function to today's path, with
// the reason on its Deployment.
func TestPoolIneligibleFunctions(t *testing.T) {
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	for name, tc := range map[string]struct {
		edit   func(w *Workload)
		reason string
	}{
		"serviceAccountName": {func(w *Workload) { w.Config.ServiceAccountName = "reader" }, "serviceAccountName"},
		"fileSystemConfigs": {func(w *Workload) {
			w.Config.FileSystemConfigs = []lambdav1alpha1.FileSystemConfig{{ClaimName: "data", LocalMountPath: "/mnt/data"}}
		}, "fileSystemConfigs"},
		"ConfigMap code": {func(w *Workload) { w.Config.Code.URL = ""; w.CodeCopy = "fn-code-abc" }, "ConfigMap"},
		"S3 credentials": {func(w *Workload) {
			w.Config.Code.URL = ""
			w.Config.Code.S3 = &lambdav1alpha1.S3Location{Bucket: "b", Key: "k", Credentials: &lambdav1alpha1.SecretReference{Name: "s3"}}
		}, "init container"},
		"ephemeralStorage": {func(w *Workload) { w.Config.EphemeralStorage = &lambdav1alpha1.EphemeralStorage{Size: 1024} }, "ephemeralStorage"},
	} {
		w := urlWorkload()
		tc.edit(w)
		ann := deploymentAnnotations(t, cfg, w)
		if ann[contract.AnnotationSpecialization] != "" || !strings.Contains(ann[contract.AnnotationPoolIneligible], tc.reason) {
			t.Errorf("%s: annotations %v, want a reason naming %q", name, ann, tc.reason)
		}
	}
	// No pool of the function's memory size or architecture: nothing is said at all.
	for name, edit := range map[string]func(w *Workload){
		"memory": func(w *Workload) { w.Config.MemorySize = 256 },
		"architecture": func(w *Workload) {
			w.Config.Architectures = []lambdav1alpha1.Architecture{lambdav1alpha1.ArchitectureArm64}
		},
		"image": func(w *Workload) {
			w.Config.PackageType, w.ImageURI = lambdav1alpha1.PackageTypeImage, "registry.test/fn@sha256:"+strings.Repeat("a", 64)
		},
	} {
		w := urlWorkload()
		edit(w)
		ann := deploymentAnnotations(t, cfg, w)
		if ann[contract.AnnotationSpecialization] != "" || ann[contract.AnnotationPoolIneligible] != "" {
			t.Errorf("%s: %v", name, ann)
		}
	}
	// Size 0 is no pool.
	if ann := deploymentAnnotations(t, poolConfig(t, "- {runtime: provided.al2023, size: 0}"), urlWorkload()); ann[contract.AnnotationSpecialization] != "" {
		t.Errorf("size 0: %v", ann)
	}
}

// The generic pod has the function pod's shape and nothing of a function.
func TestPoolPodTemplateIsGeneric(t *testing.T) {
	cfg := poolConfig(t, "- {runtime: provided.al2023, size: 1}")
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	tpl, err := PoolPodTemplate(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	c := tpl.Spec.Containers[0]
	if c.Args[0] != "generic" || c.Command[0] != "/klambda/runtime-shim" || c.Image != "registry.test/provided:al2023" {
		t.Fatalf("container %v %v %s", c.Command, c.Args, c.Image)
	}
	if len(c.Env) != 1 || c.Env[0].Name != contract.PoolSecretEnv || c.Env[0].ValueFrom.SecretKeyRef.Name != contract.PoolSecretName {
		t.Fatalf("env %v", c.Env)
	}
	if tpl.Spec.ServiceAccountName != "" || len(tpl.Spec.InitContainers) != 0 {
		t.Fatalf("service account %q, init containers %d", tpl.Spec.ServiceAccountName, len(tpl.Spec.InitContainers))
	}
	if tpl.Labels[contract.LabelPool] != key.LabelValue() || tpl.Labels[contract.LabelPoolEnvironment] != "true" || tpl.Labels[contract.LabelFunction] != "" || tpl.Annotations[contract.AnnotationInvokeSecret] != contract.PoolSecretName {
		t.Fatalf("labels %v annotations %v", tpl.Labels, tpl.Annotations)
	}
	if got := c.Resources.Limits.Memory().Value(); got != 128<<20+embeddedShimMemory {
		t.Fatalf("memory limit %d", got)
	}
}

func TestPoolConfigValidation(t *testing.T) {
	for pools, want := range map[string]string{
		"- {runtime: nodejs22.x, size: 1}":                           "not in embeddedShim",
		"- {runtime: provided.al2023, size: 21}":                     "size must be between 0 and 20",
		"- {runtime: provided.al2023, size: 1, memorySize: 64}":      "memorySize",
		"- {runtime: provided.al2023, size: 1, architecture: sparc}": "architecture",
		"- {size: 1}": "runtime is required",
		"- {runtime: provided.al2023, size: 1}\n- {runtime: provided.al2023, size: 2, memorySize: 128}": "listed twice",
		"- {runtime: provided.al2023, size: 1, extra: 1}":                                               "unknown field",
	} {
		_, err := ParseConfig([]byte("embeddedShim: {provided.al2023: {path: /klambda/runtime-shim}}\npools:\n" + pools))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", pools, err, want)
		}
	}
}

// The configuration file takes pools (the activator serves cold starts from them) with
// their defaults filled in.
func TestLoadConfigTakesPools(t *testing.T) {
	p := t.TempDir() + "/config.yaml"
	data := "embeddedShim: {provided.al2023: {path: /klambda/runtime-shim}}\npools:\n- {runtime: provided.al2023, size: 2}\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pools) != 1 || c.Pools[0].Architecture != "x86_64" || c.Pools[0].MemorySize != 128 || c.Pools[0].Size != 2 {
		t.Fatalf("pools %+v", c.Pools)
	}
}
