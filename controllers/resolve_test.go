package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	k8sauthn "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// A tag is resolved to its digest once (Lambda resolves at deploy); re-pointing the tag
// later changes nothing for the running function.
func TestResolveImagePinsTagToDigest(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/team/fn:v1"
	push := func() string {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(ref)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	first := push()
	yes := true
	// The registry is on loopback, which the egress policy refuses by default: a clear,
	// retried failure, not a silently unpinned tag.
	_, err := (&Resolver{Config: Config{ResolveImageTags: &yes}}).ResolveImage(context.Background(), ref, nil)
	var rerr *ResolveError
	if !errors.As(err, &rerr) || !rerr.Transient || !strings.Contains(rerr.Message, "not allowed") {
		t.Errorf("a registry on loopback: %v, want a transient ResolveError saying not allowed", err)
	}
	r := &Resolver{Config: Config{ResolveImageTags: &yes, Egress: EgressConfig{AllowLoopback: true}}}
	got, err := r.ResolveImage(context.Background(), ref, nil)
	if err != nil || got.URI != u.Host+"/team/fn@"+first || got.Unpinned != "" || got.Digest.Hex != strings.TrimPrefix(first, "sha256:") {
		t.Fatalf("ResolveImage = %+v, %v; want pinned to %s", got, err, first)
	}
	push() // re-point the tag
	again, _ := r.ResolveImage(context.Background(), ref, nil)
	if again.URI != got.URI {
		t.Errorf("re-pointing the tag changed the resolved image: %s", again.URI)
	}
	if _, err := r.ResolveImage(context.Background(), u.Host+"/team/none:v1", nil); !errors.As(err, &rerr) || rerr.Reason != lambdav1alpha1.StateReasonInvalidImage {
		t.Errorf("a tag the registry does not have: %v, want InvalidImage", err)
	}
	no := false
	unpinned, _ := (&Resolver{Config: Config{ResolveImageTags: &no}}).ResolveImage(context.Background(), ref, nil)
	if unpinned.URI != ref || unpinned.Unpinned == "" {
		t.Errorf("without resolution: %+v", unpinned)
	}
}

// A private registry: without credentials the tag's resolution fails with
// ImageAccessDenied; with the keychain built from a dockerconfigjson pull Secret (as the
// function's ServiceAccount's imagePullSecrets give it) it resolves.
func TestResolveImageWithPullSecret(t *testing.T) {
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if user, pass, ok := req.BasicAuth(); !ok || user != "puller" || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/private/fn:v1"
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(ref)
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	yes := true
	r := &Resolver{Config: Config{ResolveImageTags: &yes, Egress: EgressConfig{AllowLoopback: true}}}
	var rerr *ResolveError
	if _, err := r.ResolveImage(context.Background(), ref, nil); !errors.As(err, &rerr) || rerr.Reason != lambdav1alpha1.StateReasonImageAccessDenied {
		t.Fatalf("without credentials: %v, want ImageAccessDenied", err)
	}
	cfg := fmt.Sprintf(`{"auths":{%q:{"username":"puller","password":"s3cret"}}}`, u.Host)
	sec := corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
	kc, err := k8sauthn.NewFromPullSecrets(context.Background(), []corev1.Secret{sec})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ResolveImage(context.Background(), ref, kc)
	if err != nil || got.URI != u.Host+"/private/fn@"+want.String() {
		t.Fatalf("with the pull Secret: %+v, %v; want pinned to %s", got, err, want)
	}
}

// A registry that speaks plain HTTP only, under a name go-containerregistry does not take
// for a local one (127.0.0.2: loopback to the kernel, not "127.0.0.1" or "localhost" to the
// name package): without plainHTTPRegistries the manager asks it over TLS and the tag
// cannot be resolved (a clear, retried failure); listed, the tag is pinned to its digest.
func TestResolveImageFromPlainHTTPRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	srv := httptest.NewUnstartedServer(registry.New())
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	host := l.Addr().String()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host+"/team/fn:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	yes := true
	cfg := func(plain ...string) Config {
		return Config{ResolveImageTags: &yes, Egress: EgressConfig{AllowLoopback: true}, PlainHTTPRegistries: plain}
	}
	var rerr *ResolveError
	for _, listed := range [][]string{nil, {"127.0.0.2"}, {"127.0.0.2:1"}} {
		_, err := (&Resolver{Config: cfg(listed...)}).ResolveImage(context.Background(), host+"/team/fn:v1", nil)
		if !errors.As(err, &rerr) || !rerr.Transient || !strings.Contains(rerr.Message, "could not be asked") {
			t.Errorf("plainHTTPRegistries %v: %v; want the tag unresolved (asked over TLS)", listed, err)
		}
	}
	got, err := (&Resolver{Config: cfg("registry.example:5000", host)}).ResolveImage(context.Background(), host+"/team/fn:v1", nil)
	if err != nil || got.URI != host+"/team/fn@"+want.String() || got.Unpinned != "" {
		t.Fatalf("plainHTTPRegistries [%s]: %+v, %v; want pinned to %s", host, got, err, want)
	}
}
