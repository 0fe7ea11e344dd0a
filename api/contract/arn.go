package contract

import "strconv"

// klambda's ARNs look like Lambda's so that SDKs and the CLI accept them:
//
//	arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
//
// region and account are operator settings (api/v1alpha1's DefaultRegion and
// DefaultAccountID by default). The shim builds the ARN its runtime sees when the caller
// names none; the controllers, the activator and the pollers build the rest.

// FunctionARN is the unqualified ARN of a function.
func FunctionARN(region, account, name string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":function:" + name
}

// QualifiedFunctionARN is the ARN of $LATEST, a version or an alias of a function.
func QualifiedFunctionARN(region, account, name, qualifier string) string {
	return FunctionARN(region, account, name) + ":" + qualifier
}

// LayerARN is the ARN of a layer (all its versions).
func LayerARN(region, account, layerName string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":layer:" + layerName
}

// LayerVersionARN is the ARN of one version of a layer.
func LayerVersionARN(region, account, layerName string, version int64) string {
	return LayerARN(region, account, layerName) + ":" + strconv.FormatInt(version, 10)
}

// EventSourceMappingARN is the ARN of an event source mapping.
func EventSourceMappingARN(region, account, uuid string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":event-source-mapping:" + uuid
}
