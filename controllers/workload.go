package controllers

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/klambda/klambda/api/contract"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

// Ports of the runtime-shim.
const (
	invokePort     = 9000
	runtimeAPIAddr = "127.0.0.1:9001"
)

// Workload is everything a version's pods are built from: the frozen (or $LATEST)
// configuration and the resolved code and layers.
type Workload struct {
	Function  string
	Qualifier string // $LATEST or a version number
	Config    lambdav1alpha1.FunctionConfiguration
	// Code: the pinned image (Image) or the zip and, for ConfigMap code, its copy (Zip).
	ImageURI   string
	CodeDigest Digest
	CodeCopy   string
	Layers     []WorkloadLayer
	// InvokeSecret is the per-function Secret's name.
	InvokeSecret string
}

// WorkloadLayer is a resolved layer as the loader gets it.
type WorkloadLayer struct {
	Content lambdav1alpha1.CodeSource
	Digest  Digest
	Copy    string // immutable ConfigMap copy (owned by the LayerVersion)
}

// loaderSource is the load-code argument for a zip plus what the init container needs to
// reach it: a volume (ConfigMap copy) or credentials (S3).
func loaderSource(src lambdav1alpha1.CodeSource, d Digest, copyName, slot string) (codeloader.Source, []corev1.Volume, []corev1.VolumeMount, []corev1.EnvVar) {
	switch {
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

// PodTemplate builds the pod of a version: load-code init container, runtime-shim native
// sidecar, function container.
func (w *Workload) PodTemplate(cfg Config) (corev1.PodTemplateSpec, error) {
	c := w.Config
	memory := c.MemorySize
	if memory == 0 {
		memory = 128
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 3
	}
	tmpMB := int32(512)
	if c.EphemeralStorage != nil && c.EphemeralStorage.Size > 0 {
		tmpMB = c.EphemeralStorage.Size
	}
	isZip := c.PackageType != lambdav1alpha1.PackageTypeImage
	embed, embedded := EmbeddedShim{}, false
	if isZip {
		embed, embedded = cfg.EmbeddedShim[string(c.Runtime)]
	}
	// S3 credentials stay in a load-code init container: a long-running shim in the
	// function's container would hold them where the function can read them.
	shimLoads := embedded && !w.needsCredentials()
	logGroup := cfg.LogGroupPrefix + w.Function
	pull := cfg.ImagePullPolicy
	f, t := false, true
	uid := cfg.RunAsUser
	restricted := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &f,
		ReadOnlyRootFilesystem:   &t,
		RunAsNonRoot:             &t,
		RunAsUser:                &uid,
		RunAsGroup:               &uid,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}

	// Shared: the pod's identity for the log stream, the same in shim and function.
	common := envList{}
	common.set(corev1.EnvVar{Name: "KLAMBDA_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}})
	common.lit("AWS_LAMBDA_FUNCTION_NAME", w.Function)
	common.lit("AWS_LAMBDA_FUNCTION_VERSION", w.Qualifier)
	common.lit("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", strconv.Itoa(int(memory)))
	common.lit("AWS_LAMBDA_FUNCTION_TIMEOUT", strconv.Itoa(int(timeout)))
	common.lit("AWS_LAMBDA_LOG_GROUP_NAME", logGroup)
	// [version]<pod uid>: one stream per environment, as Lambda's [version]<hex>.
	common.set(corev1.EnvVar{Name: "AWS_LAMBDA_LOG_STREAM_NAME", Value: "[" + escapeEnv(w.Qualifier) + "]$(KLAMBDA_POD_UID)"})
	common.lit("AWS_REGION", cfg.Region)
	common.lit("AWS_DEFAULT_REGION", cfg.Region)
	if isZip {
		common.lit("_HANDLER", c.Handler)
	}

	shimEnv := append(envList{}, common...)
	shimEnv.lit("KLAMBDA_ACCOUNT_ID", cfg.AccountID)
	shimEnv.set(corev1.EnvVar{Name: "KLAMBDA_INVOKE_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: w.InvokeSecret}, Key: InvokeSecretKey}}})

	fnEnv := append(envList{}, common...)
	fnEnv.lit("AWS_LAMBDA_RUNTIME_API", runtimeAPIAddr)
	fnEnv.lit("LAMBDA_TASK_ROOT", taskRoot)
	fnEnv.lit("LAMBDA_RUNTIME_DIR", runtimeDir)
	fnEnv.lit("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
	fnEnv.lit("TZ", ":UTC")
	fnEnv.lit("KLAMBDA_ROLE", "function")
	if isZip {
		fnEnv.lit("AWS_EXECUTION_ENV", "AWS_Lambda_"+string(c.Runtime))
		// Unreserved defaults (the user may override them); an Image keeps its own ENV.
		fnEnv.lit("LANG", "en_US.UTF-8")
		fnEnv.lit("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
		fnEnv.lit("LD_LIBRARY_PATH", "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib")
		fnEnv.lit("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR")
		rt := string(c.Runtime)
		switch {
		case strings.HasPrefix(rt, "nodejs"):
			fnEnv.lit("NODE_PATH", "/opt/nodejs/node"+strings.TrimSuffix(strings.TrimPrefix(rt, "nodejs"), ".x")+"/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task")
		case strings.HasPrefix(rt, "python"):
			fnEnv.lit("PYTHONPATH", "/var/runtime")
		}
	} else {
		fnEnv.lit("AWS_EXECUTION_ENV", "AWS_Lambda_Image")
	}
	if c.Environment != nil {
		for _, v := range c.Environment.Variables {
			if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
				fnEnv.set(corev1.EnvVar{Name: v.Name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: v.ValueFrom.SecretKeyRef.DeepCopy()}})
			} else {
				fnEnv.lit(v.Name, v.Value)
			}
		}
	}

	volumes := []corev1.Volume{
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(int64(tmpMB)<<20, resource.BinarySI)}}},
	}
	if !embedded {
		volumes = append(volumes, corev1.Volume{Name: "shim-tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(64<<20, resource.BinarySI)}}})
	}
	fnMounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	for _, fs := range c.FileSystemConfigs {
		volumes = append(volumes, corev1.Volume{Name: "fs-0", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fs.ClaimName}}})
		fnMounts = append(fnMounts, corev1.VolumeMount{Name: "fs-0", MountPath: fs.LocalMountPath})
	}

	var inits []corev1.Container
	var shimLoadArgs []string
	if isZip {
		volumes = append(volumes,
			// Bounded on the node's disk: load-code unpacks at most Lambda's 250 MB and
			// codeloader.MaxEntries entries for the code and its layers together, which
			// UnpackedDiskBound turns into blocks; the kubelet evicts a pod past it.
			corev1.Volume{Name: "task", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(codeloader.UnpackedDiskBound(), resource.BinarySI)}}},
			corev1.Volume{Name: "opt", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(codeloader.UnpackedDiskBound(), resource.BinarySI)}}},
		)
		var args []string
		var loaderMounts []corev1.VolumeMount
		var credEnv []corev1.EnvVar
		add := func(flag string, src lambdav1alpha1.CodeSource, d Digest, cp, slot string) {
			s, vols, mounts, env := loaderSource(src, d, cp, slot)
			args = append(args, flag+"="+s.String())
			volumes = append(volumes, vols...)
			loaderMounts = append(loaderMounts, mounts...)
			credEnv = append(credEnv, env...)
		}
		add("--code", c.Code.CodeSource, w.CodeDigest, w.CodeCopy, "code")
		for i, l := range w.Layers {
			add("--layer", l.Content, l.Digest, l.Copy, fmt.Sprintf("layer-%d", i+1))
		}
		if shimLoads {
			// The shim unpacks through its own writable mounts; the function sees the same
			// folders read-only at /var/task and /opt, as in Lambda. Downloads wait in the
			// function's /tmp, and are gone before the runtime starts.
			shimLoadArgs = append([]string{"--task-root=" + shimTaskRoot, "--opt=" + shimOptRoot, "--scratch=/tmp"}, args...)
			fnMounts = append(fnMounts, loaderMounts...)
			fnMounts = append(fnMounts, corev1.VolumeMount{Name: "task", MountPath: shimTaskRoot}, corev1.VolumeMount{Name: "opt", MountPath: shimOptRoot})
		} else {
			// Downloads wait in scratch while they are checked (an archive is at most 250 MB).
			volumes = append(volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				SizeLimit: resource.NewQuantity(codeloader.MaxArchiveSize+(16<<20), resource.BinarySI)}}})
			loaderMounts = append(loaderMounts, corev1.VolumeMount{Name: "task", MountPath: taskRoot}, corev1.VolumeMount{Name: "opt", MountPath: optRoot}, corev1.VolumeMount{Name: "scratch", MountPath: "/tmp"})
			inits = append(inits, corev1.Container{
				Name:            "load-code",
				Image:           cfg.ShimImage,
				ImagePullPolicy: pull,
				Command:         []string{"/runtime-shim"},
				Args:            append([]string{"load-code", "--task-root=" + taskRoot, "--opt=" + optRoot, "--scratch=/tmp"}, args...),
				Env:             credEnv,
				VolumeMounts:    loaderMounts,
				SecurityContext: restricted.DeepCopy(),
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
			})
		}
		fnMounts = append(fnMounts, corev1.VolumeMount{Name: "task", MountPath: taskRoot, ReadOnly: true}, corev1.VolumeMount{Name: "opt", MountPath: optRoot, ReadOnly: true})
	}
	always := corev1.ContainerRestartPolicyAlways
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(invokePort)}}, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 1}
	}
	live := probe("/healthz")
	live.PeriodSeconds, live.FailureThreshold = 10, 3
	if !embedded {
		inits = append(inits, corev1.Container{
			Name:            "runtime-shim",
			Image:           cfg.ShimImage,
			ImagePullPolicy: pull,
			Command:         []string{"/runtime-shim"},
			Args:            []string{"sidecar"},
			RestartPolicy:   &always,
			Env:             shimEnv,
			Ports:           []corev1.ContainerPort{{Name: "invoke", ContainerPort: invokePort, Protocol: corev1.ProtocolTCP}},
			ReadinessProbe:  probe("/readyz"),
			LivenessProbe:   live,
			VolumeMounts:    []corev1.VolumeMount{{Name: "shim-tmp", MountPath: "/tmp"}},
			SecurityContext: restricted.DeepCopy(),
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
		})
	}

	fn := corev1.Container{
		Name:            contract.FunctionContainerName,
		ImagePullPolicy: pull,
		Env:             fnEnv,
		VolumeMounts:    fnMounts,
		SecurityContext: restricted.DeepCopy(),
	}
	cpuLimit := cpuMillis(memory)
	cpuReq := int64(float64(cpuLimit) * cfg.CPURequestFraction)
	if cpuReq < 10 {
		cpuReq = 10
	}
	memBytes := int64(memory) << 20
	if embedded {
		// The shim shares the function's container (about 12 MB resident).
		memBytes += embeddedShimMemory
	}
	mem := resource.NewQuantity(memBytes, resource.BinarySI)
	annotations := map[string]string{
		AnnotationFunctionName: w.Function,
		AnnotationQualifier:    w.Qualifier,
		AnnotationCodeSha256:   w.CodeDigest.Base64,
	}
	startLimit := cpuLimit
	if embedded && cfg.initCPUMillis > cpuLimit {
		// Unpacking and init with the init CPU; the activator resizes to the share.
		startLimit = cfg.initCPUMillis
		annotations[contract.AnnotationCPULimit] = resource.NewMilliQuantity(cpuLimit, resource.DecimalSI).String()
	}
	fn.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(cpuReq, resource.DecimalSI), corev1.ResourceMemory: *mem},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(startLimit, resource.DecimalSI), corev1.ResourceMemory: *mem},
	}
	if isZip {
		img, ok := cfg.RuntimeImages[string(c.Runtime)]
		if !ok || img == "" {
			return corev1.PodTemplateSpec{}, invalid("runtime %s has no base image: add it to runtimeImages in the manager configuration", c.Runtime)
		}
		fn.Image = img
		fn.WorkingDir = taskRoot
		if strings.HasPrefix(string(c.Runtime), "provided") || c.Runtime == "go1.x" {
			// Custom runtimes: Lambda runs /var/task/bootstrap, else /opt/bootstrap.
			fn.Command = []string{"/bin/sh", "-c", `if [ -x /var/task/bootstrap ]; then exec /var/task/bootstrap; else exec /opt/bootstrap; fi`}
			if c.Runtime == "go1.x" {
				fn.Command = []string{"/var/task/" + c.Handler}
			}
		} else {
			// The base image's entrypoint runs the runtime interface client for the handler.
			fn.Args = []string{c.Handler}
		}
		if embedded {
			fn.Command, fn.Args = embeddedCommand(embed, shimLoadArgs, fn.Command, fn.Args, c.Handler)
			for _, v := range shimEnv {
				if strings.HasPrefix(v.Name, "KLAMBDA_") {
					fnEnv.set(v)
				}
			}
			fn.Env = fnEnv
			fn.Ports = []corev1.ContainerPort{{Name: "invoke", ContainerPort: invokePort, Protocol: corev1.ProtocolTCP}}
			fn.ReadinessProbe, fn.LivenessProbe = probe("/readyz"), live
		}
	} else {
		fn.Image = w.ImageURI
		if ic := c.ImageConfig; ic != nil {
			fn.Command = append([]string(nil), ic.EntryPoint...)
			fn.Args = append([]string(nil), ic.Command...)
			fn.WorkingDir = ic.WorkingDirectory
		}
	}

	arch := "amd64"
	if len(c.Architectures) > 0 && c.Architectures[0] == lambdav1alpha1.ArchitectureArm64 {
		arch = "arm64"
	}
	share := true
	fsGroup := uid
	labels := selectorLabels(w.Function, w.Qualifier)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:    c.ServiceAccountName,
			ShareProcessNamespace: &share,
			NodeSelector:          map[string]string{corev1.LabelArchStable: arch, corev1.LabelOSStable: "linux"},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &fsGroup,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			// Lambda gives the runtime up to 2 s to shut down; leave room for the shim.
			TerminationGracePeriodSeconds: ptrInt64(10),
			InitContainers:                inits,
			Containers:                    []corev1.Container{fn},
			Volumes:                       volumes,
		},
	}, nil
}

func ptrInt64(v int64) *int64 { return &v }

// Where the shim of the one-container shape unpacks code and layers (writable mounts of
// the folders the function sees read-only at /var/task and /opt), and the memory it adds
// to the container's limit.
const (
	shimTaskRoot       = "/klambda/task"
	shimOptRoot        = "/klambda/opt"
	embeddedShimMemory = 32 << 20
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
	shimArgs := append([]string{"exec", fmt.Sprintf("--listen=:%d", invokePort), "--runtime-api=" + runtimeAPIAddr}, loadArgs...)
	shimArgs = append(append(shimArgs, "--"), runtime...)
	return []string{e.Path}, shimArgs
}

// needsCredentials: the code or a layer comes from S3 with a credentials Secret.
func (w *Workload) needsCredentials() bool {
	if s3 := w.Config.Code.S3; s3 != nil && s3.Credentials != nil && w.CodeCopy == "" {
		return true
	}
	for _, l := range w.Layers {
		if l.Copy == "" && l.Content.S3 != nil && l.Content.S3.Credentials != nil {
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
	zero := intstr.FromInt32(0)
	surge := intstr.FromString("25%")
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels:      selectorLabels(w.Function, w.Qualifier),
			Annotations: map[string]string{AnnotationFunctionName: w.Function, AnnotationQualifier: w.Qualifier},
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
			Labels:      selectorLabels(w.Function, w.Qualifier),
			Annotations: map[string]string{AnnotationFunctionName: w.Function, AnnotationQualifier: w.Qualifier},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selectorLabels(w.Function, w.Qualifier),
			Ports:     []corev1.ServicePort{{Name: "invoke", Port: invokePort, TargetPort: intstr.FromInt32(invokePort), Protocol: corev1.ProtocolTCP}},
		},
	}
}
