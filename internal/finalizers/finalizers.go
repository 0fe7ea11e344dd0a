// Package finalizers removes klambda's own finalizers from its objects. The controllers add
// them (a Version referenced by an Alias, a LayerVersion in use, an EventSourceMapping whose
// poller still runs) and remove them when the object may go; with klambda uninstalled (or
// its manager or pollers stopped for good) nothing removes them, and deleting those objects
// — or their namespace — waits forever. hack/remove-finalizers runs this; docs/operations.md
// says when.
package finalizers

import (
	"context"
	"fmt"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Names are klambda's finalizers; no other finalizer is touched.
var Names = []string{
	contract.FinalizerVersionInUse,      // Version (controllers)
	contract.FinalizerLayerInUse,        // LayerVersion (controllers)
	contract.FinalizerEventSourcePoller, // EventSourceMapping (eventsources/controller)
}

// Options choose what to clean.
type Options struct {
	// Namespace limits the cleanup to one namespace; empty means every namespace.
	Namespace string
	// IncludeLive also cleans objects not being deleted (their next deletion then doesn't
	// wait for a controller); by default only objects already being deleted are cleaned,
	// which is what unblocks a stuck deletion and is safe while klambda still runs.
	IncludeLive bool
	// DryRun reports without changing anything.
	DryRun bool
}

// Cleaned is one object whose klambda finalizers were (or would be) removed.
type Cleaned struct {
	Kind, Namespace, Name string
	Finalizers            []string
}

// Remove strips klambda's finalizers from Versions, LayerVersions and EventSourceMappings.
func Remove(ctx context.Context, c client.Client, o Options) ([]Cleaned, error) {
	var out []Cleaned
	lists := []struct {
		kind string
		list client.ObjectList
	}{
		{"Version", &lambdav1alpha1.VersionList{}},
		{"LayerVersion", &lambdav1alpha1.LayerVersionList{}},
		{"EventSourceMapping", &lambdav1alpha1.EventSourceMappingList{}},
	}
	for _, l := range lists {
		if err := c.List(ctx, l.list, client.InNamespace(o.Namespace)); err != nil {
			return out, fmt.Errorf("listing %ss: %w", l.kind, err)
		}
		objs, err := objects(l.list)
		if err != nil {
			return out, err
		}
		for _, obj := range objs {
			if obj.GetDeletionTimestamp() == nil && !o.IncludeLive {
				continue
			}
			var ours, keep []string
			for _, f := range obj.GetFinalizers() {
				if slices.Contains(Names, f) {
					ours = append(ours, f)
				} else {
					keep = append(keep, f)
				}
			}
			if len(ours) == 0 {
				continue
			}
			out = append(out, Cleaned{Kind: l.kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Finalizers: ours})
			if o.DryRun {
				continue
			}
			base := obj.DeepCopyObject().(client.Object)
			obj.SetFinalizers(keep)
			// Optimistic lock: a controller that changed the object meanwhile wins.
			if err := c.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
				return out, fmt.Errorf("removing the finalizers of %s %s/%s: %w", l.kind, obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
	return out, nil
}

func objects(list client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := list.(type) {
	case *lambdav1alpha1.VersionList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *lambdav1alpha1.LayerVersionList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *lambdav1alpha1.EventSourceMappingList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected list %T", list)
	}
	return out, nil
}
