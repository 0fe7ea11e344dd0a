package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/klambda/klambda/api/contract"
)

// Finalizers. (Labels, annotations, field managers and the invoke Secret's key are the pod
// contract's: api/contract.)
const (
	versionFinalizer = contract.FinalizerVersionInUse
	layerFinalizer   = contract.FinalizerLayerInUse
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

// WorkloadName is the name of the Deployment and of the headless Service of a function's
// version: <function>-latest or <function>-v<N>, shortened with a hash when needed.
func WorkloadName(function, qualifier string) string {
	if qualifier == contract.Latest {
		return shortName(function, "latest")
	}
	return shortName(function, "v"+qualifier)
}

// InvokeSecretName is the per-function Secret with the invoke token (key
// contract.InvokeSecretKey).
func InvokeSecretName(function string) string { return shortName(function, "invoke") }

// codeConfigMapName is the immutable copy of ConfigMap code, named by its digest.
func codeConfigMapName(owner, hexDigest string) string {
	return shortName(owner, "code", hexDigest[:12])
}

// selectorLabels select the pods of one version of a function.
func selectorLabels(function, qualifier string) map[string]string {
	return map[string]string{contract.LabelFunction: contract.FunctionLabelValue(function), contract.LabelVersion: contract.VersionLabelValue(qualifier)}
}
