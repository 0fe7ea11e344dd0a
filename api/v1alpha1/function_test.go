package v1alpha1_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambda "github.com/klambda/klambda/api/v1alpha1"
)

const testSHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// zipFunction is a valid Zip function.
func zipFunction(changes ...func(*lambda.Function)) *lambda.Function {
	f := &lambda.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "my-function"},
		Spec: lambda.FunctionSpec{FunctionConfiguration: lambda.FunctionConfiguration{
			Runtime: "nodejs20.x",
			Handler: "index.handler",
			Code:    lambda.FunctionCode{CodeSource: lambda.CodeSource{URL: "https://example.com/f.zip", SHA256: testSHA256}},
		}},
	}
	return with(f, changes...)
}

// imageFunction is a valid Image function.
func imageFunction(changes ...func(*lambda.Function)) *lambda.Function {
	f := &lambda.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "my-image-function"},
		Spec: lambda.FunctionSpec{FunctionConfiguration: lambda.FunctionConfiguration{
			PackageType: lambda.PackageTypeImage,
			Code:        lambda.FunctionCode{ImageURI: "registry.example.com/fn:1"},
		}},
	}
	return with(f, changes...)
}

func envVars(vars ...lambda.EnvVar) func(*lambda.Function) {
	return func(f *lambda.Function) { f.Spec.Environment = &lambda.Environment{Variables: vars} }
}

func literal(name, value string) lambda.EnvVar { return lambda.EnvVar{Name: name, Value: value} }

func fromSecret(name string) lambda.EnvVar {
	return lambda.EnvVar{Name: name, ValueFrom: &lambda.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}
}

func nats(subject string) *lambda.Destination {
	return &lambda.Destination{NATS: &lambda.NATSDestination{Subject: subject}}
}

func TestFunctionValidation(t *testing.T) {
	// An environment of exactly 4096 bytes as Lambda counts it: {"BIG":"<v>"} is 10 + len(v).
	atLimit := strings.Repeat("a", 4086)
	runCreateChecks(t, []createCheck{
		accept("zip function", zipFunction()),
		accept("image function", imageFunction()),
		accept("configMap code", zipFunction(func(f *lambda.Function) {
			f.Spec.Code.CodeSource = lambda.CodeSource{ConfigMapRef: &lambda.ConfigMapCodeSource{Name: "code", Key: "function.zip"}}
		})),
		accept("s3 code", zipFunction(func(f *lambda.Function) {
			f.Spec.Code.CodeSource = lambda.CodeSource{S3: &lambda.S3Location{Endpoint: "http://minio:9000", Bucket: "code", Key: "f.zip",
				Credentials: &lambda.SecretReference{Name: "minio"}}}
		})),

		// The name.
		reject("name over 64 characters", zipFunction(func(f *lambda.Function) { f.Name = strings.Repeat("a", 65) }),
			"metadata.name", "at most 64 characters"),
		accept("name of 64 characters", zipFunction(func(f *lambda.Function) { f.Name = strings.Repeat("a", 64) })),
		reject("name with a dot", zipFunction(func(f *lambda.Function) { f.Name = "my.function" }),
			"metadata.name", "only letters, digits, hyphens and underscores"),

		// Memory, timeout, /tmp.
		reject("memorySize below 128", zipFunction(func(f *lambda.Function) { f.Spec.MemorySize = 127 }),
			"spec.memorySize", "greater than or equal to 128"),
		reject("memorySize above 10240", zipFunction(func(f *lambda.Function) { f.Spec.MemorySize = 10241 }),
			"spec.memorySize", "less than or equal to 10240"),
		accept("memorySize 10240", zipFunction(func(f *lambda.Function) { f.Spec.MemorySize = 10240 })),
		reject("timeout below 1", zipFunction(func(f *lambda.Function) { f.Spec.Timeout = -1 }),
			"spec.timeout", "greater than or equal to 1"),
		reject("timeout above 900", zipFunction(func(f *lambda.Function) { f.Spec.Timeout = 901 }),
			"spec.timeout", "less than or equal to 900"),
		accept("timeout 900", zipFunction(func(f *lambda.Function) { f.Spec.Timeout = 900 })),
		reject("ephemeralStorage below 512", zipFunction(func(f *lambda.Function) { f.Spec.EphemeralStorage = &lambda.EphemeralStorage{Size: 511} }),
			"spec.ephemeralStorage.size", "greater than or equal to 512"),
		reject("ephemeralStorage above 10240", zipFunction(func(f *lambda.Function) { f.Spec.EphemeralStorage = &lambda.EphemeralStorage{Size: 10241} }),
			"spec.ephemeralStorage.size", "less than or equal to 10240"),
		accept("ephemeralStorage 10240", zipFunction(func(f *lambda.Function) { f.Spec.EphemeralStorage = &lambda.EphemeralStorage{Size: 10240} })),

		// Environment variables.
		reject("variable name starting with a digit", zipFunction(envVars(literal("1ABC", "x"))),
			"spec.environment.variables[0].name", "should match"),
		reject("variable name of one letter", zipFunction(envVars(literal("A", "x"))),
			"spec.environment.variables[0].name", "at least 2 chars long"),
		reject("variable name with a hyphen", zipFunction(envVars(literal("MY-VAR", "x"))),
			"spec.environment.variables[0].name", "should match"),
		reject("reserved variable AWS_REGION", zipFunction(envVars(literal("AWS_REGION", "x"))),
			"spec.environment.variables[0].name", "reserved key"),
		reject("reserved variable AWS_LAMBDA_FUNCTION_NAME", zipFunction(envVars(literal("OK_VAR", "x"), literal("AWS_LAMBDA_FUNCTION_NAME", "x"))),
			"spec.environment.variables[1].name", "reserved key"),
		reject("reserved variable TZ", zipFunction(envVars(literal("TZ", "Europe/Paris"))),
			"spec.environment.variables[0].name", "reserved key"),
		accept("PATH, LANG and LD_LIBRARY_PATH can be overridden", zipFunction(envVars(
			literal("PATH", "/opt/bin:/usr/bin"), literal("LANG", "C.UTF-8"), literal("LD_LIBRARY_PATH", "/opt/lib")))),
		accept("variable from a Secret", zipFunction(envVars(fromSecret("API_TOKEN")))),
		reject("value and valueFrom together", zipFunction(envVars(func() lambda.EnvVar {
			v := fromSecret("API_TOKEN")
			v.Value = "x"
			return v
		}())), "spec.environment.variables[0]", "value and valueFrom are mutually exclusive"),
		reject("duplicate variable names", zipFunction(envVars(literal("ONE", "a"), literal("ONE", "b"))),
			"spec.environment.variables[1]", "Duplicate value"),
		accept("environment of exactly 4 KB", zipFunction(envVars(literal("BIG", atLimit)))),
		reject("environment one byte over 4 KB", zipFunction(envVars(literal("BIG", atLimit+"a"))),
			"spec.environment.variables", "exceed the 4KB limit"),
		reject("environment over 4 KB across variables", zipFunction(envVars(literal("BIG", atLimit[:4000]), literal("MORE", atLimit[:80]))),
			"spec.environment.variables", "exceed the 4KB limit"),
		reject("quotes count twice, as JSON escapes them", zipFunction(envVars(literal("BIG", atLimit[:4085]+`"`))),
			"spec.environment.variables", "exceed the 4KB limit"),
		reject("values count in UTF-8 bytes", zipFunction(envVars(literal("BIG", atLimit[:4085]+"é"))),
			"spec.environment.variables", "exceed the 4KB limit"),
		accept("variables from Secrets are not counted at admission", zipFunction(envVars(literal("BIG", atLimit), fromSecret("SECRET_ONE")))),

		// Architectures, runtime, package type.
		reject("two architectures", zipFunction(func(f *lambda.Function) { f.Spec.Architectures = []lambda.Architecture{"x86_64", "arm64"} }),
			"spec.architectures", "must have at most 1 item"),
		reject("unknown architecture", zipFunction(func(f *lambda.Function) { f.Spec.Architectures = []lambda.Architecture{"mips"} }),
			"spec.architectures[0]", `Unsupported value: "mips"`),
		accept("arm64", zipFunction(func(f *lambda.Function) { f.Spec.Architectures = []lambda.Architecture{"arm64"} })),
		reject("unknown runtime", zipFunction(func(f *lambda.Function) { f.Spec.Runtime = "cobol85" }),
			"spec.runtime", `Unsupported value: "cobol85"`),
		accept("newer runtime python3.13", zipFunction(func(f *lambda.Function) { f.Spec.Runtime = "python3.13" })),
		accept("custom runtime provided.al2023", zipFunction(func(f *lambda.Function) { f.Spec.Runtime = "provided.al2023"; f.Spec.Handler = "bootstrap" })),
		reject("unknown packageType", zipFunction(func(f *lambda.Function) { f.Spec.PackageType = "Jar" }),
			"spec.packageType", `Unsupported value: "Jar"`),
		reject("Zip without runtime", zipFunction(func(f *lambda.Function) { f.Spec.Runtime = "" }),
			"spec", "runtime and handler are required when packageType is Zip"),
		reject("Zip without handler", zipFunction(func(f *lambda.Function) { f.Spec.Handler = "" }),
			"spec", "runtime and handler are required when packageType is Zip"),
		reject("Image with runtime and handler", imageFunction(func(f *lambda.Function) { f.Spec.Runtime = "nodejs20.x"; f.Spec.Handler = "index.handler" }),
			"spec", "runtime and handler are not supported when packageType is Image"),
		reject("handler with whitespace", zipFunction(func(f *lambda.Function) { f.Spec.Handler = "index handler" }),
			"spec.handler", "should match"),
		reject("handler over 128 characters", zipFunction(func(f *lambda.Function) { f.Spec.Handler = strings.Repeat("h", 129) }),
			"spec.handler", "may not be more than 128"),
		reject("description over 256 characters", zipFunction(func(f *lambda.Function) { f.Spec.Description = strings.Repeat("d", 257) }),
			"spec.description", "may not be more than 256"),

		// Code.
		reject("Image without imageUri", imageFunction(func(f *lambda.Function) {
			f.Spec.Code = lambda.FunctionCode{CodeSource: lambda.CodeSource{URL: "https://example.com/f.zip", SHA256: testSHA256}}
		}), "spec.code.imageUri", "code.imageUri is required when packageType is Image"),
		reject("Zip with imageUri", zipFunction(func(f *lambda.Function) {
			f.Spec.Code = lambda.FunctionCode{ImageURI: "registry.example.com/fn:1"}
		}), "spec.code.imageUri", "code.imageUri is only supported when packageType is Image"),
		reject("imageUri with a zip source", imageFunction(func(f *lambda.Function) {
			f.Spec.Code.ConfigMapRef = &lambda.ConfigMapCodeSource{Name: "code"}
		}), "spec.code", "imageUri can't be combined with configMapRef, url or s3"),
		reject("Zip without code", zipFunction(func(f *lambda.Function) { f.Spec.Code = lambda.FunctionCode{} }),
			"spec.code", "packageType Zip requires one of code.configMapRef, code.url and code.s3"),
		reject("two zip sources", zipFunction(func(f *lambda.Function) { f.Spec.Code.ConfigMapRef = &lambda.ConfigMapCodeSource{Name: "code"} }),
			"spec.code", "at most one of configMapRef, url and s3"),
		reject("url without sha256", zipFunction(func(f *lambda.Function) { f.Spec.Code.SHA256 = "" }),
			"spec.code", "url requires sha256"),
		reject("sha256 that isn't 64 hex digits", zipFunction(func(f *lambda.Function) { f.Spec.Code.SHA256 = testSHA256[:63] + "g" }),
			"spec.code.sha256", "should match"),
		reject("sha256 without url", zipFunction(func(f *lambda.Function) {
			f.Spec.Code.CodeSource = lambda.CodeSource{ConfigMapRef: &lambda.ConfigMapCodeSource{Name: "code"}, SHA256: testSHA256}
		}), "spec.code", "sha256 is only valid with url"),
		reject("url that isn't http(s)", zipFunction(func(f *lambda.Function) { f.Spec.Code.URL = "ftp://example.com/f.zip" }),
			"spec.code.url", "should match"),
		reject("s3 bucket name too short", zipFunction(func(f *lambda.Function) {
			f.Spec.Code.CodeSource = lambda.CodeSource{S3: &lambda.S3Location{Bucket: "ab", Key: "f.zip"}}
		}), "spec.code.s3.bucket", "at least 3 chars long"),
		reject("s3 without key", zipFunction(func(f *lambda.Function) {
			f.Spec.Code.CodeSource = lambda.CodeSource{S3: &lambda.S3Location{Bucket: "code"}}
		}), "spec.code.s3.key", "at least 1 chars long"),

		// Layers and image config.
		accept("five layers, by object name and by name:version", zipFunction(func(f *lambda.Function) {
			f.Spec.Layers = []string{"layer-a-1", "layer-b-2", "my_layer:3", "Other-Layer:12", "x.y"}
		})),
		reject("six layers", zipFunction(func(f *lambda.Function) { f.Spec.Layers = []string{"a", "b", "c", "d", "e", "f"} }),
			"spec.layers", "must have at most 5 items"),
		reject("malformed layer reference", zipFunction(func(f *lambda.Function) { f.Spec.Layers = []string{"My Layer"} }),
			"spec.layers[0]", "should match"),
		reject("layers on an Image function", imageFunction(func(f *lambda.Function) { f.Spec.Layers = []string{"layer-a-1"} }),
			"spec.layers", "layers are only supported when packageType is Zip"),
		reject("imageConfig on a Zip function", zipFunction(func(f *lambda.Function) { f.Spec.ImageConfig = &lambda.ImageConfig{Command: []string{"x"}} }),
			"spec.imageConfig", "imageConfig is only supported when packageType is Image"),
		reject("imageConfig workingDirectory over 1000", imageFunction(func(f *lambda.Function) {
			f.Spec.ImageConfig = &lambda.ImageConfig{WorkingDirectory: "/" + strings.Repeat("w", 1000)}
		}), "spec.imageConfig.workingDirectory", "may not be more than 1000"),

		// Concurrency, async configuration, destinations, DLQ, tracing, file systems.
		reject("negative reservedConcurrentExecutions", zipFunction(func(f *lambda.Function) { f.Spec.ReservedConcurrentExecutions = ptr(int32(-1)) }),
			"spec.reservedConcurrentExecutions", "greater than or equal to 0"),
		accept("reservedConcurrentExecutions 0 (throttle)", zipFunction(func(f *lambda.Function) { f.Spec.ReservedConcurrentExecutions = ptr(int32(0)) })),
		reject("maximumRetryAttempts 3", zipFunction(func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{MaximumRetryAttempts: ptr(int32(3))}
		}), "spec.eventInvokeConfig.maximumRetryAttempts", "less than or equal to 2"),
		reject("maximumEventAgeInSeconds 59", zipFunction(func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{MaximumEventAgeInSeconds: ptr(int32(59))}
		}), "spec.eventInvokeConfig.maximumEventAgeInSeconds", "greater than or equal to 60"),
		reject("maximumEventAgeInSeconds 21601", zipFunction(func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{MaximumEventAgeInSeconds: ptr(int32(21601))}
		}), "spec.eventInvokeConfig.maximumEventAgeInSeconds", "less than or equal to 21600"),
		accept("destinations of each kind", zipFunction(func(f *lambda.Function) {
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{
				OnSuccess: &lambda.Destination{Function: &lambda.FunctionDestination{Name: "audit", Qualifier: "live"}},
				OnFailure: &lambda.Destination{Kafka: &lambda.KafkaDestination{BootstrapServers: []string{"kafka:9092"}, Topic: "failures"}},
			}}
			f.Spec.DeadLetterConfig = &lambda.DeadLetterConfig{Target: lambda.Destination{SQS: &lambda.SQSQueue{QueueURL: "http://sqs:9324/q/dlq"}}}
		})),
		reject("destination with two targets", zipFunction(func(f *lambda.Function) {
			d := nats("failures")
			d.Function = &lambda.FunctionDestination{Name: "audit"}
			f.Spec.EventInvokeConfig = &lambda.EventInvokeConfig{DestinationConfig: &lambda.DestinationConfig{OnFailure: d}}
		}), "spec.eventInvokeConfig.destinationConfig.onFailure", "exactly one of function, nats, kafka and sqs"),
		reject("dead-letter target with no destination", zipFunction(func(f *lambda.Function) {
			f.Spec.DeadLetterConfig = &lambda.DeadLetterConfig{}
		}), "spec.deadLetterConfig.target", "exactly one of function, nats, kafka and sqs"),
		reject("unknown tracing mode", zipFunction(func(f *lambda.Function) { f.Spec.TracingConfig = &lambda.TracingConfig{Mode: "Always"} }),
			"spec.tracingConfig.mode", `Unsupported value: "Always"`),
		reject("file system mounted outside /mnt", zipFunction(func(f *lambda.Function) {
			f.Spec.FileSystemConfigs = []lambda.FileSystemConfig{{ClaimName: "data", LocalMountPath: "/data"}}
		}), "spec.fileSystemConfigs[0].localMountPath", "should match"),

		// Function URL and tags.
		reject("function URL with an unknown authType", zipFunction(func(f *lambda.Function) { f.Spec.FunctionURLConfig = &lambda.FunctionURLConfig{AuthType: "IAM"} }),
			"spec.functionUrlConfig.authType", `Unsupported value: "IAM"`),
		reject("CORS with seven methods", zipFunction(func(f *lambda.Function) {
			f.Spec.FunctionURLConfig = &lambda.FunctionURLConfig{AuthType: "NONE", Cors: &lambda.Cors{AllowMethods: []string{"GET", "PUT", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS"}}}
		}), "spec.functionUrlConfig.cors.allowMethods", "must have at most 6 items"),
		reject("CORS maxAge over 86400", zipFunction(func(f *lambda.Function) {
			f.Spec.FunctionURLConfig = &lambda.FunctionURLConfig{AuthType: "NONE", Cors: &lambda.Cors{MaxAge: ptr(int32(86401))}}
		}), "spec.functionUrlConfig.cors.maxAge", "less than or equal to 86400"),
		reject("unknown invokeMode", zipFunction(func(f *lambda.Function) {
			f.Spec.FunctionURLConfig = &lambda.FunctionURLConfig{AuthType: "NONE", InvokeMode: "STREAM"}
		}), "spec.functionUrlConfig.invokeMode", `Unsupported value: "STREAM"`),
		reject("51 tags", zipFunction(func(f *lambda.Function) {
			f.Spec.Tags = map[string]string{}
			for i := range 51 {
				f.Spec.Tags[strings.Repeat("k", i+1)] = "v"
			}
		}), "spec.tags", "must have at most 50 items"),
		reject("tag key with the aws: prefix", zipFunction(func(f *lambda.Function) { f.Spec.Tags = map[string]string{"aws:team": "x"} }),
			"spec.tags", "aws: are reserved"),
		reject("tag value over 256 characters", zipFunction(func(f *lambda.Function) { f.Spec.Tags = map[string]string{"team": strings.Repeat("v", 257)} }),
			"spec.tags", "values at most 256 characters"),
	})
}

func TestFunctionDefaults(t *testing.T) {
	ns := newNamespace(t)
	f := zipFunction()
	f.Namespace = ns
	if err := k8s.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	s := f.Spec
	if s.PackageType != lambda.PackageTypeZip || s.MemorySize != 128 || s.Timeout != 3 ||
		s.EphemeralStorage == nil || s.EphemeralStorage.Size != 512 ||
		len(s.Architectures) != 1 || s.Architectures[0] != lambda.ArchitectureX8664 ||
		s.TracingConfig == nil || s.TracingConfig.Mode != lambda.TracingModePassThrough {
		t.Errorf("Lambda's defaults not applied: %+v", s.FunctionConfiguration)
	}
	countCases(1)
}

func TestFunctionUpdates(t *testing.T) {
	runUpdateChecks(t, []updateCheck{
		updateTo("packageType can't change", zipFunction(), func(f *lambda.Function) {
			f.Spec.PackageType = lambda.PackageTypeImage
			f.Spec.Runtime, f.Spec.Handler = "", ""
			f.Spec.Code = lambda.FunctionCode{ImageURI: "registry.example.com/fn:1"}
		}, "spec.packageType", "packageType cannot be changed after the function is created"),
		updateTo("code and configuration change", zipFunction(), func(f *lambda.Function) {
			f.Spec.MemorySize = 1024
			f.Spec.Code.CodeSource = lambda.CodeSource{ConfigMapRef: &lambda.ConfigMapCodeSource{Name: "code"}}
			f.Spec.Architectures = []lambda.Architecture{"arm64"}
		}),
	})
}

func TestFunctionStatus(t *testing.T) {
	ns := newNamespace(t)
	f := zipFunction()
	f.Namespace = ns
	if err := k8s.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Status = lambda.FunctionStatus{
		ObservedGeneration: f.Generation,
		FunctionARN:        lambda.FunctionARN(lambda.DefaultRegion, lambda.DefaultAccountID, f.Name),
		Version:            "$LATEST",
		State:              lambda.StateFailed,
		StateReasonCode:    lambda.StateReasonInvalidZipFile,
		LastUpdateStatus:   lambda.LastUpdateSuccessful,
		NextVersionNumber:  1,
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "InvalidZipFileException",
			Message: "not a zip", ObservedGeneration: f.Generation, LastTransitionTime: metav1.Now()}},
	}
	assertResult(t, k8s.Status().Update(ctx, f), nil)
	f.Status.State = "Running"
	assertResult(t, k8s.Status().Update(ctx, f), []string{"status.state", `Unsupported value: "Running"`})
	countCases(2)
}
