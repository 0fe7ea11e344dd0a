package derivedimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type fixture struct {
	host   string
	writes atomic.Int32 // PUT/POST/PATCH requests the registry answered
	shim   Shim
	source name.Digest
	// images by architecture, as pushed in the source's index.
	images map[string]v1.Image
}

// newFixture serves a registry in-process with a two-architecture index (amd64, arm64)
// whose images have their own ENTRYPOINT, CMD and WORKDIR, and writes a fake shim binary.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{images: map[string]v1.Image{}}
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			f.writes.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	f.host = u.Host
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: arch, RootFS: mustConfig(t, img).RootFS,
			Config: v1.Config{Entrypoint: []string{"/app/" + arch}, Cmd: []string{"handler.main"}, WorkingDir: "/app", Env: []string{"PATH=/usr/bin"}}})
		if err != nil {
			t.Fatal(err)
		}
		f.images[arch] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	tag, _ := name.NewTag(f.host + "/team/fn:v1")
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	f.source, _ = name.NewDigest(f.host + "/team/fn@" + d.String())
	file := filepath.Join(t.TempDir(), "runtime-shim")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho shim\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.shim, err = ReadShim(file); err != nil {
		t.Fatal(err)
	}
	f.writes.Store(0)
	return f
}

func mustConfig(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

func (f *fixture) request(arch string) Request {
	target, _ := name.NewRepository(f.host + "/klambda/derived")
	return Request{Source: f.source, Arch: arch, Shim: f.shim, Entrypoint: ShimEntrypoint(":9000", "127.0.0.1:9001"), Target: target, MaxBytes: 1 << 20}
}

// The derived image is the architecture's image from the index plus one layer, the shim at
// /klambda/runtime-shim (root, 0755, no timestamp), with the shim in front of the image's
// ENTRYPOINT; CMD, WORKDIR and ENV are the image's.
func TestDeriveAddsTheShimToTheArchitecturesImage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, arch := range []string{"arm64", "amd64"} {
		req := f.request(arch)
		d, err := Derive(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(req.Target.Digest(d.String()))
		if err != nil {
			t.Fatal(err)
		}
		base := f.images[arch]
		baseLayers, _ := base.Layers()
		layers, _ := got.Layers()
		if len(layers) != len(baseLayers)+1 {
			t.Fatalf("%s: %d layers, want the image's %d + 1", arch, len(layers), len(baseLayers))
		}
		for i, l := range baseLayers {
			want, _ := l.Digest()
			if d, _ := layers[i].Digest(); d != want {
				t.Errorf("%s: layer %d is %s, want the image's %s", arch, i, d, want)
			}
		}
		if mt, _ := layers[len(layers)-1].MediaType(); mt != types.OCILayer {
			t.Errorf("%s: the shim's layer is %s in an OCI manifest", arch, mt)
		}
		files := tarFiles(t, layers[len(layers)-1])
		want := map[string]string{"klambda/": "dir 755", "klambda/runtime-shim": "file 755 #!/bin/sh\necho shim\n"}
		if len(files) != len(want) || files["klambda/"] != want["klambda/"] || files["klambda/runtime-shim"] != want["klambda/runtime-shim"] {
			t.Errorf("%s: the shim's layer holds %q, want %q", arch, files, want)
		}
		cfg := mustConfig(t, got)
		wantEntry := []string{ShimPath, "exec", "--listen=:9000", "--runtime-api=127.0.0.1:9001", "--", "/app/" + arch}
		if !slices.Equal(cfg.Config.Entrypoint, wantEntry) || !slices.Equal(cfg.Config.Cmd, []string{"handler.main"}) || cfg.Config.WorkingDir != "/app" ||
			!slices.Equal(cfg.Config.Env, []string{"PATH=/usr/bin"}) || cfg.Architecture != arch || cfg.Config.Labels[LabelSource] != f.source.String() {
			t.Errorf("%s: config %+v (arch %s), want entrypoint %q, the image's cmd, workdir, env", arch, cfg.Config, cfg.Architecture, wantEntry)
		}
		if m, _ := got.Manifest(); m.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest %s", arch, m.MediaType)
		}
	}
}

// A second Derive, as a restarted manager's, finds the image by its tag: the same digest,
// and nothing written.
func TestDeriveAgainFindsTheSameImage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := Derive(ctx, f.request("amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if f.writes.Load() == 0 {
		t.Fatal("the first derivation wrote nothing")
	}
	f.writes.Store(0)
	again, err := Derive(ctx, f.request("amd64"))
	if err != nil || again != first {
		t.Fatalf("again: %s, %v; want %s", again, err, first)
	}
	if n := f.writes.Load(); n != 0 {
		t.Errorf("deriving again wrote %d times", n)
	}
	if d, ok, err := Lookup(ctx, f.request("amd64")); err != nil || !ok || d != first {
		t.Errorf("Lookup = %s, %v, %v", d, ok, err)
	}
	// Another shim is another image.
	other := f.request("amd64")
	if err := os.WriteFile(other.Shim.File, []byte("#!/bin/sh\necho shim v2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if other.Shim, err = ReadShim(other.Shim.File); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := Lookup(ctx, other); ok {
		t.Error("an image derived with another shim was found")
	}
	if d, err := Derive(ctx, other); err != nil || d == first {
		t.Errorf("with another shim: %s, %v", d, err)
	}
	// The same digest named in another repository is not the same source: that repository
	// must serve it.
	elsewhere := f.request("amd64")
	elsewhere.Source, _ = name.NewDigest(f.host + "/other/fn@" + f.source.DigestStr())
	if _, ok, _ := Lookup(ctx, elsewhere); ok {
		t.Error("the digest named in another repository found the first repository's derived image")
	}
	if _, err := Derive(ctx, elsewhere); err == nil {
		t.Error("derived from a repository that does not have the image")
	}
}

func TestDeriveRefusesWhatItCannotDerive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	small := f.request("amd64")
	small.MaxBytes = 1000
	if _, err := Derive(ctx, small); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an image over MaxBytes: %v", err)
	}
	if _, err := Derive(ctx, f.request("s390x")); !errors.Is(err, ErrPlatform) {
		t.Errorf("an architecture the index lacks: %v", err)
	}
	// A single-architecture image of the other architecture.
	d, _ := f.images["arm64"].Digest()
	wrong := f.request("amd64")
	wrong.Source, _ = name.NewDigest(f.host + "/team/fn@" + d.String())
	if _, err := Derive(ctx, wrong); !errors.Is(err, ErrPlatform) {
		t.Errorf("an arm64 image for an amd64 function: %v", err)
	}
	if n := f.writes.Load(); n != 0 {
		t.Errorf("refused derivations wrote %d times", n)
	}
}

// tarFiles lists a layer: name -> "dir MODE" or "file MODE CONTENT"; timestamps and
// owners must be zero.
func tarFiles(t *testing.T, l v1.Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.IsZero() && h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v, owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			out[h.Name] = "dir " + modeString(h.Mode)
		default:
			b, _ := io.ReadAll(tr)
			out[h.Name] = "file " + modeString(h.Mode) + " " + string(b)
		}
	}
}

func modeString(m int64) string {
	return string([]byte{byte('0' + m>>6&7), byte('0' + m>>3&7), byte('0' + m&7)})
}
