package controllers

import (
	"strings"
	"testing"

	"github.com/klambda/klambda/api/contract"

	corev1 "k8s.io/api/core/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

func embeddedConfig(t *testing.T) Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(`
shimImage: registry.test/runtime-shim:test
runtimeImages: {provided.al2023: registry.test/provided:al2023, nodejs20.x: registry.test/nodejs:20}
embeddedShim:
  provided.al2023: {path: /klambda/runtime-shim}
  nodejs20.x: {path: /klambda/runtime-shim}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func zipWorkload(runtime lambdav1alpha1.Runtime, handler string) *Workload {
	w := &Workload{Function: "fn", Qualifier: "$LATEST", InvokeSecret: "fn-invoke", CodeCopy: "fn-code-abc",
		CodeDigest: codeloader.DigestOf([]byte("code"))}
	w.Config.Runtime, w.Config.Handler, w.Config.MemorySize = runtime, handler, 128
	w.Config.Code.ConfigMapRef = &lambdav1alpha1.ConfigMapCodeSource{Name: "code"}
	w.Layers = []WorkloadLayer{{Content: lambdav1alpha1.CodeSource{URL: "http://layers.test/l.zip"}, Digest: codeloader.DigestOf([]byte("layer"))}}
	return w
}

func mountsOf(c corev1.Container) map[string]corev1.VolumeMount {
	m := map[string]corev1.VolumeMount{}
	for _, v := range c.VolumeMounts {
		m[v.MountPath] = v
	}
	return m
}

// A runtime whose image carries the shim runs in one container: the shim is its
// entrypoint, loads code and layers, and starts the custom runtime's bootstrap.
func TestEmbeddedShimIsOneContainer(t *testing.T) {
	w := zipWorkload("provided.al2023", "bootstrap")
	tpl, err := w.PodTemplate(embeddedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	pod := tpl.Spec
	if len(pod.InitContainers) != 0 || len(pod.Containers) != 1 {
		t.Fatalf("init containers %d, containers %d: want 0 and 1", len(pod.InitContainers), len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "registry.test/provided:al2023" || len(c.Command) != 1 || c.Command[0] != "/klambda/runtime-shim" {
		t.Fatalf("image %s command %v", c.Image, c.Command)
	}
	want := []string{"exec", "--listen=:9000", "--runtime-api=127.0.0.1:9001",
		"--task-root=/klambda/task", "--opt=/klambda/opt", "--scratch=/tmp",
		"--code=file:///klambda/sources/code/code.zip#sha256=" + w.CodeDigest.Hex,
		"--layer=http://layers.test/l.zip#sha256=" + w.Layers[0].Digest.Hex,
		"--", "/bin/sh", "-c"}
	if len(c.Args) != len(want)+1 || strings.Join(c.Args[:len(want)], " ") != strings.Join(want, " ") || !strings.Contains(c.Args[len(want)], "exec /var/task/bootstrap") {
		t.Fatalf("args %q", c.Args)
	}
	e := envOf(c)
	if e["KLAMBDA_INVOKE_SECRET"].ValueFrom == nil || e["KLAMBDA_INVOKE_SECRET"].ValueFrom.SecretKeyRef.Name != "fn-invoke" ||
		e["KLAMBDA_ACCOUNT_ID"].Value == "" || e["AWS_LAMBDA_RUNTIME_API"].Value != "127.0.0.1:9001" || e["_HANDLER"].Value != "bootstrap" {
		t.Errorf("env %+v", e)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9000 {
		t.Errorf("probes %+v %+v ports %+v", c.ReadinessProbe, c.LivenessProbe, c.Ports)
	}
	m := mountsOf(c)
	for path, ro := range map[string]bool{"/var/task": true, "/opt": true, "/klambda/task": false, "/klambda/opt": false, "/klambda/sources/code": true, "/tmp": false} {
		if v, ok := m[path]; !ok || v.ReadOnly != ro {
			t.Errorf("mount %s: %+v (present %v), want read-only %v", path, v, ok, ro)
		}
	}
	if m["/var/task"].Name != m["/klambda/task"].Name || m["/opt"].Name != m["/klambda/opt"].Name {
		t.Errorf("the shim unpacks into other folders than the function sees: %+v", m)
	}
	if got := c.Resources.Limits.Memory().Value(); got != 128<<20+embeddedShimMemory {
		t.Errorf("memory limit %d", got)
	}
	// Unpacking and init run with one vCPU; the pod says what the activator resizes it to:
	// Lambda's share (72m at 128 MB) plus the shim's allowance.
	if got := c.Resources.Limits.Cpu().MilliValue(); got != 1000 || tpl.Annotations[contract.AnnotationCPULimit] != "122m" {
		t.Errorf("cpu limit %dm, annotation %q", got, tpl.Annotations[contract.AnnotationCPULimit])
	}
	for _, v := range pod.Volumes {
		if v.Name == "scratch" || v.Name == "shim-tmp" {
			t.Errorf("volume %s is the sidecar shape's", v.Name)
		}
	}
}

// A managed runtime's image entrypoint is started by the shim with the handler.
func TestEmbeddedShimStartsTheImageEntrypoint(t *testing.T) {
	tpl, err := zipWorkload("nodejs20.x", "index.handler").PodTemplate(embeddedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	args := tpl.Spec.Containers[0].Args
	if n := len(args); n < 3 || strings.Join(args[n-3:], " ") != "-- /lambda-entrypoint.sh index.handler" {
		t.Fatalf("args %q", args)
	}
}

// S3 credentials never reach the function's container: that code is loaded by the
// load-code init container, and the shim loads nothing.
func TestEmbeddedShimLeavesCredentialsToTheInitContainer(t *testing.T) {
	w := zipWorkload("provided.al2023", "bootstrap")
	w.CodeCopy = ""
	w.Config.Code.ConfigMapRef = nil
	w.Config.Code.S3 = &lambdav1alpha1.S3Location{Bucket: "b", Key: "k", Endpoint: "http://minio.test", Credentials: &lambdav1alpha1.SecretReference{Name: "s3"}}
	tpl, err := w.PodTemplate(embeddedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	pod := tpl.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "load-code" || len(pod.Containers) != 1 {
		t.Fatalf("init containers %+v", pod.InitContainers)
	}
	if _, ok := envOf(pod.InitContainers[0])["KLAMBDA_CODE_AWS_SECRET_ACCESS_KEY"]; !ok {
		t.Errorf("loader env %+v", pod.InitContainers[0].Env)
	}
	c := pod.Containers[0]
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--code=") || strings.HasPrefix(a, "--layer=") {
			t.Errorf("the shim loads %s", a)
		}
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("the function's container has %s", e.Name)
		}
	}
	if m := mountsOf(c); m["/var/task"].Name != "task" || !m["/var/task"].ReadOnly {
		t.Errorf("mounts %+v", c.VolumeMounts)
	}
}

// Runtimes without an embedded shim, and Image functions, keep the sidecar shape.
func TestWithoutEmbeddedShimTheShimIsASidecar(t *testing.T) {
	cfg := embeddedConfig(t)
	cfg.RuntimeImages["python3.12"] = "registry.test/python:3.12"
	tpl, err := zipWorkload("python3.12", "app.handler").PodTemplate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ic := tpl.Spec.InitContainers; len(ic) != 2 || ic[0].Name != "load-code" || ic[1].Name != "runtime-shim" {
		t.Fatalf("init containers %+v", ic)
	}
	// The sidecar has a container of its own: the function's has Lambda's share alone.
	if got := tpl.Spec.Containers[0].Resources.Limits.Cpu().MilliValue(); got != cpuMillis(128) {
		t.Errorf("sidecar shape: function cpu limit %dm, want %dm", got, cpuMillis(128))
	}
	img := &Workload{Function: "img", Qualifier: "$LATEST", InvokeSecret: "img-invoke", ImageURI: "registry.test/app@sha256:" + strings.Repeat("a", 64)}
	img.Config.PackageType = lambdav1alpha1.PackageTypeImage
	tpl, err = img.PodTemplate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ic := tpl.Spec.InitContainers; len(ic) != 1 || ic[0].Name != "runtime-shim" {
		t.Fatalf("image function init containers %+v", ic)
	}
}

// initCPU 0: Lambda's share from the start, nothing to resize.
func TestEmbeddedShimWithoutInitCPU(t *testing.T) {
	cfg := embeddedConfig(t)
	cfg.initCPUMillis = 0
	tpl, err := zipWorkload("provided.al2023", "bootstrap").PodTemplate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := tpl.Spec.Containers[0].Resources.Limits.Cpu().MilliValue(); got != cpuMillis(128)+embeddedShimCPUMillis || got != 122 {
		t.Errorf("cpu limit %dm", got)
	}
	if _, ok := tpl.Annotations[contract.AnnotationCPULimit]; ok {
		t.Errorf("annotations %v", tpl.Annotations)
	}
	cfg, err = ParseConfig([]byte("initCPU: \"0\"\n"))
	if err != nil || cfg.initCPUMillis != 0 {
		t.Fatalf("initCPU 0: %v, %d", err, cfg.initCPUMillis)
	}
	if _, err := ParseConfig([]byte("initCPU: lots\n")); err == nil || !strings.Contains(err.Error(), "initCPU must be a CPU quantity") {
		t.Fatalf("bad initCPU: %v", err)
	}
}

func TestEmbeddedShimPathMustBeAbsolute(t *testing.T) {
	_, err := ParseConfig([]byte("embeddedShim: {provided.al2023: {path: klambda/runtime-shim}}\n"))
	if err == nil || !strings.Contains(err.Error(), "embeddedShim[provided.al2023].path must be an absolute path") {
		t.Fatalf("err = %v", err)
	}
}

// The code and layers folders are bounded on the node's disk (issue #15, finding 13): each
// emptyDir may hold what load-code lets the code and its layers unpack to, in both shapes.
func TestCodeFoldersHaveASizeLimit(t *testing.T) {
	cfg := embeddedConfig(t)
	cfg.RuntimeImages["python3.12"] = "registry.test/python:3.12"
	for _, rt := range []lambdav1alpha1.Runtime{"provided.al2023", "python3.12"} {
		tpl, err := zipWorkload(rt, "h").PodTemplate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, v := range tpl.Spec.Volumes {
			if v.Name != "task" && v.Name != "opt" {
				continue
			}
			seen++
			if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
				t.Errorf("%s: volume %s has no sizeLimit: %+v", rt, v.Name, v.VolumeSource)
				continue
			}
			if got, want := v.EmptyDir.SizeLimit.Value(), codeloader.UnpackedDiskBound(); got != want {
				t.Errorf("%s: volume %s sizeLimit %d, want %d", rt, v.Name, got, want)
			}
		}
		if seen != 2 {
			t.Errorf("%s: %d of the task and opt volumes", rt, seen)
		}
	}
	// Larger than what may be unpacked (blocks and folders take room), far below unbounded.
	if b := codeloader.UnpackedDiskBound(); b <= codeloader.MaxUnpackedSize || b > 1<<30 {
		t.Errorf("UnpackedDiskBound = %d", b)
	}
}

// Both pod shapes name the invoke Secret in contract.AnnotationInvokeSecret, where the
// activator reads it; the shim still gets the token through its variable.
func TestPodTemplateNamesTheInvokeSecret(t *testing.T) {
	cfg := embeddedConfig(t)
	cfg.RuntimeImages["python3.12"] = "registry.test/python:3.12"
	for _, w := range []*Workload{zipWorkload("provided.al2023", "bootstrap"), zipWorkload("python3.12", "app.handler")} {
		tpl, err := w.PodTemplate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := tpl.Annotations[contract.AnnotationInvokeSecret]; got != "fn-invoke" {
			t.Errorf("%s: annotation %s = %q, want fn-invoke", w.Config.Runtime, contract.AnnotationInvokeSecret, got)
		}
		found := false
		for _, c := range append(tpl.Spec.InitContainers, tpl.Spec.Containers...) {
			for _, e := range c.Env {
				if e.Name == contract.InvokeSecretEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef.Name == "fn-invoke" && e.ValueFrom.SecretKeyRef.Key == contract.InvokeSecretKey {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: no container has %s from Secret fn-invoke", w.Config.Runtime, contract.InvokeSecretEnv)
		}
	}
}
