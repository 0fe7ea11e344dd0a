package v1alpha1_test

import (
	"strings"
	"testing"

	lambda "github.com/klambda/klambda/api/v1alpha1"
)

// Issue #15, finding 1: every NATS subject a tenant writes (Function, Version and Alias
// destinations, dead-letter targets, EventSourceMapping on-failure destinations) refuses
// NATS's reserved subjects ($JS.API..., $SYS..., _INBOX...), wildcards and whitespace.
func TestNATSDestinationSubjectValidation(t *testing.T) {
	const reserved = "reserved for NATS itself"
	onFailure := func(subject string) func(*lambda.Function) {
		return func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{OnFailure: nats(subject)}}
		}
	}
	onSuccess := func(subject string) func(*lambda.Function) {
		return func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{OnSuccess: nats(subject)}}
		}
	}
	deadLetter := func(subject string) func(*lambda.Function) {
		return func(f *lambda.Function) { f.Spec.DeadLetterConfig = &lambda.DeadLetterConfig{Target: *nats(subject)} }
	}
	const dlqPath = "spec.deadLetterConfig.target.nats.subject"
	const onFailurePath = "spec.eventInvokeConfig.destinationConfig.onFailure.nats.subject"
	runCreateChecks(t, []createCheck{
		accept("plain subject", zipFunction(deadLetter("orders.failed"))),
		accept("subject with $ and _ inside", zipFunction(deadLetter("orders.$x._y"))),
		accept("subject of 255 characters", zipFunction(deadLetter(strings.Repeat("a", 255)))),
		reject("dead letter to the JetStream purge API", zipFunction(deadLetter("$JS.API.STREAM.PURGE.KLAMBDA_ASYNC")), dlqPath, reserved),
		reject("dead letter to the JetStream delete API", zipFunction(deadLetter("$JS.API.STREAM.DELETE.KLAMBDA_ASYNC")), dlqPath, reserved),
		reject("dead letter to $SYS", zipFunction(deadLetter("$SYS.REQ.SERVER.PING")), dlqPath, reserved),
		reject("dead letter to $KV", zipFunction(deadLetter("$KV.klambda-async-state.x")), dlqPath, reserved),
		reject("dead letter to an inbox", zipFunction(deadLetter("_INBOX.abc")), dlqPath, reserved),
		reject("onFailure to $JS", zipFunction(onFailure("$JS.API.STREAM.PURGE.X")), onFailurePath, reserved),
		reject("onSuccess to _R_", zipFunction(onSuccess("_R_.x")), "spec.eventInvokeConfig.destinationConfig.onSuccess.nats.subject", reserved),
		reject("wildcard *", zipFunction(deadLetter("orders.*")), dlqPath, "should match"),
		reject("wildcard >", zipFunction(deadLetter("orders.>")), dlqPath, "should match"),
		reject("space", zipFunction(deadLetter("orders failed")), dlqPath, "should match"),
		reject("tab", zipFunction(deadLetter("orders\tfailed")), dlqPath, "should match"),
		reject("empty token", zipFunction(deadLetter("orders..failed")), dlqPath, "should match"),
		reject("leading dot", zipFunction(deadLetter(".orders")), dlqPath, "should match"),
		reject("trailing dot", zipFunction(deadLetter("orders.")), dlqPath, "should match"),
		reject("Version's destination", with(version(), func(v *lambda.Version) {
			v.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{OnFailure: nats("$JS.API.STREAM.PURGE.X")}}
		}), onFailurePath, reserved),
		reject("Alias's destination", alias(func(a *lambda.Alias) {
			a.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{OnFailure: nats("_INBOX.x")}}
		}), onFailurePath, reserved),
		reject("EventSourceMapping's on-failure destination", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.DestinationConfig = &lambda.EventSourceMappingDestinationConfig{OnFailure: nats("$JS.API.STREAM.DELETE.X")}
		}), "spec.destinationConfig.onFailure.nats.subject", reserved),
	})
}

// The delivery-time check refuses what the schema refuses.
func TestValidateNATSDestinationSubject(t *testing.T) {
	for s, ok := range map[string]bool{
		"orders.failed": true, "a": true, "a.$b._c": true, strings.Repeat("a", 255): true,
		"": false, strings.Repeat("a", 256): false, "$JS.API.STREAM.PURGE.X": false, "$SYS.X": false, "_INBOX.x": false,
		"a.*": false, "a.>": false, ">": false, "a b": false, "a\tb": false, "a\nb": false, "a\x00b": false, "a\x7fb": false,
		"a..b": false, ".a": false, "a.": false,
	} {
		if err := lambda.ValidateNATSDestinationSubject(s); (err == nil) != ok {
			t.Errorf("ValidateNATSDestinationSubject(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}
