package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// What the controllers put on a function's objects and pods for the activator (and the
// pollers) to read.
const (
	// LabelFunction (value: FunctionLabelValue) and LabelVersion (VersionLabelValue) select
	// a version's Deployment, ReplicaSets, pods and Service.
	LabelFunction = "lambda.klambda.dev/function"
	LabelVersion  = "lambda.klambda.dev/version"
	// LabelRevision marks the Deployment and pods of one revision of $LATEST (a hash of its
	// pod template): an update runs the new revision beside the old one until the switch
	// (Function status.servingDeployment).
	LabelRevision = "lambda.klambda.dev/revision"
	// LabelComponent says what a klambda-made object is: invoke-secret, code.
	LabelComponent = "lambda.klambda.dev/component"

	// AnnotationFunctionName and AnnotationQualifier carry the exact names when a label
	// value had to be shortened.
	AnnotationFunctionName = "lambda.klambda.dev/function-name"
	AnnotationQualifier    = "lambda.klambda.dev/qualifier"
	// AnnotationCodeSha256 is the code digest a pod template runs.
	AnnotationCodeSha256 = "lambda.klambda.dev/code-sha256"
	// AnnotationCPULimit, on a pod whose function container starts with the manager's init
	// CPU, is the CPU limit Lambda's share gives that container: the activator resizes it
	// in place to this value once the environment is ready.
	AnnotationCPULimit = "lambda.klambda.dev/cpu-limit"
	// AnnotationInvokeSecret, on a function pod, names the Secret (in the pod's namespace,
	// key InvokeSecretKey, controlled by the pod's Function) whose token the pod's shim
	// wants on its invoke endpoint. The activator reads it from here, never from the env.
	AnnotationInvokeSecret = "lambda.klambda.dev/invoke-secret"

	// AnnotationIdleTimeout on a Function overrides, for its versions, how long an idle
	// environment stays warm (a Go duration, e.g. "30s"; at least 1s). Lambda has no such
	// setting; it lets a cluster keep one function warmer than the rest, and lets tests see
	// scale to zero without waiting the activator's default minutes.
	AnnotationIdleTimeout = "lambda.klambda.dev/idle-timeout"
	// AnnotationAsyncRetryDelays on a Function overrides the waits between function-error
	// retries of its asynchronous events, e.g. "1s,2s" (Lambda: 1 min, then 2 min). The
	// activator reads it only with --async-retry-delay-annotation (off by default), so that
	// end-to-end tests can run Lambda's retries in seconds on a development cluster.
	AnnotationAsyncRetryDelays = "lambda.klambda.dev/async-retry-delays"

	// InvokeSecretKey is the key of the per-function Secret that holds the invoke token.
	InvokeSecretKey = "token"
	// InvokeSecretEnv is the shim's variable holding the invoke token.
	InvokeSecretEnv = "KLAMBDA_INVOKE_SECRET"

	// FunctionContainerName is the name of the function's container in every function pod.
	FunctionContainerName = "function"
	// ShimPort is the shim's invoke port in every function pod.
	ShimPort = 9000

	// FieldManager applies everything the controllers own. ScalerFieldManager only creates a
	// Deployment with replicas 0; the activator then owns spec.replicas with its own manager.
	FieldManager       = "klambda-manager"
	ScalerFieldManager = "klambda-scaler"

	// LatestLabelValue is LabelVersion's value for $LATEST (a label value can't hold "$").
	LatestLabelValue = "latest"
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

// VersionLabelValue is LabelVersion's value for a qualifier: LatestLabelValue for $LATEST,
// else the version number.
func VersionLabelValue(qualifier string) string {
	if qualifier == Latest {
		return LatestLabelValue
	}
	return qualifier
}

// klambda's finalizers: the controllers put the first two, the EventSourceMapping
// reconciler the third; hack/remove-finalizers (internal/finalizers) removes only these.
const (
	FinalizerVersionInUse      = "lambda.klambda.dev/version-in-use"      // Version
	FinalizerLayerInUse        = "lambda.klambda.dev/layer-in-use"        // LayerVersion
	FinalizerEventSourcePoller = "lambda.klambda.dev/event-source-poller" // EventSourceMapping
)
