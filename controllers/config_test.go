package controllers

import (
	"strings"
	"testing"
)

func TestParseConfigMergesRuntimeImagesAndDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`
region: eu-west-1
shimImage: shim:1
runtimeImages:
  provided.al2023: local/provided:al2023
  nodejs99.x: local/node:99
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu-west-1" || c.ShimImage != "shim:1" || c.RuntimeImages["provided.al2023"] != "local/provided:al2023" ||
		c.RuntimeImages["nodejs99.x"] != "local/node:99" || c.RuntimeImages["python3.12"] != "public.ecr.aws/lambda/python:3.12" ||
		c.LogGroupPrefix != "/aws/lambda/" || c.RunAsUser != 993 || c.CPURequestFraction != 0.25 || !*c.ResolveImageTags {
		t.Errorf("config %+v", c)
	}
	if _, err := ParseConfig([]byte("shimImag: typo\n")); err == nil || !strings.Contains(err.Error(), "shimImag") {
		t.Errorf("unknown field accepted: %v", err)
	}
	if d := DefaultConfig(); d.Region != "us-east-1" || d.ShimImage != DefaultShimImage {
		t.Errorf("defaults %+v", d)
	}
}

func TestCPUIsProportionalToMemory(t *testing.T) {
	for mem, want := range map[int32]int64{1769: 1000, 128: 72, 10240: 5788} {
		if got := cpuMillis(mem); got != want {
			t.Errorf("cpuMillis(%d) = %d, want %d", mem, got, want)
		}
	}
}

func TestShortNamesFitKubernetes(t *testing.T) {
	long := strings.Repeat("x", 64)
	for _, n := range []string{WorkloadName(long, Latest), WorkloadName(long, "123456"), InvokeSecretName(long), codeConfigMapName(long, strings.Repeat("a", 64))} {
		if len(n) > 63 || n[0] < 'a' || n[0] > 'z' {
			t.Errorf("%q does not fit", n)
		}
	}
	if WorkloadName("hello", Latest) != "hello-latest" || WorkloadName("hello", "3") != "hello-v3" {
		t.Error("short names changed")
	}
	if WorkloadName(long+"a", Latest) == WorkloadName(long+"b", Latest) {
		t.Error("long names collide")
	}
	if labelValue(long) == long || len(labelValue(long)) > 63 {
		t.Error("label value too long")
	}
}
