package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/klambda/klambda/api/contract"
)

// Labels, annotations and field managers other components rely on.
const (
	// LabelFunction and LabelVersion select a version's Deployment, pods and Service.
	// LabelVersion is "latest" for $LATEST (a label value can't hold "$") or the number.
	LabelFunction = contract.LabelFunction
	LabelVersion  = contract.LabelVersion
	// LabelComponent says what a klambda-made object is: invoke-secret, code.
	LabelComponent = "lambda.klambda.dev/component"
	// AnnotationFunctionName and AnnotationQualifier carry the exact names when a label
	// value had to be shortened.
	AnnotationFunctionName = "lambda.klambda.dev/function-name"
	AnnotationQualifier    = "lambda.klambda.dev/qualifier"
	// AnnotationCodeSha256 is the code digest a pod template runs.
	AnnotationCodeSha256 = "lambda.klambda.dev/code-sha256"

	// FieldManager applies everything the controllers own. ScalerFieldManager only creates a
	// Deployment with replicas 0; the activator then owns spec.replicas with its own manager.
	FieldManager       = "klambda-manager"
	ScalerFieldManager = "klambda-scaler"

	// InvokeSecretKey is the key of the per-function Secret that holds the token the
	// activator presents to the shim (KLAMBDA_INVOKE_SECRET).
	InvokeSecretKey = "token"

	// LatestLabelValue is LabelVersion's value for $LATEST.
	LatestLabelValue = "latest"
	Latest           = "$LATEST"

	// Finalizers.
	versionFinalizer = "lambda.klambda.dev/version-in-use"
	layerFinalizer   = "lambda.klambda.dev/layer-in-use"
)

var notDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// shortName joins parts into a DNS-1035 label (≤ 63 characters, starting with a letter):
// when too long, it is truncated and ends with a hash of the full name, so two long names
// never collide.
func shortName(parts ...string) string {
	full := strings.Join(parts, "-")
	n := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(full), "-"), "-")
	if n == "" || n[0] < 'a' || n[0] > 'z' {
		n = "fn-" + n
	}
	if len(n) <= 63 && n == full {
		return n
	}
	if len(n) <= 63 && n != full {
		// A changed name (prefix, replaced characters) could collide with another one: hash it.
		if len(n) <= 63-9 {
			return n + "-" + hash8(full)
		}
	}
	return strings.TrimRight(n[:63-9], "-") + "-" + hash8(full)
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:8]
}

// labelValue is LabelFunction's value for a function name (≤ 63 characters, the tail
// hashed when longer): the definition the activator shares.
func labelValue(function string) string { return contract.FunctionLabelValue(function) }

// versionLabel is LabelVersion's value for a qualifier ($LATEST or a number).
func versionLabel(qualifier string) string {
	if qualifier == Latest {
		return LatestLabelValue
	}
	return qualifier
}

// WorkloadName is the name of the Deployment and of the headless Service of a function's
// version: <function>-latest or <function>-v<N>, shortened with a hash when needed.
func WorkloadName(function, qualifier string) string {
	if qualifier == Latest {
		return shortName(function, "latest")
	}
	return shortName(function, "v"+qualifier)
}

// InvokeSecretName is the per-function Secret with the invoke token (key InvokeSecretKey).
func InvokeSecretName(function string) string { return shortName(function, "invoke") }

// codeConfigMapName is the immutable copy of ConfigMap code, named by its digest.
func codeConfigMapName(owner, hexDigest string) string {
	return shortName(owner, "code", hexDigest[:12])
}

// selectorLabels select the pods of one version of a function.
func selectorLabels(function, qualifier string) map[string]string {
	return map[string]string{LabelFunction: labelValue(function), LabelVersion: versionLabel(qualifier)}
}
