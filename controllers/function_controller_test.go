package controllers

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func TestFunctionFromConfigMapBecomesActiveWithItsPod(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	code := makeZip(t, zf{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755})
	createZipConfigMap(t, ns, "code", code)
	fn := zipFunction(ns, "hello", "code")
	fn.Spec.MemorySize = 1769
	fn.Spec.Timeout = 30
	fn.Spec.EphemeralStorage = &lambdav1alpha1.EphemeralStorage{Size: 1024}
	fn.Spec.Architectures = []lambdav1alpha1.Architecture{lambdav1alpha1.ArchitectureArm64}
	fn.Spec.ServiceAccountName = "runner"
	if err := k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s"}, StringData: map[string]string{"k": "token"}}); err != nil {
		t.Fatal(err)
	}
	fn.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{
		{Name: "GREETING", Value: "cost $(HOME) $5"},
		{Name: "PATH", Value: "/custom/bin"},
		{Name: "TOKEN", ValueFrom: &lambdav1alpha1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}},
	}}
	create(t, fn)

	got := waitFunction(t, ns, "hello", isActive)
	d := codeloader.DigestOf(code)
	if got.Status.CodeSha256 != d.Base64 || got.Status.CodeSize != int64(len(code)) {
		t.Errorf("codeSha256/codeSize = %s/%d, want %s/%d", got.Status.CodeSha256, got.Status.CodeSize, d.Base64, len(code))
	}
	if got.Status.RevisionID == "" || got.Status.FunctionARN != "arn:aws:lambda:us-east-1:000000000000:function:hello" || got.Status.Version != "$LATEST" {
		t.Errorf("status = %+v", got.Status)
	}

	dep := getDeployment(t, ns, "hello-latest")
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
		t.Errorf("a new Deployment starts at 0 replicas, got %v", dep.Spec.Replicas)
	}
	if dep.Labels[contract.LabelFunction] != "hello" || dep.Labels[contract.LabelVersion] != "latest" || !metav1.IsControlledBy(dep, got) {
		t.Errorf("deployment labels/owner: %v %v", dep.Labels, dep.OwnerReferences)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.InitContainers) != 2 || pod.InitContainers[0].Name != "load-code" || pod.InitContainers[1].Name != "runtime-shim" {
		t.Fatalf("init containers: %+v", pod.InitContainers)
	}
	shim := pod.InitContainers[1]
	if shim.RestartPolicy == nil || *shim.RestartPolicy != corev1.ContainerRestartPolicyAlways || shim.ReadinessProbe.HTTPGet.Path != "/readyz" || shim.ReadinessProbe.HTTPGet.Port != intstr.FromInt32(9000) {
		t.Errorf("shim is not a native sidecar with /readyz: %+v", shim)
	}
	se := envOf(shim)
	if se["KLAMBDA_INVOKE_SECRET"].ValueFrom.SecretKeyRef.Name != "hello-invoke" || se["KLAMBDA_INVOKE_SECRET"].ValueFrom.SecretKeyRef.Key != contract.InvokeSecretKey {
		t.Errorf("shim secret env: %+v", se["KLAMBDA_INVOKE_SECRET"])
	}
	if se["AWS_LAMBDA_FUNCTION_TIMEOUT"].Value != "30" || se["AWS_LAMBDA_FUNCTION_VERSION"].Value != "$$LATEST" {
		t.Errorf("shim env: %+v", se)
	}
	loader := pod.InitContainers[0]
	if loader.Image != "registry.test/runtime-shim:test" || loader.Command[0] != "/runtime-shim" || loader.Args[0] != "load-code" {
		t.Errorf("loader: %+v", loader)
	}
	wantCode := "--code=file:///klambda/sources/code/code.zip#sha256=" + d.Hex
	if !contains(loader.Args, wantCode) {
		t.Errorf("loader args %v, want %s", loader.Args, wantCode)
	}
	c := pod.Containers[0]
	if c.Image != "public.ecr.aws/lambda/provided:al2023" {
		t.Errorf("image %s", c.Image)
	}
	e := envOf(c)
	for k, v := range map[string]string{
		"_HANDLER": "bootstrap", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "LAMBDA_TASK_ROOT": "/var/task",
		"LAMBDA_RUNTIME_DIR": "/var/runtime", "AWS_LAMBDA_FUNCTION_NAME": "hello", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
		"AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/hello", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
		"AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "TZ": ":UTC",
		"LANG": "en_US.UTF-8", "PATH": "/custom/bin", "GREETING": "cost $$(HOME) $$5",
	} {
		if e[k].Value != v {
			t.Errorf("env %s = %q, want %q", k, e[k].Value, v)
		}
	}
	if e["TOKEN"].ValueFrom == nil || e["TOKEN"].ValueFrom.SecretKeyRef.Name != "s" {
		t.Errorf("secret variable: %+v", e["TOKEN"])
	}
	if !strings.HasPrefix(e["AWS_LAMBDA_LOG_STREAM_NAME"].Value, "[$$LATEST]") || e["LD_LIBRARY_PATH"].Value == "" {
		t.Errorf("env: %+v", e)
	}
	if c.Resources.Limits.Memory().Value() != 1769<<20 || c.Resources.Limits.Cpu().MilliValue() != 1000 {
		t.Errorf("resources: %+v", c.Resources)
	}
	sc := c.SecurityContext
	if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" || !*sc.RunAsNonRoot {
		t.Errorf("security context: %+v", sc)
	}
	if pod.ShareProcessNamespace == nil || !*pod.ShareProcessNamespace || pod.ServiceAccountName != "runner" || pod.NodeSelector["kubernetes.io/arch"] != "arm64" {
		t.Errorf("pod: share=%v sa=%s nodeSelector=%v", pod.ShareProcessNamespace, pod.ServiceAccountName, pod.NodeSelector)
	}
	for _, v := range pod.Volumes {
		if v.Name == "tmp" && v.EmptyDir.SizeLimit.Value() != 1024<<20 {
			t.Errorf("/tmp size %v", v.EmptyDir.SizeLimit)
		}
		if v.Name == "src-code" && v.ConfigMap.Name != codeConfigMapName("hello", d.Hex) {
			t.Errorf("code volume %+v", v)
		}
	}

	var svc corev1.Service
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-latest"}, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[contract.LabelVersion] != "latest" || !metav1.IsControlledBy(&svc, got) {
		t.Errorf("service %+v", svc.Spec)
	}
	var sec corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hello-invoke"}, &sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.Data[contract.InvokeSecretKey]) != 64 || !metav1.IsControlledBy(&sec, got) {
		t.Errorf("secret: %v %v", sec.Data, sec.OwnerReferences)
	}
	var cp corev1.ConfigMap
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: codeConfigMapName("hello", d.Hex)}, &cp); err != nil {
		t.Fatal(err)
	}
	if cp.Immutable == nil || !*cp.Immutable || len(cp.OwnerReferences) != 1 || cp.OwnerReferences[0].UID != got.UID {
		t.Errorf("code copy: %+v", cp.ObjectMeta)
	}
	// Events for the transitions.
	eventually(t, "events", func() string {
		var evs eventsv1.EventList
		k8s.List(ctx, &evs, client.InNamespace(ns))
		reasons := map[string]bool{}
		for _, ev := range evs.Items {
			reasons[ev.Reason] = true
		}
		if reasons["Creating"] && reasons["Active"] {
			return ""
		}
		return "missing Creating/Active events"
	})
	// Deleting the function: no finalizer holds it; everything it made is owned by it.
	if len(got.Finalizers) != 0 {
		t.Errorf("finalizers on the Function: %v", got.Finalizers)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestFunctionMissingConfigMapFailsThenRecovers(t *testing.T) {
	ns := newNamespace(t)
	create(t, zipFunction(ns, "nocode", "absent"))
	fn := waitFunction(t, ns, "nocode", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if fn.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidConfiguration || !strings.Contains(fn.Status.StateReason, "ConfigMap absent not found") {
		t.Errorf("status %+v", fn.Status)
	}
	var dep appsv1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "nocode-latest"}, &dep); err == nil {
		t.Error("a failed function has a Deployment")
	}
	createZipConfigMap(t, ns, "absent", makeZip(t, zf{name: "bootstrap", body: "x"}))
	waitFunction(t, ns, "nocode", isActive)
}

func TestFunctionRejectsUnsafeArchives(t *testing.T) {
	ns := newNamespace(t)
	cases := map[string][]zf{
		"slip":    {{name: "../../../etc/cron.d/x", body: "x"}},
		"symlink": {{name: "bootstrap", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}},
	}
	for name, files := range cases {
		createZipConfigMap(t, ns, name, makeZip(t, files...))
		create(t, zipFunction(ns, name, name))
	}
	for name := range cases {
		fn := waitFunction(t, ns, name, func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
		if fn.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidConfiguration || !strings.Contains(fn.Status.StateReason, "unsafe archive") {
			t.Errorf("%s: %s %s", name, fn.Status.StateReasonCode, fn.Status.StateReason)
		}
	}
}

func TestFunctionFromURLChecksDigest(t *testing.T) {
	ns := newNamespace(t)
	code := makeZip(t, zf{name: "index.py", body: "def handler(e, c): return 1"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(code) }))
	defer srv.Close()
	d := codeloader.DigestOf(code)
	mk := func(name, sha string) *lambdav1alpha1.Function {
		fn := zipFunction(ns, name, "")
		fn.Spec.Runtime, fn.Spec.Handler = "python3.12", "index.handler"
		fn.Spec.Code.CodeSource = lambdav1alpha1.CodeSource{URL: srv.URL + "/fn.zip", SHA256: sha}
		return fn
	}
	create(t, mk("good", d.Hex))
	create(t, mk("bad", strings.Repeat("ab", 32)))
	good := waitFunction(t, ns, "good", isActive)
	if good.Status.CodeSha256 != d.Base64 {
		t.Errorf("codeSha256 %s", good.Status.CodeSha256)
	}
	dep := getDeployment(t, ns, "good-latest")
	if !contains(dep.Spec.Template.Spec.InitContainers[0].Args, "--code="+srv.URL+"/fn.zip#sha256="+d.Hex) {
		t.Errorf("loader args %v", dep.Spec.Template.Spec.InitContainers[0].Args)
	}
	if c := dep.Spec.Template.Spec.Containers[0]; c.Image != "public.ecr.aws/lambda/python:3.12" || c.Args[0] != "index.handler" {
		t.Errorf("python container %s %v", c.Image, c.Args)
	}
	bad := waitFunction(t, ns, "bad", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if !strings.Contains(bad.Status.StateReason, "SHA-256") {
		t.Errorf("bad digest reason: %s", bad.Status.StateReason)
	}
}

func TestImageFunctionPinsDigestAndMapsImageConfig(t *testing.T) {
	ns := newNamespace(t)
	digest := "sha256:" + strings.Repeat("1f", 32)
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "img", Namespace: ns}, Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
		PackageType: lambdav1alpha1.PackageTypeImage,
		Code:        lambdav1alpha1.FunctionCode{ImageURI: "registry.test/team/fn:v1@" + digest},
		ImageConfig: &lambdav1alpha1.ImageConfig{EntryPoint: []string{"/app/main"}, Command: []string{"handler"}, WorkingDirectory: "/app"},
	}}}
	create(t, fn)
	got := waitFunction(t, ns, "img", isActive)
	if got.Status.ResolvedImageURI != "registry.test/team/fn:v1@"+digest || got.Status.CodeSha256 == "" {
		t.Errorf("status %+v", got.Status)
	}
	pod := getDeployment(t, ns, "img-latest").Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != got.Status.ResolvedImageURI || c.Command[0] != "/app/main" || c.Args[0] != "handler" || c.WorkingDir != "/app" {
		t.Errorf("container %+v", c)
	}
	if len(pod.InitContainers) != 1 || envOf(c)["AWS_EXECUTION_ENV"].Value != "AWS_Lambda_Image" {
		t.Errorf("an image has no loader: %+v", pod.InitContainers)
	}

	bad := fn.DeepCopy()
	bad.ObjectMeta = metav1.ObjectMeta{Name: "badimg", Namespace: ns}
	bad.Spec.Code.ImageURI = "Registry.test/UPPER:tag"
	create(t, bad)
	f := waitFunction(t, ns, "badimg", func(f *lambdav1alpha1.Function) bool { return f.Status.State == lambdav1alpha1.StateFailed })
	if f.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidImage {
		t.Errorf("bad image: %+v", f.Status)
	}
}

// The activator owns spec.replicas: reconciles never reset it, updates roll out while the
// old pods serve (InProgress), and a failed update leaves the last good template in place.
func TestUpdatesKeepReplicasAndLastGoodDeployment(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "v1"}))
	fn0 := zipFunction(ns, "upd", "code")
	fn0.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{{Name: "DROPME", Value: "1"}}}
	create(t, fn0)
	waitFunction(t, ns, "upd", isActive)
	for _, mf := range getDeployment(t, ns, "upd-latest").ManagedFields {
		if mf.Manager == contract.ScalerFieldManager && (!strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) || strings.Contains(string(mf.FieldsV1.Raw), `"f:template"`)) {
			t.Errorf("%s must own spec.replicas only: %s", contract.ScalerFieldManager, mf.FieldsV1.Raw)
		}
	}

	// The activator scales to 3 with its own field manager.
	ac := appsv1ac.Deployment("upd-latest", ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(3))
	if err := k8s.Apply(ctx, ac, client.FieldOwner("klambda-activator"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	updateFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 256; f.Spec.Environment = nil })
	fn := waitFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateInProgress
	})
	if fn.Status.State != lambdav1alpha1.StateActive {
		t.Errorf("state during an update: %s", fn.Status.State)
	}
	// The new code runs in a new revision's Deployment, born with the serving one's 3.
	dep := revisionWith(t, ns, "upd", memoryIs(256))
	if *dep.Spec.Replicas != 3 {
		t.Fatalf("replicas = %d after a reconcile, want the activator's 3", *dep.Spec.Replicas)
	}
	if serving := getDeployment(t, ns, "upd-latest"); *serving.Spec.Replicas != 3 || !memoryIs(128)(serving) {
		t.Errorf("the serving revision changed during the update")
	}
	if dep.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().Value() != 256<<20 {
		t.Errorf("template not updated")
	}
	if _, ok := envOf(dep.Spec.Template.Spec.Containers[0])["DROPME"]; ok {
		t.Errorf("a variable removed from the function is still in the Deployment")
	}
	if dep.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("old pods must keep serving during a rollout: %+v", dep.Spec.Strategy)
	}
	for _, mf := range dep.ManagedFields {
		if mf.Manager == contract.FieldManager && strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("%s owns spec.replicas: %s", contract.FieldManager, mf.FieldsV1.Raw)
		}
	}

	// Another update while InProgress: the newest spec is applied; still InProgress.
	updateFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) { f.Spec.Timeout = 9 })
	waitFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateInProgress
	})
	timeout9 := func(d *appsv1.Deployment) bool {
		return envOf(d.Spec.Template.Spec.InitContainers[1])["AWS_LAMBDA_FUNCTION_TIMEOUT"].Value == "9"
	}
	dep = revisionWith(t, ns, "upd", timeout9)
	goodAnnotation := dep.Spec.Template.Annotations[contract.AnnotationCodeSha256]

	// The rollout finishes (envtest has no deployment controller: play its part).
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	if err := k8s.Status().Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	if fn := waitFunction(t, ns, "upd", isActive); fn.Status.ServingDeployment != dep.Name {
		t.Fatalf("serving %s, want the newest revision %s", fn.Status.ServingDeployment, dep.Name)
	}

	// A failed update (the new code is missing) keeps the last good Deployment spec.
	updateFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) { f.Spec.Code.ConfigMapRef.Name = "gone" })
	fn = waitFunction(t, ns, "upd", func(f *lambdav1alpha1.Function) bool {
		return f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed
	})
	if fn.Status.State != lambdav1alpha1.StateActive || !strings.Contains(fn.Status.LastUpdateStatusReason, "gone") {
		t.Errorf("after a failed update: %+v", fn.Status)
	}
	dep = getDeployment(t, ns, fn.Status.ServingDeployment)
	if !timeout9(dep) || dep.Spec.Template.Annotations[contract.AnnotationCodeSha256] != goodAnnotation || *dep.Spec.Replicas != 3 {
		t.Errorf("the failed update touched the Deployment")
	}
}

func TestFunctionNamesAreShortenedForServices(t *testing.T) {
	ns := newNamespace(t)
	long := "a" + strings.Repeat("b", 62) // 63 characters: -latest makes it too long
	createZipConfigMap(t, ns, "code", makeZip(t, zf{name: "bootstrap", body: "x"}))
	create(t, zipFunction(ns, long, "code"))
	waitFunction(t, ns, long, isActive)
	name := WorkloadName(long, contract.Latest)
	if len(name) > 63 {
		t.Fatalf("name %s too long", name)
	}
	getDeployment(t, ns, name)
	var svc corev1.Service
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		t.Fatal(err)
	}
	if WorkloadName("9lives", "12") != "fn-9lives-v12-"+hash8("9lives-v12") {
		t.Errorf("digit-first name: %s", WorkloadName("9lives", "12"))
	}
}

func TestFunctionFromS3WithCredentialsSecret(t *testing.T) {
	ns := newNamespace(t)
	code := makeZip(t, zf{name: "bootstrap", body: "s3"})
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bucket/fn.zip" {
			http.Error(w, "NoSuchKey", http.StatusNotFound)
			return
		}
		auth = r.Header.Get("Authorization")
		w.Write(code)
	}))
	defer srv.Close()
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3creds", Namespace: ns}, Data: map[string][]byte{
		"AWS_ACCESS_KEY_ID": []byte("AKIDTEST"), "AWS_SECRET_ACCESS_KEY": []byte("shh")}})
	fn := zipFunction(ns, "froms3", "")
	fn.Spec.Code.CodeSource = lambdav1alpha1.CodeSource{S3: &lambdav1alpha1.S3Location{Endpoint: srv.URL, Bucket: "bucket", Key: "fn.zip", Credentials: &lambdav1alpha1.SecretReference{Name: "s3creds"}}}
	create(t, fn)
	got := waitFunction(t, ns, "froms3", isActive)
	if got.Status.CodeSha256 != codeloader.DigestOf(code).Base64 || !strings.Contains(auth, "AKIDTEST") {
		t.Errorf("codeSha256 %s, auth %q", got.Status.CodeSha256, auth)
	}
	loader := getDeployment(t, ns, "froms3-latest").Spec.Template.Spec.InitContainers[0]
	e := envOf(loader)
	if r := e["KLAMBDA_CODE_AWS_ACCESS_KEY_ID"].ValueFrom; r == nil || r.SecretKeyRef.Name != "s3creds" || r.SecretKeyRef.Key != "AWS_ACCESS_KEY_ID" {
		t.Errorf("loader env %+v", loader.Env)
	}
	want := "--code=s3://bucket/fn.zip?credentials=KLAMBDA_CODE&endpoint=" + strings.ReplaceAll(strings.ReplaceAll(srv.URL, ":", "%3A"), "/", "%2F") + "#sha256=" + codeloader.DigestOf(code).Hex
	if !contains(loader.Args, want) {
		t.Errorf("loader args %v, want %s", loader.Args, want)
	}
}

// Changing the ConfigMap's content is a code update: new digest and revision, a new copy,
// and the copy nothing runs any more is deleted.
func TestConfigMapChangeIsACodeUpdate(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	v1 := makeZip(t, zf{name: "bootstrap", body: "one"})
	createZipConfigMap(t, ns, "code", v1)
	create(t, zipFunction(ns, "cmupd", "code"))
	before := waitFunction(t, ns, "cmupd", isActive)
	v2 := makeZip(t, zf{name: "bootstrap", body: "two"})
	updateObject(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "code", Namespace: ns}}, func(cm *corev1.ConfigMap) { cm.BinaryData["code.zip"] = v2 })
	after := waitFunction(t, ns, "cmupd", func(f *lambdav1alpha1.Function) bool {
		return isActive(f) && f.Status.CodeSha256 == codeloader.DigestOf(v2).Base64
	})
	if after.Status.RevisionID == before.Status.RevisionID {
		t.Error("revisionId did not change with the code")
	}
	if a := getDeployment(t, ns, after.Status.ServingDeployment).Spec.Template.Annotations[contract.AnnotationCodeSha256]; a != after.Status.CodeSha256 {
		t.Errorf("template runs %s", a)
	}
	eventually(t, "old copy deleted", func() string {
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: codeConfigMapName("cmupd", codeloader.DigestOf(v1).Hex)}, &cm); err == nil {
			return "old copy still there"
		}
		return ""
	})
}

// A ConfigMap without key: each of its keys is a file at the top of the package (a
// deterministic zip of them is the package klambda digests and copies).
func TestFunctionFromConfigMapFiles(t *testing.T) {
	ns := newNamespace(t)
	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns},
		Data: map[string]string{"bootstrap": "#!/bin/sh\nexec /opt/bootstrap\n", "config.json": "{}"}})
	fn := zipFunction(ns, "files", "files")
	fn.Spec.Code.ConfigMapRef.Key = ""
	create(t, fn)
	got := waitFunction(t, ns, "files", isActive)
	want, err := codeloader.ZipFiles(map[string][]byte{"bootstrap": []byte("#!/bin/sh\nexec /opt/bootstrap\n"), "config.json": []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if d := codeloader.DigestOf(want); got.Status.CodeSha256 != d.Base64 || got.Status.CodeSize != d.Size {
		t.Errorf("codeSha256 %s/%d, want %s/%d", got.Status.CodeSha256, got.Status.CodeSize, d.Base64, d.Size)
	}
}
