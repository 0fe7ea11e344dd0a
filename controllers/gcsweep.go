package controllers

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// The bookkeeping the manager's garbage collectors share (CodeStoreGC, DerivedImageGC):
// a collection every interval on the leader, and a sweep that deletes what has gone
// unnamed for a grace period, a bounded number at a time.

// collectEvery runs collect every interval until ctx ends; a failed collection is logged
// as what and retried at the next tick.
func collectEvery(ctx context.Context, interval time.Duration, what string, collect func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := collect(ctx); err != nil {
				logf.FromContext(ctx).Error(err, what)
			}
		}
	}
}

// sweepUnreferenced deletes what stored holds and refs does not name, once it has gone
// unnamed in every sweep for grace: unreferenced records when each stored key was first
// seen unnamed (the caller keeps it between sweeps; a key named again, or gone from the
// store, is forgotten). At most maxDeletes keys go per sweep. del deletes one key and
// reports whether it is gone; a key it could not delete is tried again next sweep. It
// returns the deleted keys.
func sweepUnreferenced(unreferenced map[string]time.Time, stored []string, refs map[string]bool,
	now time.Time, grace time.Duration, maxDeletes int, del func(key string) bool) []string {
	seen := make(map[string]bool, len(stored))
	var deleted []string
	for _, k := range stored {
		seen[k] = true
		if refs[k] {
			delete(unreferenced, k)
			continue
		}
		since, ok := unreferenced[k]
		if !ok {
			unreferenced[k] = now
			continue
		}
		if now.Sub(since) < grace || len(deleted) >= maxDeletes {
			continue
		}
		if !del(k) {
			continue
		}
		delete(unreferenced, k)
		deleted = append(deleted, k)
	}
	for k := range unreferenced {
		if !seen[k] {
			delete(unreferenced, k)
		}
	}
	return deleted
}

// functionsAndVersions lists every Function and Version: what the collectors' references
// are read from.
func functionsAndVersions(ctx context.Context, r client.Reader) ([]lambdav1alpha1.Function, []lambdav1alpha1.Version, error) {
	var fns lambdav1alpha1.FunctionList
	if err := r.List(ctx, &fns); err != nil {
		return nil, nil, err
	}
	var vs lambdav1alpha1.VersionList
	if err := r.List(ctx, &vs); err != nil {
		return nil, nil, err
	}
	return fns.Items, vs.Items, nil
}
