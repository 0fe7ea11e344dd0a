package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// validateTolerations checks the configuration's tolerations as the API server checks a
// pod's (so that a bad entry is refused when the manager starts, not by every Deployment
// it writes): keys are Lambda's architectures; a toleration's key is a qualified name (empty
// only with operator Exists, which tolerates every taint), its value a label value (empty
// with Exists), its effect one of Kubernetes' three or empty (all), and tolerationSeconds
// only with NoExecute.
func validateTolerations(byArch map[string][]corev1.Toleration) error {
	for arch, ts := range byArch {
		switch lambdav1alpha1.Architecture(arch) {
		case lambdav1alpha1.ArchitectureX8664, lambdav1alpha1.ArchitectureArm64:
		default:
			return fmt.Errorf("tolerations: %q is not an architecture (x86_64, arm64)", arch)
		}
		for i, t := range ts {
			at := fmt.Sprintf("tolerations.%s[%d]", arch, i)
			if t.Key != "" {
				if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
					return fmt.Errorf("%s.key %q: %s", at, t.Key, strings.Join(errs, "; "))
				}
			}
			switch t.Operator {
			case corev1.TolerationOpEqual, "":
				if t.Key == "" {
					return fmt.Errorf("%s: an empty key needs operator Exists (it tolerates every taint)", at)
				}
				if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
					return fmt.Errorf("%s.value %q: %s", at, t.Value, strings.Join(errs, "; "))
				}
			case corev1.TolerationOpExists:
				if t.Value != "" {
					return fmt.Errorf("%s: operator Exists takes no value, got %q", at, t.Value)
				}
			default:
				return fmt.Errorf("%s.operator %q: want Equal or Exists", at, t.Operator)
			}
			switch t.Effect {
			case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			default:
				return fmt.Errorf("%s.effect %q: want NoSchedule, PreferNoSchedule, NoExecute or empty (all)", at, t.Effect)
			}
			if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
				return fmt.Errorf("%s: tolerationSeconds is for effect NoExecute only", at)
			}
		}
	}
	return nil
}
