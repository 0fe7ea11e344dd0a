// Package controllers reconciles klambda's Function, Version, Alias and LayerVersion
// objects into the Deployments, headless Services and Secrets that run them.
package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"
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
	if len(cfg.Pools) > 0 {
		// Only with pools configured: removing every pool from the configuration leaves the
		// pool objects of earlier runs (docs/pools.md, "Operating").
		if err := (&PoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Config: cfg}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return (&LayerVersionReconciler{Client: mgr.GetClient(), Resolver: resolver, Recorder: rec("klambda-layerversion"), Config: cfg}).SetupWithManager(mgr)
}
