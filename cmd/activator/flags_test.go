package main

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestParseFileConfig(t *testing.T) {
	fc, err := parseFileConfig([]byte("region: eu-west-1\nconcurrency:\n  namespaceLimit: 50\n  idleTimeout: 5m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fc.Region != "eu-west-1" || fc.Concurrency.NamespaceLimit == nil || *fc.Concurrency.NamespaceLimit != 50 ||
		fc.Concurrency.IdleTimeout == nil || *fc.Concurrency.IdleTimeout != "5m" {
		t.Errorf("parsed %+v", fc)
	}
	// Keys the activator does not implement are refused by name, never ignored: Lambda's
	// unreserved minimum is not enforced by klambda (issue 16), a typo is a typo.
	for doc, key := range map[string]string{
		"concurrency:\n  unreservedMinimum: 100\n": "unreservedMinimum",
		"regoin: eu-west-1\n":                      "regoin",
		"concurrency:\n  namespaceLimt: 5\n":       "namespaceLimt",
	} {
		if _, err := parseFileConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v, want one naming %s", doc, err, key)
		}
	}
	if _, err := parseFileConfig([]byte("concurrency:\n  namespaceLimit: many\n")); err == nil {
		t.Error("a string namespaceLimit accepted")
	}
}

// TestChartActivatorConfigParses: what the chart's default values put in the activator's
// configuration file (activator.config plus region) is what the activator reads.
func TestChartActivatorConfigParses(t *testing.T) {
	b, err := os.ReadFile("../../charts/klambda/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Activator struct {
			Config map[string]any `json:"config"`
		} `json:"activator"`
		Config struct {
			Region string `json:"region"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	cfg := values.Activator.Config
	cfg["region"] = values.Config.Region
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseFileConfig(out); err != nil {
		t.Errorf("the chart's activator config is refused: %v\n%s", err, out)
	}
}
