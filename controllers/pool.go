package controllers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

// Pre-warmed environments (docs/pools.md). The manager keeps, in every namespace that has
// a function version a pool can serve, a Deployment of generic pods per configured pool
// key (runtime, architecture, memory size): the runtime's image with `runtime-shim
// generic` up and waiting, no code, no function variables or Secrets, no ServiceAccount
// of a function. Each function version's Deployment says in an annotation whether its pods
// can be made from such a pod (AnnotationSpecialization, with what to give it) or why not
// (AnnotationPoolIneligible). The activator specializes and adopts pool pods; the pool's
// ReplicaSet refills itself when a pod leaves it.

// PoolConfig is one entry of the manager's `pools` list.
type PoolConfig struct {
	// Runtime must be one of embeddedShim's: a generic environment is the one-container
	// shape, the shim in the runtime's image.
	Runtime string `json:"runtime"`
	// Architecture: x86_64 (default) or arm64.
	Architecture string `json:"architecture,omitempty"`
	// MemorySize in MB (default 128): the container's memory limit cannot change once the
	// pod runs, so only functions of exactly this size take these pods.
	MemorySize int32 `json:"memorySize,omitempty"`
	// Size is how many generic pods wait in each namespace that has a function version
	// of this key (0: none; at most MaxPoolSize).
	Size int32 `json:"size"`
}

// MaxPoolSize bounds a pool per namespace: every waiting pod holds its memory.
const MaxPoolSize = 20

// Key is the pool's key.
func (p PoolConfig) Key() contract.PoolKey {
	return contract.PoolKey{Runtime: p.Runtime, Architecture: p.Architecture, MemoryMB: p.MemorySize}
}

func validatePools(pools []PoolConfig, embedded map[string]EmbeddedShim) error {
	seen := map[contract.PoolKey]bool{}
	for i := range pools {
		p := &pools[i]
		if p.Architecture == "" {
			p.Architecture = string(lambdav1alpha1.ArchitectureX8664)
		}
		if p.MemorySize == 0 {
			p.MemorySize = 128
		}
		switch {
		case p.Runtime == "":
			return fmt.Errorf("pools[%d].runtime is required", i)
		case p.Architecture != string(lambdav1alpha1.ArchitectureX8664) && p.Architecture != string(lambdav1alpha1.ArchitectureArm64):
			return fmt.Errorf("pools[%d].architecture must be x86_64 or arm64, got %q", i, p.Architecture)
		case p.MemorySize < 128 || p.MemorySize > 10240:
			return fmt.Errorf("pools[%d].memorySize must be between 128 and 10240 MB, got %d", i, p.MemorySize)
		case p.Size < 0 || p.Size > MaxPoolSize:
			return fmt.Errorf("pools[%d].size must be between 0 and %d, got %d", i, MaxPoolSize, p.Size)
		}
		if _, ok := embedded[p.Runtime]; !ok {
			return fmt.Errorf("pools[%d]: runtime %s is not in embeddedShim: a generic environment needs the shim in the runtime's image", i, p.Runtime)
		}
		if seen[p.Key()] {
			return fmt.Errorf("pools[%d]: %s is listed twice", i, p.Key())
		}
		seen[p.Key()] = true
	}
	return nil
}

// poolSize is the configured size of key's pool (0: no pool).
func (c *Config) poolSize(key contract.PoolKey) int32 {
	for _, p := range c.Pools {
		if p.Key() == key {
			return p.Size
		}
	}
	return 0
}

// poolKeyOf is the pool key a version's pods would come from.
func poolKeyOf(w *Workload) contract.PoolKey {
	arch := string(lambdav1alpha1.ArchitectureX8664)
	if len(w.Config.Architectures) > 0 {
		arch = string(w.Config.Architectures[0])
	}
	return contract.PoolKey{Runtime: string(w.Config.Runtime), Architecture: arch, MemoryMB: w.Config.EffectiveMemorySize()}
}

// poolWorkload is the Workload a generic pod of key is shaped like: a zip function of that
// runtime, architecture and memory with every other setting at Lambda's default.
func poolWorkload(key contract.PoolKey) *Workload {
	mem := key.MemoryMB
	return &Workload{Config: lambdav1alpha1.FunctionConfiguration{
		PackageType:   lambdav1alpha1.PackageTypeZip,
		Runtime:       lambdav1alpha1.Runtime(key.Runtime),
		MemorySize:    mem,
		Architectures: []lambdav1alpha1.Architecture{lambdav1alpha1.Architecture(key.Architecture)},
	}}
}

// PoolPodTemplate is a generic pod of key's pool: the one-container pod of a function of
// that key, with `runtime-shim generic` instead of `exec` and none of a function's code,
// variables, Secrets or ServiceAccount. Like the function pods it runs as the namespace's
// default ServiceAccount (functions without serviceAccountName run as it too); the pool's
// secret (Secret contract.PoolSecretName) is its only credential.
func PoolPodTemplate(cfg Config, key contract.PoolKey) (corev1.PodTemplateSpec, error) {
	b := newPodBuilder(poolWorkload(key), cfg)
	if !b.embedded {
		return corev1.PodTemplateSpec{}, invalid("pool runtime %s is not in embeddedShim", key.Runtime)
	}
	img := cfg.RuntimeImages[key.Runtime]
	if img == "" {
		return corev1.PodTemplateSpec{}, invalid("pool runtime %s has no base image", key.Runtime)
	}
	volumes := append(b.baseVolumes(), codeDirVolumes()...)
	mounts := append(b.baseMounts(),
		corev1.VolumeMount{Name: "task", MountPath: shimTaskRoot}, corev1.VolumeMount{Name: "opt", MountPath: shimOptRoot},
		corev1.VolumeMount{Name: "task", MountPath: taskRoot, ReadOnly: true}, corev1.VolumeMount{Name: "opt", MountPath: optRoot, ReadOnly: true})
	fn := corev1.Container{
		Name:            contract.FunctionContainerName,
		Image:           img,
		ImagePullPolicy: cfg.ImagePullPolicy,
		WorkingDir:      taskRoot,
		Command:         []string{b.embed.Path},
		Args: []string{"generic", fmt.Sprintf("--listen=:%d", contract.ShimPort), "--runtime-api=" + runtimeAPIAddr,
			"--task-root=" + shimTaskRoot, "--opt=" + shimOptRoot, "--scratch=/tmp"},
		Env: []corev1.EnvVar{{Name: contract.PoolSecretEnv, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: contract.PoolSecretName}, Key: contract.InvokeSecretKey}}}},
		VolumeMounts:    mounts,
		SecurityContext: b.restricted(),
		Resources:       b.functionResources(),
		Ports:           shimPorts(),
		ReadinessProbe:  shimProbe(contract.ReadyPath),
		LivenessProbe:   shimLiveness(),
	}
	annotations := map[string]string{contract.AnnotationPoolKey: key.String(), contract.AnnotationInvokeSecret: contract.PoolSecretName}
	if cpu := b.resizedCPULimit(); cpu != "" {
		annotations[contract.AnnotationCPULimit] = cpu
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: withLabels(sharedAppLabels(appComponentPool), map[string]string{contract.LabelPool: key.LabelValue(), contract.LabelPoolEnvironment: "true"}), Annotations: annotations},
		Spec:       b.podSpec(nil, fn, volumes),
	}, nil
}

// codeDirVolumes are the task and opt emptyDirs every zip function pod unpacks into.
// Bounded on the node's disk: load-code unpacks at most Lambda's 250 MB and
// codeloader.MaxEntries entries for the code and its layers together, which
// UnpackedDiskBound turns into blocks; the kubelet evicts a pod past it.
func codeDirVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: "task", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(codeloader.UnpackedDiskBound(), resource.BinarySI)}}},
		{Name: "opt", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(codeloader.UnpackedDiskBound(), resource.BinarySI)}}},
	}
}

// poolAnnotations are the annotations of a version's Deployment about pools: nothing when
// no pool is configured for the version's key; else the specialization template when a
// generic pod of that pool can become exactly the pod tpl describes, or the reason why not.
func poolAnnotations(cfg Config, w *Workload, tpl *corev1.PodTemplateSpec) map[string]string {
	if w.Config.PackageType == lambdav1alpha1.PackageTypeImage {
		return nil
	}
	key := poolKeyOf(w)
	if cfg.poolSize(key) == 0 {
		return nil
	}
	st, reason := specializationTemplate(cfg, key, w, tpl)
	if reason != "" {
		return map[string]string{contract.AnnotationPoolIneligible: reason}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return map[string]string{contract.AnnotationPoolIneligible: err.Error()}
	}
	return map[string]string{contract.AnnotationSpecialization: string(b)}
}

// specializationTemplate compares the version's pod with a generic pod of key: a pod can
// be specialized into it only when everything but the function container's command and
// variables, and the code's source, is the same — the pod's shape (volumes, init
// containers, ServiceAccount, resources, scheduling) is fixed when the pod is created.
// Otherwise it says what differs (docs/pools.md, "Who falls back").
func specializationTemplate(cfg Config, key contract.PoolKey, w *Workload, tpl *corev1.PodTemplateSpec) (*contract.SpecializationTemplate, string) {
	generic, err := PoolPodTemplate(cfg, key)
	if err != nil {
		return nil, err.Error()
	}
	ps, gs := &tpl.Spec, &generic.Spec
	switch {
	case ps.ServiceAccountName != "":
		return nil, "serviceAccountName: its token is mounted when the pod is created"
	case len(w.Config.FileSystemConfigs) > 0:
		return nil, "fileSystemConfigs: a volume is mounted when the pod is created"
	case len(ps.InitContainers) > 0:
		return nil, "code from S3 with a credentials Secret is unpacked by an init container"
	case len(ps.Containers) != 1:
		return nil, "not the one-container shape"
	}
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil {
			return nil, "code or a layer is read from a ConfigMap volume (turn the code store on to load it by digest)"
		}
	}
	if !reflect.DeepEqual(ps.Volumes, gs.Volumes) {
		return nil, "volumes differ from a generic pod's (ephemeralStorage other than 512 MB)"
	}
	fn, gfn := &ps.Containers[0], &gs.Containers[0]
	if fn.Image != gfn.Image || !reflect.DeepEqual(fn.Resources, gfn.Resources) || !reflect.DeepEqual(fn.VolumeMounts, gfn.VolumeMounts) ||
		!reflect.DeepEqual(ps.NodeSelector, gs.NodeSelector) || fn.Command[0] != gfn.Command[0] {
		return nil, "image, resources, mounts or scheduling differ from a generic pod's"
	}
	st := &contract.SpecializationTemplate{Pool: key, InvokeSecretName: w.InvokeSecret}
	// The exec command: shim flags, then "--" and the runtime's command.
	args := fn.Args
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep < 0 || len(args) == 0 || args[0] != "exec" {
		return nil, "the function container is not runtime-shim exec"
	}
	st.Command = append([]string(nil), args[sep+1:]...)
	for _, a := range args[1:sep] {
		switch {
		case strings.HasPrefix(a, "--code="):
			st.Code = strings.TrimPrefix(a, "--code=")
		case strings.HasPrefix(a, "--layer="):
			st.Layers = append(st.Layers, strings.TrimPrefix(a, "--layer="))
		case a == fmt.Sprintf("--listen=:%d", contract.ShimPort), a == "--runtime-api="+runtimeAPIAddr,
			a == "--task-root="+shimTaskRoot, a == "--opt="+shimOptRoot, a == "--scratch=/tmp":
		default:
			return nil, "runtime-shim exec flag " + a + " has no generic equivalent"
		}
	}
	for _, v := range fn.Env {
		switch {
		case v.Name == contract.InvokeSecretEnv:
			// Given as Specialization.InvokeSecret, never as a variable.
		case v.ValueFrom == nil:
			st.Env = append(st.Env, contract.TemplateEnvVar{Name: v.Name, Value: v.Value})
		case v.ValueFrom.SecretKeyRef != nil:
			r := v.ValueFrom.SecretKeyRef
			st.Env = append(st.Env, contract.TemplateEnvVar{Name: v.Name, SecretKeyRef: &contract.SecretKeyRef{Name: r.Name, Key: r.Key, Optional: r.Optional != nil && *r.Optional}})
		case v.ValueFrom.FieldRef != nil && v.ValueFrom.FieldRef.FieldPath == "metadata.uid":
			st.Env = append(st.Env, contract.TemplateEnvVar{Name: v.Name, PodUID: true})
		default:
			return nil, "variable " + v.Name + " comes from a source a specialization cannot carry"
		}
	}
	return st, ""
}
