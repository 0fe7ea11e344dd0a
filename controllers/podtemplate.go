package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/derivedimage"
)

// A version's pod comes in two shapes: the runtime-shim as a native sidecar (an init
// container that keeps running) beside the function's container, with a load-code init
// container for zip code; or, for a runtime whose image embeds the shim (and an Image
// function's derived image), one container whose command is the shim, which loads the
// code (unless S3 credentials keep loading in an init container) and then runs the
// runtime. PodTemplate puts the pieces together; the builders below each make one piece:
// environment, volumes, containers, scheduling.

// PodTemplate builds the pod of a version: load-code init container, runtime-shim native
// sidecar, function container.
func (w *Workload) PodTemplate(cfg Config) (corev1.PodTemplateSpec, error) {
	b := newPodBuilder(w, cfg)
	common := b.commonEnv()
	shimEnv, fnEnv := b.shimEnv(common), b.functionEnv(common)
	code := b.codeVolumes()
	var inits []corev1.Container
	if code.loader != nil {
		inits = append(inits, *code.loader)
	}
	if !b.embedded {
		inits = append(inits, b.shimContainer(shimEnv))
	}
	fn, err := b.functionContainer(fnEnv, shimEnv, code)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	annotations := map[string]string{
		contract.AnnotationFunctionName: w.Function,
		contract.AnnotationQualifier:    w.Qualifier,
		contract.AnnotationCodeSha256:   w.CodeDigest.Base64,
	}
	if w.InvokeSecret != "" {
		annotations[contract.AnnotationInvokeSecret] = w.InvokeSecret
	}
	if cpu := b.resizedCPULimit(); cpu != "" {
		annotations[contract.AnnotationCPULimit] = cpu
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: withLabels(selectorLabels(w.Function, w.Qualifier), functionAppLabels(w.Function)), Annotations: annotations},
		Spec:       b.podSpec(inits, fn, append(b.baseVolumes(), code.volumes...)),
	}, nil
}

// podBuilder holds what decides a version pod's shape.
type podBuilder struct {
	w   *Workload
	cfg Config
	c   *lambdav1alpha1.FunctionConfiguration
	// memory is memorySize in MB (Lambda's default when unset).
	memory int32
	isZip  bool
	// embedded: the runtime image carries the shim (one container); embed says where.
	embedded bool
	embed    EmbeddedShim
	// shimLoads: the embedded shim loads the code itself. S3 credentials stay in a
	// load-code init container: a long-running shim in the function's container would hold
	// them where the function can read them.
	shimLoads bool
}

func newPodBuilder(w *Workload, cfg Config) *podBuilder {
	b := &podBuilder{w: w, cfg: cfg, c: &w.Config, memory: w.Config.EffectiveMemorySize()}
	b.isZip = b.c.PackageType != lambdav1alpha1.PackageTypeImage
	if b.isZip {
		b.embed, b.embedded = cfg.EmbeddedShim[string(b.c.Runtime)]
	} else if w.DerivedImageURI != "" {
		// The derived image carries the shim, in front of the image's ENTRYPOINT.
		b.embed, b.embedded = EmbeddedShim{Path: derivedimage.ShimPath}, true
	}
	b.shimLoads = b.embedded && !w.needsCredentials()
	return b
}

// restricted is every container's security context.
func (b *podBuilder) restricted() *corev1.SecurityContext {
	f, t, uid := false, true, b.cfg.RunAsUser
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: &f,
		ReadOnlyRootFilesystem:   &t,
		RunAsNonRoot:             &t,
		RunAsUser:                &uid,
		RunAsGroup:               &uid,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}
