package shim

import (
	"slices"
	"testing"

	"github.com/klambda/klambda/shim/internal/environment"
)

// TestChildEnvInitializationType: the runtime sees on-demand unless the shim's environment
// (the pod template of a version with provisioned concurrency) says provisioned-concurrency;
// no other value passes through.
func TestChildEnvInitializationType(t *testing.T) {
	cfg := &environment.Config{FunctionName: "f", FunctionVersion: "1"}
	for base, want := range map[string]string{
		"":                        "on-demand",
		"on-demand":               "on-demand",
		"provisioned-concurrency": "provisioned-concurrency",
		"snap-start":              "on-demand",
	} {
		env := []string{"PATH=/bin"}
		if base != "" {
			env = append(env, "AWS_LAMBDA_INITIALIZATION_TYPE="+base)
		}
		got := childEnv(env, cfg, "127.0.0.1:9001")
		if !slices.Contains(got, "AWS_LAMBDA_INITIALIZATION_TYPE="+want) {
			t.Errorf("shim environment %q: child gets %v, want %s", base, got, want)
		}
		n := 0
		for _, kv := range got {
			if len(kv) > 31 && kv[:31] == "AWS_LAMBDA_INITIALIZATION_TYPE=" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("shim environment %q: %d AWS_LAMBDA_INITIALIZATION_TYPE entries", base, n)
		}
	}
}
