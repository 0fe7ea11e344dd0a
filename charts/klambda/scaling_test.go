package klambda_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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

// eventsources.sqsMaxConcurrency reaches the pollers' --sqs-max-concurrency (100 by
// default); the schema refuses values outside maximumConcurrency's range, 2-1000.
func TestChartSQSMaxConcurrency(t *testing.T) {
	pollerArgs := func(set ...string) []string {
		t.Helper()
		objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.plainHTTP=true", "eventsources.enabled=true"}, set...)...)
		if errOut != "" {
			t.Fatalf("--set %v: %s", set, errOut)
		}
		return decode[appsv1.Deployment](t, objs, "Deployment/klambda-eventsources").Spec.Template.Spec.Containers[0].Args
	}
	if args := pollerArgs(); !slices.Contains(args, "--sqs-max-concurrency=100") {
		t.Errorf("default args %v lack --sqs-max-concurrency=100", args)
	}
	if args := pollerArgs("eventsources.sqsMaxConcurrency=1000"); !slices.Contains(args, "--sqs-max-concurrency=1000") {
		t.Errorf("args %v lack --sqs-max-concurrency=1000", args)
	}
	for _, v := range []string{"1", "1001", "many"} {
		if _, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", "eventsources.sqsMaxConcurrency="+v); !strings.Contains(errOut, "at '/eventsources/sqsMaxConcurrency'") {
			t.Errorf("sqsMaxConcurrency=%s: helm said %q", v, errOut)
		}
	}
}
