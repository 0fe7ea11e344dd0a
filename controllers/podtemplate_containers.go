package controllers

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// loadCodeContainer is the init container that fetches, checks and unpacks the code and
// layers into /var/task and /opt.
func (b *podBuilder) loadCodeContainer(args []string, env []corev1.EnvVar, mounts []corev1.VolumeMount) corev1.Container {
	return corev1.Container{
		Name:            "load-code",
		Image:           b.cfg.ShimImage,
		ImagePullPolicy: b.cfg.ImagePullPolicy,
		Command:         []string{"/runtime-shim"},
		Args:            append([]string{"load-code", "--task-root=" + taskRoot, "--opt=" + optRoot, "--scratch=/tmp"}, args...),
		Env:             env,
		VolumeMounts:    mounts,
		SecurityContext: b.restricted(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
	}
}

// shimContainer is the runtime-shim as a native sidecar.
func (b *podBuilder) shimContainer(env envList) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{
		Name:            "runtime-shim",
		Image:           b.cfg.ShimImage,
		ImagePullPolicy: b.cfg.ImagePullPolicy,
		Command:         []string{"/runtime-shim"},
		Args:            []string{"sidecar"},
		RestartPolicy:   &always,
		Env:             env,
		Ports:           shimPorts(),
		ReadinessProbe:  shimProbe(contract.ReadyPath),
		LivenessProbe:   shimLiveness(),
		VolumeMounts:    []corev1.VolumeMount{{Name: "shim-tmp", MountPath: "/tmp"}},
		SecurityContext: b.restricted(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	}
}

func shimPorts() []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: "invoke", ContainerPort: contract.ShimPort, Protocol: corev1.ProtocolTCP}}
}

// shimProbe checks the shim's path every second.
func shimProbe(path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(contract.ShimPort)}}, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 1}
}

// shimLiveness restarts a shim that stopped answering for 30 s.
func shimLiveness() *corev1.Probe {
	p := shimProbe(contract.HealthPath)
	p.PeriodSeconds, p.FailureThreshold = 10, 3
	return p
}

// functionContainer runs the function: the runtime image with the handler (zip), or the
// function's image; in the one-container shape, behind the embedded shim.
func (b *podBuilder) functionContainer(fnEnv, shimEnv envList, code codeSetup) (corev1.Container, error) {
	fn := corev1.Container{
		Name:            contract.FunctionContainerName,
		ImagePullPolicy: b.cfg.ImagePullPolicy,
		Env:             fnEnv,
		VolumeMounts:    append(b.baseMounts(), code.fnMounts...),
		SecurityContext: b.restricted(),
		Resources:       b.functionResources(),
	}
	c := b.c
	if !b.isZip {
		fn.Image = b.w.ImageURI
		if ic := c.ImageConfig; ic != nil {
			fn.Command = append([]string(nil), ic.EntryPoint...)
			fn.Args = append([]string(nil), ic.Command...)
			fn.WorkingDir = ic.WorkingDirectory
		}
		if b.embedded {
			// The derived image's ENTRYPOINT is the shim's command, then the image's
			// ENTRYPOINT; its CMD is the image's. An entryPoint override goes after the
			// shim's command (and, as in Kubernetes, the image's CMD with it); a command
			// override replaces CMD alone.
			fn.Image = b.w.DerivedImageURI
			if len(fn.Command) > 0 {
				fn.Command = append(derivedShimCommand(), fn.Command...)
			}
			b.embedShim(&fn, fnEnv, shimEnv)
		}
		return fn, nil
	}
	img, ok := b.cfg.RuntimeImages[string(c.Runtime)]
	if !ok || img == "" {
		return fn, invalid("runtime %s has no base image: add it to runtimeImages in the manager configuration", c.Runtime)
	}
	fn.Image, fn.WorkingDir = img, taskRoot
	fn.Command, fn.Args = runtimeCommand(c)
	if b.embedded {
		fn.Command, fn.Args = embeddedCommand(b.embed, code.shimLoadArgs, fn.Command, fn.Args, c.Handler)
		b.embedShim(&fn, fnEnv, shimEnv)
	}
	return fn, nil
}

// embedShim makes fn the one container of its pod: the shim's own variables, its port and
// probes.
func (b *podBuilder) embedShim(fn *corev1.Container, fnEnv, shimEnv envList) {
	for _, v := range shimEnv {
		if strings.HasPrefix(v.Name, "KLAMBDA_") {
			fnEnv.set(v)
		}
	}
	fn.Env = fnEnv
	fn.Ports = shimPorts()
	fn.ReadinessProbe, fn.LivenessProbe = shimProbe(contract.ReadyPath), shimLiveness()
}

// runtimeCommand is how a managed runtime's image runs the handler.
func runtimeCommand(c *lambdav1alpha1.FunctionConfiguration) (command, args []string) {
	switch {
	case c.Runtime == "go1.x":
		return []string{"/var/task/" + c.Handler}, nil
	case strings.HasPrefix(string(c.Runtime), "provided"):
		// Custom runtimes: Lambda runs /var/task/bootstrap, else /opt/bootstrap.
		return []string{"/bin/sh", "-c", `if [ -x /var/task/bootstrap ]; then exec /var/task/bootstrap; else exec /opt/bootstrap; fi`}, nil
	}
	// The base image's entrypoint runs the runtime interface client for the handler.
	return nil, []string{c.Handler}
}

// functionResources are Lambda's memory and its CPU share (1769 MB = 1 vCPU). In the
// one-container shape the container also holds the shim, whose memory and CPU allowances
// are added (embeddedShimMemory, embeddedShimCPUMillis), and may start with the init CPU
// (resizedCPULimit).
func (b *podBuilder) functionResources() corev1.ResourceRequirements {
	cpuLimit := b.runningCPUMillis()
	cpuReq := max(int64(float64(cpuMillis(b.memory))*b.cfg.CPURequestFraction), 10)
	memBytes := int64(b.memory) << 20
	if b.embedded {
		// The shim shares the function's container (about 12 MB resident).
		memBytes += embeddedShimMemory
	}
	mem := resource.NewQuantity(memBytes, resource.BinarySI)
	startLimit := cpuLimit
	if b.resizedCPULimit() != "" {
		startLimit = b.cfg.initCPUMillis
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(cpuReq, resource.DecimalSI), corev1.ResourceMemory: *mem},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(startLimit, resource.DecimalSI), corev1.ResourceMemory: *mem},
	}
}

// runningCPUMillis is the function container's CPU limit once the environment is ready:
// Lambda's share, plus the shim's allowance in the one-container shape.
func (b *podBuilder) runningCPUMillis() int64 {
	if b.embedded {
		return cpuMillis(b.memory) + embeddedShimCPUMillis
	}
	return cpuMillis(b.memory)
}

// resizedCPULimit is, for a one-container pod that starts with the init CPU (unpacking and
// init), the CPU limit the activator resizes it to once ready (contract.AnnotationCPULimit);
// "" when the pod starts with its share.
func (b *podBuilder) resizedCPULimit() string {
	share := b.runningCPUMillis()
	if !b.embedded || b.cfg.initCPUMillis <= share {
		return ""
	}
	return resource.NewMilliQuantity(share, resource.DecimalSI).String()
}

// podSpec places the containers: the function's service account, its architecture, the
// restricted pod security context, and Lambda's shutdown grace.
func (b *podBuilder) podSpec(inits []corev1.Container, fn corev1.Container, volumes []corev1.Volume) corev1.PodSpec {
	arch, lambdaArch := "amd64", lambdav1alpha1.ArchitectureX8664
	if len(b.c.Architectures) > 0 && b.c.Architectures[0] == lambdav1alpha1.ArchitectureArm64 {
		arch, lambdaArch = "arm64", lambdav1alpha1.ArchitectureArm64
	}
	share, t, uid := true, true, b.cfg.RunAsUser
	fsGroup := uid
	return corev1.PodSpec{
		ServiceAccountName:    b.c.ServiceAccountName,
		ShareProcessNamespace: &share,
		NodeSelector:          map[string]string{corev1.LabelArchStable: arch, corev1.LabelOSStable: "linux"},
		Tolerations:           slices.Clone(b.cfg.Tolerations[string(lambdaArch)]),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &fsGroup,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		// Lambda gives the runtime up to 2 s to shut down; leave room for the shim.
		TerminationGracePeriodSeconds: ptrInt64(10),
		InitContainers:                inits,
		Containers:                    []corev1.Container{fn},
		Volumes:                       volumes,
	}
}
