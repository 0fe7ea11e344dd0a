package v1alpha1_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambda "github.com/klambda/klambda/api/v1alpha1"
)

func version(changes ...func(*lambda.Version)) *lambda.Version {
	v := &lambda.Version{
		ObjectMeta: metav1.ObjectMeta{Name: "my-function-v1"},
		Spec:       lambda.VersionSpec{FunctionName: "my-function", Description: "first"},
	}
	return with(v, changes...)
}

func alias(changes ...func(*lambda.Alias)) *lambda.Alias {
	a := &lambda.Alias{
		ObjectMeta: metav1.ObjectMeta{Name: "live"},
		Spec:       lambda.AliasSpec{FunctionName: "my-function", FunctionVersion: "1"},
	}
	return with(a, changes...)
}

func weights(w map[string]float64) func(*lambda.Alias) {
	return func(a *lambda.Alias) {
		a.Spec.RoutingConfig = &lambda.AliasRoutingConfiguration{AdditionalVersionWeights: w}
	}
}

func TestVersionValidation(t *testing.T) {
	runCreateChecks(t, []createCheck{
		accept("version", version()),
		accept("version with preconditions and provisioned concurrency", version(func(v *lambda.Version) {
			v.Spec.CodeSha256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
			v.Spec.RevisionID = "0b6a3a51-2c3c-4b8e-9f0e-6f1f7c3e0a11"
			v.Spec.ProvisionedConcurrentExecutions = ptr(int32(1))
		})),
		reject("without functionName", version(func(v *lambda.Version) { v.Spec.FunctionName = "" }),
			"spec.functionName", "at least 1 chars long"),
		reject("functionName that isn't a Function name", version(func(v *lambda.Version) { v.Spec.FunctionName = "My_Function" }),
			"spec.functionName", "should match"),
		reject("provisioned concurrency 0", version(func(v *lambda.Version) { v.Spec.ProvisionedConcurrentExecutions = ptr(int32(0)) }),
			"spec.provisionedConcurrentExecutions", "greater than or equal to 1"),
		reject("codeSha256 that isn't base64 SHA-256", version(func(v *lambda.Version) { v.Spec.CodeSha256 = "abc" }),
			"spec.codeSha256", "should match"),
		reject("description over 256", version(func(v *lambda.Version) { v.Spec.Description = strings.Repeat("d", 257) }),
			"spec.description", "may not be more than 256"),
		reject("eventInvokeConfig retries over 2", version(func(v *lambda.Version) {
			v.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{MaximumRetryAttempts: ptr(int32(5))}
		}), "spec.eventInvokeConfig.maximumRetryAttempts", "less than or equal to 2"),
	})
}

func TestVersionUpdates(t *testing.T) {
	const immutable = "a published version is immutable: only provisionedConcurrentExecutions and eventInvokeConfig can be changed"
	runUpdateChecks(t, []updateCheck{
		updateTo("description can't change", version(), func(v *lambda.Version) { v.Spec.Description = "second" }, "spec", immutable),
		updateTo("description can't be removed", version(), func(v *lambda.Version) { v.Spec.Description = "" }, "spec", immutable),
		updateTo("functionName can't change", version(), func(v *lambda.Version) { v.Spec.FunctionName = "other" }, "spec", immutable),
		updateTo("codeSha256 can't be added", version(), func(v *lambda.Version) {
			v.Spec.CodeSha256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
		}, "spec", immutable),
		updateTo("revisionId can't change", version(func(v *lambda.Version) { v.Spec.RevisionID = "a" }), func(v *lambda.Version) { v.Spec.RevisionID = "b" }, "spec", immutable),
		updateTo("provisioned concurrency can change", version(), func(v *lambda.Version) { v.Spec.ProvisionedConcurrentExecutions = ptr(int32(3)) }),
		updateTo("eventInvokeConfig can change", version(), func(v *lambda.Version) {
			v.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{MaximumRetryAttempts: ptr(int32(0)),
				DestinationConfig: &lambda.DestinationConfig{OnFailure: nats("failed")}}
		}),
	})
}

func TestAliasValidation(t *testing.T) {
	runCreateChecks(t, []createCheck{
		accept("alias", alias()),
		accept("alias of $LATEST", alias(func(a *lambda.Alias) { a.Spec.FunctionVersion = "$LATEST" })),
		accept("weighted alias", alias(weights(map[string]float64{"2": 0.1}))),
		accept("weights at the bounds", alias(weights(map[string]float64{"2": 1.0}))),
		accept("empty weights (shift complete)", alias(weights(map[string]float64{}))),
		accept("Lambda name in spec.name", alias(func(a *lambda.Alias) { a.Name = "my.function.prod"; a.Spec.Name = "PROD_2" })),
		reject("all-digit metadata.name", alias(func(a *lambda.Alias) { a.Name = "123" }),
			"spec.name", "can't be all digits"),
		reject("all-digit spec.name", alias(func(a *lambda.Alias) { a.Spec.Name = "42" }),
			"spec.name", "can't be all digits"),
		reject("spec.name with a dot", alias(func(a *lambda.Alias) { a.Spec.Name = "v1.2" }),
			"spec.name", "only letters, digits, hyphens and underscores"),
		reject("metadata.name with a dot and no spec.name", alias(func(a *lambda.Alias) { a.Name = "prod.eu" }),
			"spec.name", "only letters, digits, hyphens and underscores"),
		reject("spec.name over 128", alias(func(a *lambda.Alias) { a.Spec.Name = strings.Repeat("a", 129) }),
			"spec.name", "128"),
		reject("metadata.name over 128 and no spec.name", alias(func(a *lambda.Alias) { a.Name = strings.Repeat("a", 129) }),
			"spec.name", "at most 128 characters"),
		reject("without functionName", alias(func(a *lambda.Alias) { a.Spec.FunctionName = "" }),
			"spec.functionName", "at least 1 chars long"),
		reject("functionVersion that isn't a version", alias(func(a *lambda.Alias) { a.Spec.FunctionVersion = "v1" }),
			"spec.functionVersion", "should match"),
		reject("two additional versions", alias(func(a *lambda.Alias) {
			a.Spec.FunctionVersion = "1"
			weights(map[string]float64{"2": 0.1, "3": 0.1})(a)
		}), "spec.routingConfig.additionalVersionWeights", "must have at most 1 item"),
		reject("weight over 1.0", alias(weights(map[string]float64{"2": 1.5})),
			"spec.routingConfig.additionalVersionWeights", "between 0.0 and 1.0"),
		reject("negative weight", alias(weights(map[string]float64{"2": -0.1})),
			"spec.routingConfig.additionalVersionWeights", "between 0.0 and 1.0"),
		reject("additional version that isn't a number", alias(weights(map[string]float64{"$LATEST": 0.1})),
			"spec.routingConfig.additionalVersionWeights", "must be version numbers"),
		reject("additional version equal to the primary", alias(weights(map[string]float64{"1": 0.5})),
			"spec.routingConfig.additionalVersionWeights", "the additional version must differ from functionVersion"),
		reject("weighted alias on $LATEST", alias(func(a *lambda.Alias) {
			a.Spec.FunctionVersion = "$LATEST"
			weights(map[string]float64{"2": 0.5})(a)
		}), "spec.functionVersion", "an alias with routingConfig must point to a published version, not $LATEST"),
		reject("provisioned concurrency 0", alias(func(a *lambda.Alias) { a.Spec.ProvisionedConcurrentExecutions = ptr(int32(0)) }),
			"spec.provisionedConcurrentExecutions", "greater than or equal to 1"),
		accept("function URL on an alias", alias(func(a *lambda.Alias) {
			a.Spec.FunctionURLConfig = &lambda.FunctionURLConfig{AuthType: "NONE", InvokeMode: "RESPONSE_STREAM"}
		})),
	})
}

func TestAliasUpdates(t *testing.T) {
	runUpdateChecks(t, []updateCheck{
		updateTo("functionName can't change", alias(), func(a *lambda.Alias) { a.Spec.FunctionName = "other" },
			"spec.functionName", "functionName is immutable"),
		updateTo("name can't change", alias(func(a *lambda.Alias) { a.Spec.Name = "PROD" }), func(a *lambda.Alias) { a.Spec.Name = "STAGING" },
			"spec.name", "name is immutable"),
		updateTo("name can't be added", alias(), func(a *lambda.Alias) { a.Spec.Name = "PROD" },
			"spec.name", "name is immutable"),
		updateTo("provisioned concurrency can't change while weighted", alias(weights(map[string]float64{"2": 0.1})), func(a *lambda.Alias) {
			a.Spec.ProvisionedConcurrentExecutions = ptr(int32(4))
		}, "spec.provisionedConcurrentExecutions", "while the routing configuration is in place"),
		updateTo("provisioned concurrency can change once the shift is complete", alias(weights(map[string]float64{"2": 0.1})), func(a *lambda.Alias) {
			a.Spec.FunctionVersion = "2"
			a.Spec.RoutingConfig = nil
			a.Spec.ProvisionedConcurrentExecutions = ptr(int32(4))
		}),
		updateTo("version and weights can change", alias(), func(a *lambda.Alias) {
			a.Spec.FunctionVersion = "2"
			weights(map[string]float64{"3": 0.25})(a)
		}),
	})
}
