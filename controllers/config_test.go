package controllers

import (
	"net/netip"
	"strconv"
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

// plainHTTPRegistries: each entry is host[:port] (what an image reference names as its
// registry); a scheme, a path or anything else is refused naming the entry. The code
// store's registries are plain HTTP only when listed, as any registry is.
func TestParseConfigPlainHTTPRegistries(t *testing.T) {
	c, err := ParseConfig([]byte(`
plainHTTPRegistries: [registry.registry.svc:5000, Store.Example:5001, "10.0.0.7", "[fd00::1]:5000", docker.io]
codeStore: {repository: "store.example:5001/klambda/code", readRepository: "store-ro.example:5002/klambda/code"}
`))
	if err != nil {
		t.Fatal(err)
	}
	for reg, want := range map[string]bool{
		"registry.registry.svc:5000": true, "registry.registry.svc": false, "registry.registry.svc:5001": false,
		"store.example:5001": true, "10.0.0.7": true, "[fd00::1]:5000": true, "index.docker.io": true, "ghcr.io": false,
	} {
		if got := c.PlainHTTP(reg); got != want {
			t.Errorf("PlainHTTP(%q) = %v, want %v", reg, got, want)
		}
	}
	// The write side is listed, the read side is not.
	if loc := c.codeStoreReadLocation(); loc.Registry != "store-ro.example:5002" || loc.PlainHTTP {
		t.Errorf("read location %+v: want TLS (store-ro.example:5002 is not listed)", loc)
	}
	if store, err := NewCodeStore(c); err != nil || !store.Location().PlainHTTP {
		t.Errorf("code store %+v, %v: want plain HTTP (store.example:5001 is listed)", store, err)
	}
	if c := DefaultConfig(); c.PlainHTTP("localhost:5000") {
		t.Error("the default configuration lists a plain-HTTP registry")
	}
	for entry, want := range map[string]string{
		"http://registry:5000":   "has a scheme",
		"registry:5000/team":     "has a path",
		"registry:5000/":         "has a path",
		"registry:port":          "is not a host[:port]",
		"registry:99999":         "port outside 1-65535",
		"registry:0":             "port outside 1-65535",
		"*.example.com":          "is not a host[:port]",
		"":                       "is not a host[:port]",
		"user@registry:5000":     "is not a host[:port]",
		"registry.example.com.-": "is not a host[:port]",
	} {
		_, err := ParseConfig([]byte("plainHTTPRegistries: [" + strconv.Quote(entry) + "]\n"))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plainHTTPRegistries[0]") {
			t.Errorf("plainHTTPRegistries [%q]: %v, want a refusal saying %q", entry, err, want)
		}
	}
	// The code store has no plainHTTP of its own any more: listing its registry is the way.
	if _, err := ParseConfig([]byte(`codeStore: {repository: "s:5000/c", plainHTTP: true}`)); err == nil || !strings.Contains(err.Error(), "plainHTTP") {
		t.Errorf("codeStore.plainHTTP accepted: %v", err)
	}
}
