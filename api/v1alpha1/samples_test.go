package v1alpha1_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/test/apiserver"
)

// TestSamples checks that every object in config/samples is accepted (server-side dry run).
func TestSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(apiserver.RepoRoot(), "config", "samples", "lambda_*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("want a sample file per kind, found %v (%v)", files, err)
	}
	kinds := map[string]int{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err != nil {
				if err.Error() == "EOF" {
					break
				}
				t.Fatalf("%s: %v", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			kinds[obj.GetKind()]++
			t.Run(filepath.Base(file)+"/"+obj.GetName(), func(t *testing.T) {
				obj.SetNamespace(validationNamespace)
				if err := k8s.Create(ctx, obj, client.DryRunAll); err != nil {
					t.Errorf("sample rejected: %v", err)
				}
			})
			countCases(1)
		}
	}
	for _, kind := range []string{"Function", "Version", "Alias", "LayerVersion", "EventSourceMapping"} {
		if kinds[kind] == 0 {
			t.Errorf("no sample of %s", kind)
		}
	}
}
