// Package controllers reconciles klambda's Function, Version, Alias and LayerVersion
// objects into the Deployments, headless Services and Secrets that run them.
package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Setup registers every controller of the package with the manager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	resolver := &Resolver{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Config: cfg}
	store, err := NewCodeStore(cfg)
	if err != nil {
		return err
	}
	if store != nil {
		resolver.Store = store
		c := cfg.CodeStore
		if err := mgr.Add(&CodeStoreGC{Reader: mgr.GetClient(), Store: store, Interval: c.GCInterval.Duration, Grace: c.GCGrace.Duration, MaxDeletes: c.GCMaxDeletes}); err != nil {
			return err
		}
	}
	deriver, err := NewImageDeriver(cfg)
	if err != nil {
		return err
	}
	if deriver != nil {
		if err := mgr.Add(NewDerivedImageGC(mgr.GetClient(), deriver)); err != nil {
			return err
		}
	}
	rec := mgr.GetEventRecorder
	if err := (&FunctionReconciler{Client: mgr.GetClient(), Resolver: resolver, Recorder: rec("klambda-function"), Config: cfg, Deriver: deriver}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&VersionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: rec("klambda-version"), Config: cfg}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&AliasReconciler{Client: mgr.GetClient(), Recorder: rec("klambda-alias"), Config: cfg}).SetupWithManager(mgr); err != nil {
		return err
	}
	pools := &PoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Config: cfg}
	if len(cfg.Pools) > 0 {
		if err := pools.SetupWithManager(mgr); err != nil {
			return err
		}
	} else {
		// Without pools no controller watches every function Deployment for them: once at
		// start, the pool objects an earlier configuration left are removed.
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			if err := pools.RemoveLeftoverPools(ctx); err != nil {
				logf.FromContext(ctx).Error(err, "removing the pools an earlier configuration left; they stay until the next start")
			}
			return nil
		})); err != nil {
			return err
		}
	}
	return (&LayerVersionReconciler{Client: mgr.GetClient(), Resolver: resolver, Recorder: rec("klambda-layerversion"), Config: cfg}).SetupWithManager(mgr)
}
