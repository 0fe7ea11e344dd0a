package v1alpha1_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambda "github.com/klambda/klambda/api/v1alpha1"
)

func layerVersion(changes ...func(*lambda.LayerVersion)) *lambda.LayerVersion {
	l := &lambda.LayerVersion{
		ObjectMeta: metav1.ObjectMeta{Name: "my-layer-1"},
		Spec: lambda.LayerVersionSpec{
			LayerName: "my_layer",
			Content:   lambda.CodeSource{ConfigMapRef: &lambda.ConfigMapCodeSource{Name: "layer", Key: "layer.zip"}},
		},
	}
	return with(l, changes...)
}

func TestLayerVersionValidation(t *testing.T) {
	runCreateChecks(t, []createCheck{
		accept("layer version", layerVersion()),
		accept("from a URL", layerVersion(func(l *lambda.LayerVersion) {
			l.Spec.Content = lambda.CodeSource{URL: "https://example.com/l.zip", SHA256: testSHA256}
		})),
		accept("layer name from metadata.name", layerVersion(func(l *lambda.LayerVersion) { l.Spec.LayerName = "" })),
		reject("without content", layerVersion(func(l *lambda.LayerVersion) { l.Spec.Content = lambda.CodeSource{} }),
			"spec.content", "exactly one of configMapRef, url and s3"),
		reject("two content sources", layerVersion(func(l *lambda.LayerVersion) {
			l.Spec.Content.S3 = &lambda.S3Location{Bucket: "layers", Key: "l.zip"}
		}), "spec.content", "at most one of configMapRef, url and s3"),
		reject("url without sha256", layerVersion(func(l *lambda.LayerVersion) {
			l.Spec.Content = lambda.CodeSource{URL: "https://example.com/l.zip"}
		}), "spec.content", "url requires sha256"),
		reject("layerName with a space", layerVersion(func(l *lambda.LayerVersion) { l.Spec.LayerName = "my layer" }),
			"spec.layerName", "only letters, digits, hyphens and underscores"),
		reject("layerName over 140", layerVersion(func(l *lambda.LayerVersion) { l.Spec.LayerName = strings.Repeat("l", 141) }),
			"spec.layerName", "140"),
		reject("metadata.name with a dot and no layerName", layerVersion(func(l *lambda.LayerVersion) { l.Name = "my.layer"; l.Spec.LayerName = "" }),
			"spec.layerName", "only letters, digits, hyphens and underscores"),
		reject("16 compatible runtimes", layerVersion(func(l *lambda.LayerVersion) {
			for range 16 {
				l.Spec.CompatibleRuntimes = append(l.Spec.CompatibleRuntimes, "python3.12")
			}
		}), "spec.compatibleRuntimes", "must have at most 15 items"),
		reject("unknown compatible runtime", layerVersion(func(l *lambda.LayerVersion) { l.Spec.CompatibleRuntimes = []lambda.Runtime{"php8"} }),
			"spec.compatibleRuntimes[0]", `Unsupported value: "php8"`),
		reject("3 compatible architectures", layerVersion(func(l *lambda.LayerVersion) {
			l.Spec.CompatibleArchitectures = []lambda.Architecture{"x86_64", "arm64", "x86_64"}
		}), "spec.compatibleArchitectures", "must have at most 2 items"),
		reject("description over 256", layerVersion(func(l *lambda.LayerVersion) { l.Spec.Description = strings.Repeat("d", 257) }),
			"spec.description", "may not be more than 256"),
		reject("licenseInfo over 512", layerVersion(func(l *lambda.LayerVersion) { l.Spec.LicenseInfo = strings.Repeat("l", 513) }),
			"spec.licenseInfo", "may not be more than 512"),
	})
}

func TestLayerVersionUpdates(t *testing.T) {
	const immutable = "a layer version is immutable"
	runUpdateChecks(t, []updateCheck{
		updateTo("content can't change", layerVersion(), func(l *lambda.LayerVersion) { l.Spec.Content.ConfigMapRef.Name = "other" },
			"spec", immutable),
		updateTo("description can't change", layerVersion(), func(l *lambda.LayerVersion) { l.Spec.Description = "new" },
			"spec", immutable),
		updateTo("labels can change", layerVersion(), func(l *lambda.LayerVersion) { l.Labels = map[string]string{"team": "a"} }),
	})
}
