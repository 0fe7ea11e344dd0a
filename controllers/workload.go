package controllers

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

// runtimeAPIAddr is where the runtime-shim serves the Runtime API to the function (its
// invoke port is contract.ShimPort).
const runtimeAPIAddr = "127.0.0.1:9001"

// Workload is everything a version's pods are built from: the frozen (or $LATEST)
// configuration and the resolved code and layers.
type Workload struct {
	Function  string
	Qualifier string // $LATEST or a version number
	Config    lambdav1alpha1.FunctionConfiguration
	// Code: the pinned image (Image) or the zip and, for ConfigMap code, its copy (Zip).
	ImageURI string
	// DerivedImageURI: the Image function's one-container image (imagefunctions.go);
	// empty: the sidecar shape.
	DerivedImageURI string
	CodeDigest      Digest
	CodeCopy        string
	// CodeStoreRef: the code is in the code store (pods read it there, by CodeDigest).
	CodeStoreRef string
	Layers       []WorkloadLayer
	// InvokeSecret is the per-function Secret's name.
	InvokeSecret string
}

// WorkloadLayer is a resolved layer as the loader gets it.
type WorkloadLayer struct {
	Content lambdav1alpha1.CodeSource
	Digest  Digest
	Copy    string // immutable ConfigMap copy (owned by the LayerVersion)
	// StoreRef: the content is in the code store (pods read it there, by Digest).
	StoreRef string
}

// loaderSource is the load-code argument for a zip plus what the init container needs to
// reach it: a volume (ConfigMap copy) or credentials (S3). Content in the code store is
// read there, and only there (storeRef set and the manager runs with a code store).
func loaderSource(cfg Config, src lambdav1alpha1.CodeSource, d Digest, copyName, storeRef, slot string) (codeloader.Source, []corev1.Volume, []corev1.VolumeMount, []corev1.EnvVar) {
	switch {
	case storeRef != "" && cfg.CodeStore.ReadRepository != "":
		loc := cfg.codeStoreReadLocation()
		return codeloader.Source{Scheme: "oci", Registry: loc.Registry, Repository: loc.Repository, PlainHTTP: loc.PlainHTTP, SHA256: d.Hex}, nil, nil, nil
	case copyName != "":
		vol := "src-" + slot
		dir := sourcesRoot + "/" + slot
		return codeloader.Source{Scheme: "file", Path: dir + "/" + codeZipKey, SHA256: d.Hex},
			[]corev1.Volume{{Name: vol, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: copyName}}}}},
			[]corev1.VolumeMount{{Name: vol, MountPath: dir, ReadOnly: true}}, nil
	case src.URL != "":
		s := codeloader.Source{Scheme: "https", URL: src.URL, SHA256: d.Hex}
		if strings.HasPrefix(src.URL, "http://") {
			s.Scheme = "http"
		}
		return s, nil, nil, nil
	case src.S3 != nil:
		prefix := ""
		var env []corev1.EnvVar
		if src.S3.Credentials != nil {
			prefix = "KLAMBDA_" + strings.ToUpper(strings.ReplaceAll(slot, "-", "_"))
			opt := true
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
				ref := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: src.S3.Credentials.Name}, Key: k}
				if k == "AWS_SESSION_TOKEN" {
					ref.Optional = &opt
				}
				env = append(env, corev1.EnvVar{Name: prefix + "_" + k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref}})
			}
		}
		s := s3Source(src.S3, prefix)
		s.SHA256 = d.Hex
		return s, nil, nil, env
	}
	return codeloader.Source{}, nil, nil, nil
}

// escapeEnv keeps Kubernetes from expanding $(VAR) in a literal value: Lambda never expands.
func escapeEnv(v string) string { return strings.ReplaceAll(v, "$", "$$") }

// cpuMillis is Lambda's CPU share: 1769 MB = 1 vCPU.
func cpuMillis(memoryMB int32) int64 {
	m := int64(memoryMB) * 1000 / 1769
	if m < 10 {
		m = 10
	}
	return m
}

// envList keeps variables in order; setting an existing name replaces it in place.
type envList []corev1.EnvVar

func (l *envList) set(v corev1.EnvVar) {
	for i := range *l {
		if (*l)[i].Name == v.Name {
			(*l)[i] = v
			return
		}
	}
	*l = append(*l, v)
}
func (l *envList) lit(name, value string) { l.set(corev1.EnvVar{Name: name, Value: escapeEnv(value)}) }

func ptrInt64(v int64) *int64 { return &v }

// Where the shim of the one-container shape unpacks code and layers (writable mounts of
// the folders the function sees read-only at /var/task and /opt), and the memory and CPU
// it adds to the container's limits. The CPU allowance is for the shim's own work (the
// Runtime API, moving payloads: about 1.5 ms of CPU per MB each way, bench/README.md), which
// Lambda does not charge to the function's share either: at 128 MB the share is 72m, and
// a 6 MB response moved through it would cost the function a few hundred milliseconds of
// its quota. The cgroup cannot tell the shim's CPU from the function's: a function that
// keeps every core busy gets its share plus this allowance (shim/README.md).
const (
	shimTaskRoot          = "/klambda/task"
	shimOptRoot           = "/klambda/opt"
	embeddedShimMemory    = 32 << 20
	embeddedShimCPUMillis = 50
)

// embeddedCommand is the one container's command: the shim (exec mode, loading the code
// when loadArgs says so), then the runtime — the custom runtime's command, or the image's
// entrypoint with the handler.
func embeddedCommand(e EmbeddedShim, loadArgs, command, args []string, handler string) ([]string, []string) {
	runtime := append(append([]string(nil), command...), args...)
	if len(command) == 0 {
		entry := e.Entrypoint
		if len(entry) == 0 {
			entry = []string{DefaultEntrypoint}
		}
		runtime = append(append([]string(nil), entry...), handler)
	}
	shimArgs := append([]string{"exec", fmt.Sprintf("--listen=:%d", contract.ShimPort), "--runtime-api=" + runtimeAPIAddr}, loadArgs...)
	shimArgs = append(append(shimArgs, "--"), runtime...)
	return []string{e.Path}, shimArgs
}

// needsCredentials: the code or a layer comes from S3 with a credentials Secret.
func (w *Workload) needsCredentials() bool {
	if s3 := w.Config.Code.S3; s3 != nil && s3.Credentials != nil && w.CodeCopy == "" && w.CodeStoreRef == "" {
		return true
	}
	for _, l := range w.Layers {
		if l.Copy == "" && l.StoreRef == "" && l.Content.S3 != nil && l.Content.S3.Credentials != nil {
			return true
		}
	}
	return false
}

// Deployment is the version's Deployment without spec.replicas (the activator's).
func (w *Workload) Deployment(cfg Config, namespace string) (*appsv1.Deployment, error) {
	tpl, err := w.PodTemplate(cfg)
	if err != nil {
		return nil, err
	}
	name := WorkloadName(w.Function, w.Qualifier)
	annotations := map[string]string{contract.AnnotationFunctionName: w.Function, contract.AnnotationQualifier: w.Qualifier}
	for k, v := range poolAnnotations(cfg, w, &tpl) {
		annotations[k] = v
	}
	zero := intstr.FromInt32(0)
	surge := intstr.FromString("25%")
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels:      withLabels(selectorLabels(w.Function, w.Qualifier), functionAppLabels(w.Function)),
			Annotations: annotations,
		},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(w.Function, w.Qualifier)},
			Template: tpl,
			// Old pods keep serving until new ones are ready (Lambda's InProgress update).
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &surge}},
			RevisionHistoryLimit: ptrInt32(3),
		},
	}, nil
}

func ptrInt32(v int32) *int32 { return &v }

// Service is the version's headless Service: the activator dials pods directly.
func (w *Workload) Service(namespace string) *corev1.Service {
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name: WorkloadName(w.Function, w.Qualifier), Namespace: namespace,
			Labels:      withLabels(selectorLabels(w.Function, w.Qualifier), functionAppLabels(w.Function)),
			Annotations: map[string]string{contract.AnnotationFunctionName: w.Function, contract.AnnotationQualifier: w.Qualifier},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selectorLabels(w.Function, w.Qualifier),
			Ports:     []corev1.ServicePort{{Name: "invoke", Port: contract.ShimPort, TargetPort: intstr.FromInt32(contract.ShimPort), Protocol: corev1.ProtocolTCP}},
		},
	}
}
