package feeder

import (
	"context"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/api/contract"
)

// resizeAfterInit gives a ready environment that started with the init CPU its CPU
// limit from the pod's annotation, once per pod (in the background: the environment
// serves meanwhile; a failure is logged and tried again at the pod's next change).
func (f *Feeder) resizeAfterInit(ctx context.Context, p *corev1.Pod) {
	want, ok := p.Annotations[contract.AnnotationCPULimit]
	if !ok || f.Resize == nil || p.DeletionTimestamp != nil {
		return
	}
	wantQ, err := resource.ParseQuantity(want)
	c := functionContainer(p)
	if err != nil || c == nil {
		return
	}
	if have, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && have.Cmp(wantQ) == 0 {
		return
	}
	f.resizeMu.Lock()
	if f.resizing == nil {
		f.resizing = map[types.UID]bool{}
	}
	busy := f.resizing[p.UID]
	f.resizing[p.UID] = true
	f.resizeMu.Unlock()
	if busy {
		return
	}
	go func() {
		err := f.Resize(ctx, p, contract.FunctionContainerName, want)
		f.resizeMu.Lock()
		delete(f.resizing, p.UID)
		f.resizeMu.Unlock()
		if err != nil {
			f.Log.Error(err, "resizing the environment to its CPU share", "pod", p.Name, "namespace", p.Namespace, "cpu", want)
			return
		}
		f.Log.V(1).Info("environment resized to its CPU share", "pod", p.Name, "namespace", p.Namespace, "cpu", want)
	}()
}

// functionContainer is the pod's function container, nil if it has none.
func functionContainer(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == contract.FunctionContainerName {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

// PodResizer is Feeder.Resize through the pods/resize subresource (Kubernetes ≥ 1.33).
func PodResizer(c kubernetes.Interface) func(ctx context.Context, p *corev1.Pod, container, cpuLimit string) error {
	return func(ctx context.Context, p *corev1.Pod, container, cpuLimit string) error {
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"containers": []any{map[string]any{
			"name": container, "resources": map[string]any{"limits": map[string]string{"cpu": cpuLimit}}}}}})
		if err != nil {
			return err
		}
		_, err = c.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "resize")
		return err
	}
}
