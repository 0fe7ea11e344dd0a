package klambda_test

import (
	"slices"
	"strings"
	"testing"
)

// The scaling rate is on by default, at Lambda's per-function 1,000 per 10 s, and its
// values reach the activator's flags.
func TestChartScalingRate(t *testing.T) {
	args := activatorArgs(t)
	for _, want := range []string{"--scaling-model=function", "--scaling-burst=1000", "--scaling-rate=1000", "--scaling-interval=10s"} {
		if !slices.Contains(args, want) {
			t.Errorf("default args %v lack %s", args, want)
		}
	}
	args = activatorArgs(t, "activator.scaling.model=namespace", "activator.scaling.burst=3000", "activator.scaling.rate=500", "activator.scaling.interval=1m")
	for _, want := range []string{"--scaling-model=namespace", "--scaling-burst=3000", "--scaling-rate=500", "--scaling-interval=1m"} {
		if !slices.Contains(args, want) {
			t.Errorf("namespace model: args %v lack %s", args, want)
		}
	}
}

func TestChartRefusesBadScalingRate(t *testing.T) {
	for set, want := range map[string]string{
		"activator.scaling.model=account": `activator.scaling.model "account"`,
		"activator.scaling.burst=0":       "activator.scaling.burst and activator.scaling.rate must be at least 1",
		"activator.scaling.rate=-1":       "activator.scaling.burst and activator.scaling.rate must be at least 1",
	} {
		if _, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", set); !strings.Contains(errOut, want) {
			t.Errorf("--set %s: helm said %q, want %q", set, errOut, want)
		}
	}
}
