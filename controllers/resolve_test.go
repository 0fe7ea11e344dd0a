package controllers

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	// The registry is on loopback, which the egress policy refuses by default.
	refused, _ := (&Resolver{Config: Config{ResolveImageTags: &yes}}).ResolveImage(context.Background(), ref)
	if refused.URI != ref || !strings.Contains(refused.Unpinned, "not allowed") {
		t.Errorf("a registry on loopback: %+v, want unpinned, not allowed", refused)
	}
	r := &Resolver{Config: Config{ResolveImageTags: &yes, Egress: EgressConfig{AllowLoopback: true}}}
	got, err := r.ResolveImage(context.Background(), ref)
	if err != nil || got.URI != u.Host+"/team/fn@"+first || got.Unpinned != "" || got.Digest.Hex != strings.TrimPrefix(first, "sha256:") {
		t.Fatalf("ResolveImage = %+v, %v; want pinned to %s", got, err, first)
	}
	push() // re-point the tag
	again, _ := r.ResolveImage(context.Background(), ref)
	if again.URI != got.URI {
		t.Errorf("re-pointing the tag changed the resolved image: %s", again.URI)
	}
	no := false
	unpinned, _ := (&Resolver{Config: Config{ResolveImageTags: &no}}).ResolveImage(context.Background(), ref)
	if unpinned.URI != ref || unpinned.Unpinned == "" {
		t.Errorf("without resolution: %+v", unpinned)
	}
}
