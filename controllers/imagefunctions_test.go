package controllers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/internal/derivedimage"
)

const testDerived = "registry.test/klambda/derived@sha256:" + "dd" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func imageWorkload(derived string, ic *lambdav1alpha1.ImageConfig) *Workload {
	w := &Workload{Function: "fn", Qualifier: "$LATEST", InvokeSecret: "fn-invoke", ImageURI: "registry.test/team/fn@sha256:" + strings.Repeat("1f", 32),
		DerivedImageURI: derived, CodeDigest: codeloader.DigestOf([]byte("img"))}
	w.Config.PackageType, w.Config.MemorySize, w.Config.ImageConfig = lambdav1alpha1.PackageTypeImage, 128, ic
	return w
}

// An Image function with a derived image is one container, as a runtime with the shim
// embedded: the derived image, its ENTRYPOINT (the shim, then the image's) unless
// imageConfig overrides it, the shim's port, probes, invoke secret and allowances.
func TestDerivedImageIsOneContainer(t *testing.T) {
	cfg := embeddedConfig(t)
	shim := derivedimage.ShimEntrypoint(":9000", "127.0.0.1:9001")
	for _, tc := range []struct {
		name          string
		ic            *lambdav1alpha1.ImageConfig
		command, args []string
		dir           string
	}{
		{name: "the image's own ENTRYPOINT and CMD"},
		{name: "command overrides CMD", ic: &lambdav1alpha1.ImageConfig{Command: []string{"app.handler"}}, args: []string{"app.handler"}},
		{name: "entryPoint, command and workingDirectory", ic: &lambdav1alpha1.ImageConfig{EntryPoint: []string{"/app/main", "-v"}, Command: []string{"h"}, WorkingDirectory: "/app"},
			command: append(slices.Clone(shim), "/app/main", "-v"), args: []string{"h"}, dir: "/app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := imageWorkload(testDerived, tc.ic).PodTemplate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			pod := tpl.Spec
			if len(pod.InitContainers) != 0 || len(pod.Containers) != 1 {
				t.Fatalf("init containers %d, containers %d: want 0 and 1", len(pod.InitContainers), len(pod.Containers))
			}
			c := pod.Containers[0]
			if c.Image != testDerived || !slices.Equal(c.Command, tc.command) || !slices.Equal(c.Args, tc.args) || c.WorkingDir != tc.dir {
				t.Errorf("container %s command %q args %q dir %q; want %q %q %q", c.Image, c.Command, c.Args, c.WorkingDir, tc.command, tc.args, tc.dir)
			}
			env := envOf(c)
			if env[contract.InvokeSecretEnv].ValueFrom == nil || env["AWS_EXECUTION_ENV"].Value != "AWS_Lambda_Image" || env["AWS_LAMBDA_RUNTIME_API"].Value != runtimeAPIAddr {
				t.Errorf("env %v", c.Env)
			}
			if len(c.Ports) != 1 || c.Ports[0].ContainerPort != contract.ShimPort || c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("ports %v readiness %v", c.Ports, c.ReadinessProbe)
			}
			if got := c.Resources.Limits.Memory().Value(); got != 128<<20+embeddedShimMemory {
				t.Errorf("memory limit %d, want 128 MiB + the shim's", got)
			}
			if tpl.Annotations[contract.AnnotationCPULimit] == "" {
				t.Errorf("no CPU limit to resize to once ready: %v", tpl.Annotations)
			}
			for _, v := range pod.Volumes {
				if v.Name == "shim-tmp" || v.Name == "task" {
					t.Errorf("volume %s in the one-container image shape", v.Name)
				}
			}
		})
	}
	// Without a derived image: the sidecar shape, as before.
	tpl, err := imageWorkload("", &lambdav1alpha1.ImageConfig{Command: []string{"h"}}).PodTemplate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if pod := tpl.Spec; len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "runtime-shim" || pod.Containers[0].Image != imageWorkload("", nil).ImageURI || pod.Containers[0].Command != nil {
		t.Errorf("sidecar shape: inits %d, container %+v", len(pod.InitContainers), pod.Containers[0])
	}
}

func TestImageFunctionsConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("imageFunctions: {repository: registry.test/klambda/derived, shims: {x86_64: /shims/amd64/runtime-shim}}"))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.ImageFunctions; c.MaxConcurrent != 1 || c.Timeout.Duration != 10*time.Minute || c.MaxBytes != MaxImageBytes {
		t.Errorf("defaults: %+v", c)
	}
	for bad, want := range map[string]string{
		"imageFunctions: {shims: {x86_64: /s}}":                                                  "repository is empty",
		"imageFunctions: {repository: registry.test/d}":                                          "at least one architecture",
		"imageFunctions: {repository: registry.test/d, shims: {amd64: /s}}":                      "not an architecture",
		"imageFunctions: {repository: registry.test/d, shims: {arm64: s}}":                       "absolute path",
		"imageFunctions: {repository: 'Registry.test/UP', shims: {arm64: /s}}":                   "not a registry/repository",
		"imageFunctions: {repository: registry.test/d, shims: {arm64: /s}, maxBytes: 1e12}":      "10 GB",
		"imageFunctions: {repository: registry.test/d, shims: {arm64: /s}, timeout: 0s}":         "positive",
		"imageFunctions: {repository: registry.test/d, shims: {arm64: /s}, maxConcurrent: -1}":   "at least 1",
		"imageFunctions: {repository: registry.test/d, shims: {arm64: /s}, somethingElse: true}": "unknown field",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", bad, err, want)
		}
	}
}

// The deriver: a waiting error while it derives, the derived image once done (the
// function is woken), the same image from a new deriver (a restart) without writing or
// asking the source, another function's access checked with its own credentials, and a
// failed derivation reported once per function, with the sidecar shape meanwhile.
func TestImageDeriverDerivesOnceAndReportsFailuresOnce(t *testing.T) {
	// While locked, the function's repository answers only with credentials.
	var locked atomic.Bool
	inner := registry.New()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); locked.Load() && strings.HasPrefix(r.URL.Path, "/v2/team/") && (!ok || user != "puller" || pass != "s3cret") {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer reg.Close()
	u, _ := url.Parse(reg.URL)
	host := u.Host // 127.0.0.1: go-containerregistry speaks plain HTTP to it
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host + "/team/fn:v1")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	shim := filepath.Join(t.TempDir(), "runtime-shim")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte("egress: {allowLoopback: true}\nimageFunctions: {repository: " + host + "/klambda/derived, shims: {x86_64: " + shim + ", arm64: /nonexistent/runtime-shim}}"))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: "tenant"}}
	res := ImageResult{URI: host + "/team/fn@" + d.String()}
	noKeys := func() (authn.Keychain, error) { return nil, nil }
	ctx := context.Background()

	der, _ := NewImageDeriver(cfg)
	got, err := der.Derived(ctx, fn, res, noKeys)
	var rerr *ResolveError
	if !errors.As(err, &rerr) || !rerr.Waiting || got.URI != "" {
		t.Fatalf("first ask: %+v, %v; want a waiting ResolveError", got, err)
	}
	select {
	case ev := <-der.Wake():
		if ev.Object.GetName() != "fn" || ev.Object.GetNamespace() != "tenant" {
			t.Errorf("woke %s/%s", ev.Object.GetNamespace(), ev.Object.GetName())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the derivation did not wake the function")
	}
	got, err = der.Derived(ctx, fn, res, noKeys)
	if err != nil || !strings.HasPrefix(got.URI, host+"/klambda/derived@sha256:") {
		t.Fatalf("once derived: %+v, %v", got, err)
	}
	// The function's status records it: a restarted manager finds it, asking neither for
	// credentials nor the function's registry (locked now).
	recorded := fn.DeepCopy()
	recorded.Status.ResolvedImageURI, recorded.Status.DerivedImageURI = res.URI, got.URI
	recorded.Status.Conditions = []metav1.Condition{{Type: contract.ConditionCodeResolved, Status: metav1.ConditionTrue, Reason: contract.ReasonResolved}}
	locked.Store(true)
	restarted, _ := NewImageDeriver(cfg)
	again, err := restarted.Derived(ctx, recorded, res, func() (authn.Keychain, error) {
		t.Error("a restarted manager asked for credentials to derive again")
		return nil, nil
	})
	if err != nil || again.URI != got.URI {
		t.Errorf("after a restart: %+v, %v; want %s", again, err, got.URI)
	}
	// Another function naming the same digest gets the derived image only if its own
	// credentials read the source.
	thief := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "thief", Namespace: "other-tenant"}}
	var rerr2 *ResolveError
	if f, err := restarted.Derived(ctx, thief, res, noKeys); !errors.As(err, &rerr2) || rerr2.Reason != lambdav1alpha1.StateReasonImageAccessDenied || f.URI != "" {
		t.Errorf("another function without access to the image: %+v, %v; want ImageAccessDenied", f, err)
	}
	withKeys := func() (authn.Keychain, error) {
		return staticKeychain{authn.AuthConfig{Username: "puller", Password: "s3cret"}}, nil
	}
	if f, err := restarted.Derived(ctx, thief, res, withKeys); err != nil || f.URI != got.URI {
		t.Errorf("another function with access: %+v, %v", f, err)
	}
	locked.Store(false)

	// arm64's shim can't be read: the sidecar shape, told.
	arm := fn.DeepCopy()
	arm.Spec.Architectures = []lambdav1alpha1.Architecture{lambdav1alpha1.ArchitectureArm64}
	if f, err := der.Derived(ctx, arm, res, noKeys); err != nil || f.URI != "" || !f.Tell || !strings.Contains(f.Failed, "arm64") {
		t.Errorf("arm64 without a readable shim: %+v, %v", f, err)
	}
	// An image over maxBytes: fails once, told once per function.
	small := cfg
	small.ImageFunctions.Repository, small.ImageFunctions.MaxBytes = host+"/klambda/small", 10
	sd, _ := NewImageDeriver(small)
	if _, err := sd.Derived(ctx, fn, res, noKeys); err == nil {
		t.Fatal("an image over maxBytes was not derived in the background")
	}
	select {
	case <-sd.Wake():
	case <-time.After(30 * time.Second):
		t.Fatal("the failed derivation did not wake the function")
	}
	first, _ := sd.Derived(ctx, fn, res, noKeys)
	second, _ := sd.Derived(ctx, fn, res, noKeys)
	other, _ := sd.Derived(ctx, &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "tenant"}}, res, noKeys)
	if first.URI != "" || !strings.Contains(first.Failed, "too large") || !first.Tell || second.Tell || !other.Tell {
		t.Errorf("too large: first %+v, second %+v, another function %+v", first, second, other)
	}
	// After retryAfter, the functions told are woken and the derivation is tried again.
	retry, _ := NewImageDeriver(small)
	retry.retryAfter = 200 * time.Millisecond
	_, _ = retry.Derived(ctx, fn, res, noKeys)
	<-retry.Wake()
	if f, _ := retry.Derived(ctx, fn, res, noKeys); !f.Tell {
		t.Fatalf("not told: %+v", f)
	}
	select {
	case ev := <-retry.Wake():
		if ev.Object.GetName() != "fn" {
			t.Errorf("woke %s", ev.Object.GetName())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a function left in the sidecar shape was not woken to try again")
	}
	var rerr3 *ResolveError
	if _, err := retry.Derived(ctx, fn, res, noKeys); !errors.As(err, &rerr3) || !rerr3.Waiting {
		t.Errorf("after retryAfter: %v, want the derivation started again (waiting)", err)
	}
	// The derived repository can't be asked: what the status records is kept.
	down, _ := ParseConfig([]byte("egress: {allowLoopback: true}\nimageFunctions: {repository: 127.0.0.1:1/klambda/derived, shims: {x86_64: " + shim + "}}"))
	dd, _ := NewImageDeriver(down)
	if k, err := dd.Derived(ctx, recorded, res, noKeys); err != nil || k.URI != got.URI {
		t.Errorf("repository down, status known: %+v, %v", k, err)
	}
	// Unpinned images are not derived.
	if u, err := der.Derived(ctx, fn, ImageResult{URI: host + "/team/fn:v1", Unpinned: "resolveImageTags is false"}, noKeys); err != nil || u != (DerivedImage{}) {
		t.Errorf("unpinned: %+v, %v", u, err)
	}
}

type staticKeychain struct{ cfg authn.AuthConfig }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(k.cfg), nil
}
