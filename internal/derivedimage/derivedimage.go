// Package derivedimage makes the one-container image of an Image function: the function's
// own image, for one architecture, with one more layer holding klambda's runtime-shim at
// ShimPath, and an ENTRYPOINT that starts the shim in exec mode in front of the image's
// own ENTRYPOINT (its CMD stays the CMD). A pod of that image starts one container, as a
// Zip function on a runtime image that carries the shim does, instead of the shim's
// native sidecar beside the image (three container starts one after the other).
//
// A derived image is written once per (source image digest, architecture, shim binary),
// tagged by the hash of the three (Key), so that whoever asks again (a restarted manager)
// finds it by that tag and gets the same digest, never a rebuilt image.
package derivedimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ShimPath is where the shim is in a derived image (as in klambda's runtime images).
const ShimPath = "/klambda/runtime-shim"

// TagPrefix starts the tag of a derived image: img-<Key>.
const TagPrefix = "img-"

// format is part of every Key: a change of what Derive makes changes it, so that an
// image derived by an older manager is never taken for this one's.
const format = "klambda-derived-image-v1"

// LabelSource is the config label naming the image a derived image was made from.
const LabelSource = "dev.klambda.source-image"

// ShimEntrypoint is what a derived image's ENTRYPOINT starts with: the shim in exec mode,
// serving the invoke endpoint on listen and the Runtime API on runtimeAPI, then "--" and
// the runtime's command (the image's ENTRYPOINT, then its CMD).
func ShimEntrypoint(listen, runtimeAPI string) []string {
	return []string{ShimPath, "exec", "--listen=" + listen, "--runtime-api=" + runtimeAPI, "--"}
}

// Key names the derived image of source (repository@digest), for arch (GOARCH: amd64, arm64), with
// the shim whose SHA-256 is shimSHA256, started by entrypoint.
func Key(source, arch, shimSHA256 string, entrypoint []string) string {
	h := sha256.Sum256([]byte(format + "\n" + source + "\n" + arch + "\n" + shimSHA256 + "\n" + strings.Join(entrypoint, "\x00")))
	return hex.EncodeToString(h[:])
}

// Shim is the runtime-shim binary for one architecture: a file and its SHA-256.
type Shim struct {
	File   string
	SHA256 string
}

// ReadShim hashes the shim binary in file.
func ReadShim(file string) (Shim, error) {
	f, err := os.Open(file)
	if err != nil {
		return Shim{}, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return Shim{}, err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return Shim{}, fmt.Errorf("%s is not an executable file", file)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Shim{}, err
	}
	return Shim{File: file, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Registry is how one registry is reached.
type Registry struct {
	Auth      authn.Authenticator // nil: anonymous
	Keychain  authn.Keychain      // used when Auth is nil
	Transport http.RoundTripper   // nil: remote.DefaultTransport
}

func (r Registry) options(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	switch {
	case r.Auth != nil:
		opts = append(opts, remote.WithAuth(r.Auth))
	case r.Keychain != nil:
		opts = append(opts, remote.WithAuthFromKeychain(r.Keychain))
	}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// Request is one derivation.
type Request struct {
	// Source is the function's image, pinned (repository@sha256:…); SourceRegistry reaches it.
	Source         name.Digest
	SourceRegistry Registry
	// Arch is the GOARCH of the function (amd64, arm64).
	Arch string
	Shim Shim
	// Entrypoint starts the shim (ShimEntrypoint); the image's ENTRYPOINT follows it.
	Entrypoint []string
	// Target is the repository the derived image is written to; TargetRegistry reaches it.
	Target         name.Repository
	TargetRegistry Registry
	// MaxBytes bounds the source image: its config and layers as stored (compressed).
	MaxBytes int64
	// Jobs is how many blobs are copied at once (0: 1).
	Jobs int
}

// Key is the request's Key. The source is named with its repository, not by digest alone:
// an image derived from one tenant's registry is never found for a function that names the
// same digest in another repository (which would run it without that registry's consent).
func (req Request) Key() string {
	return Key(req.Source.Context().Name()+"@"+req.Source.DigestStr(), req.Arch, req.Shim.SHA256, req.Entrypoint)
}

// Tag is where the derived image of req is (or will be) in the target.
func (req Request) Tag() name.Tag { return req.Target.Tag(TagPrefix + req.Key()) }

// ErrTooLarge: the source image is over Request.MaxBytes.
var ErrTooLarge = errors.New("the image is too large")

// ErrPlatform: the source image has no variant for the architecture.
var ErrPlatform = errors.New("the image has no variant for the function's architecture")

// Lookup returns the derived image's digest when the target already holds it ("" when not).
func Lookup(ctx context.Context, req Request) (v1.Hash, bool, error) {
	tag := req.Tag()
	desc, err := remote.Head(tag, req.TargetRegistry.options(ctx)...)
	if err != nil {
		if IsNotFound(err) {
			return v1.Hash{}, false, nil
		}
		return v1.Hash{}, false, err
	}
	return desc.Digest, true, nil
}

// Head asks ref's registry for its manifest.
func Head(ctx context.Context, ref name.Reference, reg Registry) (*v1.Descriptor, error) {
	return remote.Head(ref, reg.options(ctx)...)
}

// Derive writes the derived image of req (unless the target holds it already) and returns
// its digest.
func Derive(ctx context.Context, req Request) (v1.Hash, error) {
	if d, ok, err := Lookup(ctx, req); err != nil || ok {
		return d, err
	}
	img, err := Build(ctx, req)
	if err != nil {
		return v1.Hash{}, err
	}
	jobs := req.Jobs
	if jobs <= 0 {
		jobs = 1
	}
	tag := req.Tag()
	if err := remote.Write(tag, img, append(req.TargetRegistry.options(ctx), remote.WithJobs(jobs))...); err != nil {
		return v1.Hash{}, fmt.Errorf("writing %s: %w", tag, err)
	}
	return img.Digest()
}

// Build makes the derived image (its layers read from the source when written).
func Build(ctx context.Context, req Request) (v1.Image, error) {
	base, err := platformImage(ctx, req.Source, req.Arch, req.SourceRegistry)
	if err != nil {
		return nil, err
	}
	m, err := base.Manifest()
	if err != nil {
		return nil, err
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	if req.MaxBytes > 0 && size > req.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, size, req.MaxBytes)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	if cf.OS != "" && cf.OS != "linux" || cf.Architecture != "" && cf.Architecture != req.Arch {
		return nil, fmt.Errorf("%w: the image is %s/%s, the function %s", ErrPlatform, cf.OS, cf.Architecture, req.Arch)
	}
	layerType := types.DockerLayer
	if m.MediaType == types.OCIManifestSchema1 {
		layerType = types.OCILayer
	}
	shim := req.Shim
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return shimTar(shim) }, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: layerType,
		History: v1.History{CreatedBy: "klambda: runtime-shim at " + ShimPath, Comment: "sha256:" + shim.SHA256}})
	if err != nil {
		return nil, err
	}
	cfg := cf.Config.DeepCopy()
	cfg.Entrypoint = append(append([]string(nil), req.Entrypoint...), cf.Config.Entrypoint...)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[LabelSource] = req.Source.String()
	return mutate.Config(img, *cfg)
}

// platformImage is the source's image for linux/arch: itself, or its index's entry.
func platformImage(ctx context.Context, src name.Digest, arch string, reg Registry) (v1.Image, error) {
	desc, err := remote.Get(src, reg.options(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	if !desc.MediaType.IsIndex() {
		return desc.Image()
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if p := d.Platform; p != nil && p.OS == "linux" && p.Architecture == arch && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%w (linux/%s)", ErrPlatform, arch)
}

// shimTar is the shim's layer: /klambda (a directory, replacing whatever the image has
// there) and the shim, owned by root, mode 0755, with no timestamps, so that one shim
// always gives one layer.
func shimTar(s Shim) (io.ReadCloser, error) {
	f, err := os.Open(s.File)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer func() { _ = f.Close() }()
		tw := tar.NewWriter(pw)
		dir := strings.TrimPrefix(ShimPath[:strings.LastIndex(ShimPath, "/")], "/")
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755})
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(ShimPath, "/"), Mode: 0o755, Size: fi.Size()})
		}
		if err == nil {
			h := sha256.New()
			_, err = io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, fi.Size()))
			if err == nil && hex.EncodeToString(h.Sum(nil)) != s.SHA256 {
				err = fmt.Errorf("the shim %s changed since it was hashed", s.File)
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// IsNotFound: the registry has no such repository, manifest or tag.
func IsNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}
