package controllers

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
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
	for _, n := range []string{WorkloadName(long, contract.Latest), WorkloadName(long, "123456"), InvokeSecretName(long), codeConfigMapName(long, strings.Repeat("a", 64))} {
		if len(n) > 63 || n[0] < 'a' || n[0] > 'z' {
			t.Errorf("%q does not fit", n)
		}
	}
	if WorkloadName("hello", contract.Latest) != "hello-latest" || WorkloadName("hello", "3") != "hello-v3" {
		t.Error("short names changed")
	}
	if WorkloadName(long+"a", contract.Latest) == WorkloadName(long+"b", contract.Latest) {
		t.Error("long names collide")
	}
	if contract.FunctionLabelValue(long) == long || len(contract.FunctionLabelValue(long)) > 63 {
		t.Error("label value too long")
	}
}

// codeFetch and egress reach the downloads (issue #15, finding 4), and bad values are
// refused with a message.
func TestParseConfigCodeFetchAndEgress(t *testing.T) {
	c, err := ParseConfig([]byte(`
codeFetch: {maxConcurrent: 3, timeout: 90s, stallTimeout: 5s, minProgressBytes: 1024, maxRedirects: -1, maxBytes: 1048576, tempDir: /scratch}
egress: {denyCIDRs: [10.0.0.0/8, 192.168.1.7], allowCIDRs: [10.96.5.0/24], allowLoopback: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := c.FetchLimits()
	if c.CodeFetch.MaxConcurrent != 3 || l.Timeout != 90*time.Second || l.StallTimeout != 5*time.Second || l.MinProgress != 1024 ||
		l.MaxRedirects != -1 || l.MaxBytes != 1<<20 || c.CodeFetch.TempDir != "/scratch" {
		t.Errorf("codeFetch %+v, limits %+v", c.CodeFetch, l)
	}
	p := c.Policy()
	for addr, ok := range map[string]bool{"10.1.2.3": false, "10.96.5.9": true, "192.168.1.7": false, "192.168.1.8": true, "127.0.0.1": true, "169.254.169.254": false, "8.8.8.8": true} {
		if err := p.Check(netip.MustParseAddr(addr)); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed %v", addr, err, ok)
		}
	}
	d := DefaultConfig()
	if d.CodeFetch.MaxConcurrent != DefaultMaxConcurrentFetches || d.Policy().Check(netip.MustParseAddr("127.0.0.1")) == nil || d.Policy().Check(netip.MustParseAddr("10.1.2.3")) != nil {
		t.Errorf("defaults: %+v %+v", d.CodeFetch, d.Policy())
	}
	for _, bad := range []string{
		"egress: {denyCIDRs: [10.0.0.0/33]}",
		"egress: {allowCIDRs: [nonsense]}",
		"codeFetch: {maxBytes: 262144001}",
		"codeFetch: {maxConcurrent: -1}",
		"codeFetch: {timeout: 0s}",
		"codeFetch: {stallTimeout: -1s}",
		"codeFetch: {timeout: soon}",
		"egress: {denyNets: [10.0.0.0/8]}",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
