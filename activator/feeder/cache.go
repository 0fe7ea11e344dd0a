package feeder

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
)

// NewCache returns a cache that watches klambda's kinds everywhere and only the pods,
// ReplicaSets and Deployments that carry the function label.
func NewCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	hasFunction, err := labels.NewRequirement(contract.LabelFunction, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	sel := labels.NewSelector().Add(*hasFunction)
	return cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:        {Label: sel},
			&appsv1.ReplicaSet{}: {Label: sel},
			&appsv1.Deployment{}: {Label: sel},
		},
	})
}
