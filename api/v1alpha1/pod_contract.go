package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// What the controllers put on a function's pods for the activator to read: one definition
// for both sides of that contract (controllers/README.md, "What other components can rely
// on").
const (
	// AnnotationCPULimit, on a pod whose function container starts with the manager's init
	// CPU, is the CPU limit Lambda's share gives that container: the activator resizes it
	// in place to this value once the environment is ready.
	AnnotationCPULimit = "lambda.klambda.dev/cpu-limit"
	// FunctionContainerName is the name of the function's container in every function pod.
	FunctionContainerName = "function"

	// LabelFunction (value: FunctionLabelValue) and LabelVersion ("latest" or the version
	// number) select a version's Deployment, ReplicaSets, pods and Service.
	LabelFunction = "lambda.klambda.dev/function"
	LabelVersion  = "lambda.klambda.dev/version"
)

// maxLabelValue is the longest label value Kubernetes accepts.
const maxLabelValue = 63

// FunctionLabelValue is LabelFunction's value for a function: its name, or for a name
// longer than a label value may be (function names go up to 64 characters), its first 54
// characters and 8 hex digits of the whole name's SHA-256. The controllers write it and
// the activator looks pods and Deployments up by it; a label value never identifies a
// function alone (two long names could share one): the owner chain does.
func FunctionLabelValue(name string) string {
	if len(name) <= maxLabelValue {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:maxLabelValue-9], "-_.") + "-" + hex.EncodeToString(sum[:])[:8]
}
