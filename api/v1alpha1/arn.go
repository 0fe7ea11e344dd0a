package v1alpha1

import "github.com/klambda/klambda/api/contract"

// klambda's ARNs look like Lambda's so that SDKs and the CLI accept them:
//
//	arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
//
// region and account are operator settings (flags of the manager and activator), by default
// DefaultRegion and DefaultAccountID. The namespace is not in the ARN: Lambda names are
// unique within a namespace, and the Invoke API selects the namespace with its
// /namespaces/{ns} path prefix, as it would select an account.
const (
	DefaultRegion    = "us-east-1"
	DefaultAccountID = "000000000000"
)

// The builders below are api/contract's (which the shim, importing no Kubernetes package,
// uses too), kept here for the API packages that build ARNs from the CRD types.

// FunctionARN is the unqualified ARN of a function.
func FunctionARN(region, account, name string) string {
	return contract.FunctionARN(region, account, name)
}

// QualifiedFunctionARN is the ARN of $LATEST, a version or an alias of a function.
func QualifiedFunctionARN(region, account, name, qualifier string) string {
	return contract.QualifiedFunctionARN(region, account, name, qualifier)
}

// LayerARN is the ARN of a layer (all its versions).
func LayerARN(region, account, layerName string) string {
	return contract.LayerARN(region, account, layerName)
}

// LayerVersionARN is the ARN of one version of a layer.
func LayerVersionARN(region, account, layerName string, version int64) string {
	return contract.LayerVersionARN(region, account, layerName, version)
}

// EventSourceMappingARN is the ARN of an event source mapping.
func EventSourceMappingARN(region, account, uuid string) string {
	return contract.EventSourceMappingARN(region, account, uuid)
}

// EffectiveName is the alias name callers use: spec.name, or metadata.name when it is empty.
func (a *Alias) EffectiveName() string {
	if a.Spec.Name != "" {
		return a.Spec.Name
	}
	return a.Name
}

// EffectiveLayerName is the layer's name: spec.layerName, or metadata.name when it is empty.
func (l *LayerVersion) EffectiveLayerName() string {
	if l.Spec.LayerName != "" {
		return l.Spec.LayerName
	}
	return l.Name
}
