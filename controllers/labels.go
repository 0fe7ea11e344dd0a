package controllers

import (
	"maps"

	"github.com/klambda/klambda/api/contract"
)

// Kubernetes' recommended labels (app.kubernetes.io/*), on every object the manager makes
// and on function and pool pods, for people and tools; nothing of klambda selects by them
// (its own labels are api/contract's). They are never in a selector: a Deployment's is
// immutable.
const (
	labelAppName      = "app.kubernetes.io/name"
	labelAppInstance  = "app.kubernetes.io/instance"
	labelAppComponent = "app.kubernetes.io/component"
	labelAppPartOf    = "app.kubernetes.io/part-of"
	labelAppManagedBy = "app.kubernetes.io/managed-by"

	appPartOf    = "klambda"
	appManagedBy = contract.FieldManager
)

// Values of labelAppComponent: which part of klambda an object serves.
const (
	appComponentFunction = "function"
	appComponentPool     = "pool"
	appComponentLayer    = "layer"
)

// functionAppLabels are the recommended labels of a function's objects and pods. The
// instance is contract.FunctionLabelValue: a function name may be one character longer
// than a label value.
func functionAppLabels(function string) map[string]string {
	return map[string]string{
		labelAppName:      "klambda-" + appComponentFunction,
		labelAppInstance:  contract.FunctionLabelValue(function),
		labelAppComponent: appComponentFunction,
		labelAppPartOf:    appPartOf,
		labelAppManagedBy: appManagedBy,
	}
}

// sharedAppLabels are the recommended labels of an object of a component (pool, layer) that
// serves a namespace, not one function.
func sharedAppLabels(component string) map[string]string {
	return map[string]string{
		labelAppName:      "klambda-" + component,
		labelAppComponent: component,
		labelAppPartOf:    appPartOf,
		labelAppManagedBy: appManagedBy,
	}
}

// withLabels is labels and then extra (extra wins), in a new map.
func withLabels(labels, extra map[string]string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, extra)
	return out
}
