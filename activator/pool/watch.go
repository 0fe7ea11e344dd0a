package pool

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
)

// NewCache returns a cache of the generic pods (those labelled contract.LabelPool) only:
// the feeder's cache has the function-labelled pods, and one informer cannot select both.
func NewCache(cfg *rest.Config, scheme *runtime.Scheme) (cache.Cache, error) {
	inPool, err := labels.NewRequirement(contract.LabelPool, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	return cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.NewSelector().Add(*inPool)},
	}})
}

// Register feeds x from c's pod informer: on every change of a generic pod, the index is
// rebuilt from the cache (pools hold a few pods per namespace). Call before c starts.
func (x *Index) Register(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("informer for generic pods: %w", err)
	}
	update := func(any) {
		var list corev1.PodList
		if err := c.List(ctx, &list); err != nil {
			return
		}
		pods := make([]*corev1.Pod, len(list.Items))
		for i := range list.Items {
			pods[i] = &list.Items[i]
		}
		x.Update(pods)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, o any) { update(o) },
		DeleteFunc: update,
	})
	return err
}
