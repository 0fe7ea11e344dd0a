package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Pre-warmed environments (docs/pools.md): generic pods of a runtime image, architecture
// and memory size wait with the shim up (`runtime-shim generic`) and no function code,
// secrets or identity. A cold start specializes one with POST SpecializePath; from then
// on the pod belongs to that function for life.
const (
	// SpecializePath is the generic shim's one-time specialization endpoint (port ShimPort).
	SpecializePath = "/klambda/v1/specialize"
	// HeaderPoolSecret carries the pool's secret on a specialization; the generic shim
	// checks it before it reads the body, as the invoke secret.
	HeaderPoolSecret = "X-Klambda-Pool-Secret"
	// PoolSecretEnv is the generic shim's variable holding the pool's secret. It never
	// reaches the runtime.
	PoolSecretEnv = "KLAMBDA_POOL_SECRET"
	// PoolSecretName is the Secret (key InvokeSecretKey) in every namespace with a pool;
	// pool pods name it in AnnotationInvokeSecret, as function pods name theirs.
	PoolSecretName = "klambda-pool"

	// LabelPool (value: PoolKey.LabelValue) marks a generic pod of a pool, and its
	// Deployment. A specialized pod no longer carries it.
	LabelPool = "lambda.klambda.dev/pool"
	// LabelPoolEnvironment ("true") marks a pod made by a pool, generic or specialized: a
	// claim keeps it, so that the pool's NetworkPolicy, which selects it, admits the
	// activator without a gap while the pod's other labels change. (kube-router restores a
	// sync's ipsets before its iptables rules: a pod that left the pool policy's selection
	// refused connections until the rules caught up, ~60 ms.)
	LabelPoolEnvironment = "lambda.klambda.dev/pool-environment"
	// AnnotationPoolKey is the pool's key in full (PoolKey.String) on its pods.
	AnnotationPoolKey = "lambda.klambda.dev/pool-key"
	// AnnotationSpecializedFrom is set on a pod taken from a pool: the key it came from.
	AnnotationSpecializedFrom = "lambda.klambda.dev/specialized-from"

	// MaxSpecializationBytes bounds a specialization's body.
	MaxSpecializationBytes = 256 << 10
)

// PoolKey identifies a pool: what a generic pod cannot change once started.
type PoolKey struct {
	// Runtime is the Function runtime (e.g. provided.al2023); its image comes from the
	// manager's runtimeImages.
	Runtime string `json:"runtime"`
	// Architecture is x86_64 or arm64.
	Architecture string `json:"architecture"`
	// MemoryMB is the memory size of the pod's container (the function's memorySize).
	MemoryMB int32 `json:"memoryMB"`
}

// String is the key in full: runtime/architecture/memory.
func (k PoolKey) String() string {
	return k.Runtime + "/" + k.Architecture + "/" + strconv.Itoa(int(k.MemoryMB))
}

// LabelValue is LabelPool's value: 16 hex digits of the key's SHA-256 (a runtime name
// holds characters a label value may not).
func (k PoolKey) LabelValue() string {
	sum := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(sum[:8])
}

// PoolWorkloadName is the name of a pool's Deployment in its namespace.
func (k PoolKey) PoolWorkloadName() string {
	return fmt.Sprintf("klambda-pool-%s", k.LabelValue())
}

// Specialization is what a generic shim is given to become one function's environment:
// the body of POST SpecializePath (JSON).
type Specialization struct {
	// Env is the runtime's environment in order: Lambda's variables and the function's own
	// (Secret values resolved), as the one-container pod's function container would have
	// them. The shim reads its configuration (AWS_LAMBDA_FUNCTION_NAME, ..._TIMEOUT, ...)
	// from it.
	Env []EnvVar `json:"env"`
	// InvokeSecret is the function's invoke token; from now on every invoke must carry it
	// and the pool's secret is no longer accepted.
	InvokeSecret string `json:"invokeSecret"`
	// Command is the runtime's command (what follows `--` in runtime-shim exec).
	Command []string `json:"command"`
	// Code and Layers are load-code SOURCEs, unpacked before the runtime starts.
	Code   string   `json:"code,omitempty"`
	Layers []string `json:"layers,omitempty"`
}

// EnvVar is one variable of a Specialization.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// AnnotationSpecialization, on a function version's Deployment whose pods a pool can
// serve, is its SpecializationTemplate (JSON): what a generic pod of Pool is given to
// become one of that Deployment's environments. AnnotationPoolIneligible says instead why
// a version whose runtime, architecture and memory have a pool cannot use it.
const (
	AnnotationSpecialization = "lambda.klambda.dev/specialization"
	AnnotationPoolIneligible = "lambda.klambda.dev/pool-ineligible"
)

// SpecializationTemplate is a Specialization before the activator fills it in for one
// pod: Secret values are references, the pod's UID a field reference.
type SpecializationTemplate struct {
	Pool PoolKey `json:"pool"`
	// Env in order; literal values are written as in a pod spec ($$ for $, $(NAME) for an
	// earlier variable: ExpandEnv).
	Env     []TemplateEnvVar `json:"env"`
	Command []string         `json:"command"`
	Code    string           `json:"code,omitempty"`
	Layers  []string         `json:"layers,omitempty"`
	// InvokeSecretName is the function's invoke Secret (key InvokeSecretKey).
	InvokeSecretName string `json:"invokeSecretName"`
}

// TemplateEnvVar is one variable: a literal Value, a SecretKeyRef in the pod's namespace,
// or the pod's UID (PodUID).
type TemplateEnvVar struct {
	Name         string        `json:"name"`
	Value        string        `json:"value,omitempty"`
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
	PodUID       bool          `json:"podUID,omitempty"`
}

// SecretKeyRef names a key of a Secret in the function's namespace.
type SecretKeyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional bool   `json:"optional,omitempty"`
}

// ExpandEnv expands a literal value as the kubelet expands a container's variable: "$$"
// is "$", "$(NAME)" is the value of an earlier variable NAME (left as written when there
// is none), anything else is kept.
func ExpandEnv(value string, earlier func(string) (string, bool)) string {
	var b []byte
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c != '$' || i+1 >= len(value) {
			b = append(b, c)
			continue
		}
		switch value[i+1] {
		case '$':
			b = append(b, '$')
			i++
		case '(':
			end := -1
			for j := i + 2; j < len(value); j++ {
				if value[j] == ')' {
					end = j
					break
				}
			}
			if end < 0 {
				b = append(b, value[i:]...)
				return string(b)
			}
			if v, ok := earlier(value[i+2 : end]); ok {
				b = append(b, v...)
			} else {
				b = append(b, value[i:end+1]...)
			}
			i = end
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
