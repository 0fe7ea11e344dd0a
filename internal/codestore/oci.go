package codestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCIOptions configure an OCI registry store.
type OCIOptions struct {
	// Repository is registry/path, e.g. klambda-code-store.klambda-system.svc:5000/klambda/code.
	Repository string
	// PlainHTTP reaches the registry without TLS.
	PlainHTTP bool
	// Auth writes (and reads) the repository; nil: anonymous.
	Auth authn.Authenticator
	// Transport is the HTTP transport (nil: a default one). Its TLS configuration decides
	// which certificates are trusted.
	Transport http.RoundTripper
	// Timeout bounds every call but Put and Get's reading (0: 30 s).
	Timeout time.Duration
}

// OCI is a Store in an OCI registry's repository.
type OCI struct {
	repo    name.Repository
	opts    OCIOptions
	timeout time.Duration
}

// NewOCI returns the store in opts.Repository.
func NewOCI(opts OCIOptions) (*OCI, error) {
	var nopts []name.Option
	if opts.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(opts.Repository, append(nopts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("code store repository %q: %w", opts.Repository, err)
	}
	if opts.Auth == nil {
		opts.Auth = authn.Anonymous
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	t := opts.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	return &OCI{repo: repo, opts: opts, timeout: t}, nil
}

// forgetConnections closes the transport's idle connections after a failed exchange, so
// that the next one dials (and looks the registry's name up) again. Seen on the local
// cluster: a manager started while the store's pod was replaced got the store's name
// answered from outside the cluster once (the resolver tried the bare name after the
// cluster's search domain timed out), and every later request reused that kept-alive
// connection to another server until the process restarted (docs/code-store.md).
func (s *OCI) forgetConnections() {
	if t, ok := s.opts.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

func (s *OCI) remoteOpts(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(s.opts.Auth), remote.WithTransport(s.opts.Transport)}
}

// Location implements Store.
func (s *OCI) Location() Location {
	return Location{Registry: s.repo.RegistryStr(), Repository: s.repo.RepositoryStr(), PlainHTTP: s.opts.PlainHTTP}
}

func (s *OCI) tag(hexDigest string) name.Tag { return s.repo.Tag(TagPrefix + hexDigest) }

// Stat implements Store.
func (s *OCI) Stat(ctx context.Context, hexDigest string) (Ref, error) {
	if err := checkHex(hexDigest); err != nil {
		return Ref{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	desc, err := remote.Get(s.tag(hexDigest), s.remoteOpts(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return Ref{}, ErrNotFound
		}
		s.forgetConnections()
		return Ref{}, fmt.Errorf("code store: reading %s: %w", s.tag(hexDigest), err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(desc.Manifest)))
	if err != nil {
		return Ref{}, fmt.Errorf("code store: %s: %w", s.tag(hexDigest), err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest.Hex != hexDigest || m.Layers[0].MediaType != LayerMediaType {
		return Ref{}, fmt.Errorf("code store: %s is not klambda's artifact of that archive", s.tag(hexDigest))
	}
	return Ref{Hex: hexDigest, Size: m.Layers[0].Size, Artifact: s.repo.Digest(desc.Digest.String()).String()}, nil
}

// Put implements Store.
func (s *OCI) Put(ctx context.Context, file, hexDigest string) (Ref, error) {
	if err := checkHex(hexDigest); err != nil {
		return Ref{}, err
	}
	if ref, err := s.Stat(ctx, hexDigest); err == nil {
		return ref, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Ref{}, err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return Ref{}, err
	}
	l := &fileLayer{path: file, size: fi.Size(), digest: v1.Hash{Algorithm: "sha256", Hex: hexDigest}}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), ArtifactType)
	img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: LayerMediaType})
	if err != nil {
		return Ref{}, err
	}
	// The blob's digest is checked by the registry against what it received: a file that
	// is not hexDigest fails the upload.
	if err := remote.Write(s.tag(hexDigest), img, s.remoteOpts(ctx)...); err != nil {
		s.forgetConnections()
		return Ref{}, fmt.Errorf("code store: writing %s: %w", s.tag(hexDigest), err)
	}
	return s.Stat(ctx, hexDigest)
}

// Get implements Store.
func (s *OCI) Get(ctx context.Context, hexDigest string) (io.ReadCloser, error) {
	if err := checkHex(hexDigest); err != nil {
		return nil, err
	}
	l, err := remote.Layer(s.repo.Digest("sha256:"+hexDigest), s.remoteOpts(ctx)...)
	if err != nil {
		s.forgetConnections()
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		if isNotFound(err) {
			return nil, ErrNotFound
		}
		s.forgetConnections()
		return nil, fmt.Errorf("code store: reading sha256:%s: %w", hexDigest, err)
	}
	return rc, nil
}

// Delete implements Store: the artifact's manifest (and with it its tag), then its blob.
// A registry reclaims the disk of deleted blobs with its own garbage collection
// (distribution: `registry garbage-collect`).
func (s *OCI) Delete(ctx context.Context, hexDigest string) error {
	ref, err := s.Stat(ctx, hexDigest)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, err := name.NewDigest(ref.Artifact, s.nameOpts()...)
	if err != nil {
		return err
	}
	if err := remote.Delete(d, s.remoteOpts(ctx)...); err != nil && !isNotFound(err) {
		s.forgetConnections()
		return fmt.Errorf("code store: deleting %s: %w", ref.Artifact, err)
	}
	return s.deleteBlob(ctx, "sha256:"+hexDigest)
}

func (s *OCI) nameOpts() []name.Option {
	if s.opts.PlainHTTP {
		return []name.Option{name.Insecure}
	}
	return nil
}

// deleteBlob unlinks a blob from the repository (go-containerregistry deletes manifests
// only; the distribution API's DELETE /v2/<name>/blobs/<digest> is this).
func (s *OCI) deleteBlob(ctx context.Context, digest string) error {
	tr, err := transport.NewWithContext(ctx, s.repo.Registry, s.opts.Auth, s.opts.Transport, []string{s.repo.Scope(transport.DeleteScope)})
	if err != nil {
		return fmt.Errorf("code store: %w", err)
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", s.repo.Scheme(), s.repo.RegistryStr(), s.repo.RepositoryStr(), digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("code store: deleting blob %s: %w", digest, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("code store: deleting blob %s: HTTP %s", digest, resp.Status)
}

// List implements Store.
func (s *OCI) List(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tags, err := remote.List(s.repo, s.remoteOpts(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil // nothing pushed yet
		}
		return nil, fmt.Errorf("code store: listing %s: %w", s.repo, err)
	}
	var out []string
	for _, t := range tags {
		if h, ok := HexFromTag(t); ok {
			out = append(out, h)
		}
	}
	return out, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode, transport.NameUnknownErrorCode:
				return true
			}
		}
	}
	return false
}

// fileLayer is an archive on disk as a layer that is stored as it is (no compression):
// its digest is the archive's SHA-256.
type fileLayer struct {
	path   string
	size   int64
	digest v1.Hash
}

func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)     { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	return LayerMediaType, nil
}
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return l.open() }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.open() }

// open reads the file and fails its last read if the content is not the digest.
func (l *fileLayer) open() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return &checkedReader{f: f, h: sha256.New(), want: l.digest.Hex}, nil
}

type checkedReader struct {
	f *os.File
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	want string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	_, _ = c.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("the archive's SHA-256 is %s, not %s", got, c.want)
		}
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.f.Close() }
