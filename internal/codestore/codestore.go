// Package codestore keeps the code of functions, published versions and layer versions in
// a content-addressed store inside the cluster, so that their environments never fetch it
// from the author's URL, bucket or ConfigMap again: an artifact that changes or disappears
// after it was resolved changes nothing that runs.
//
// The store is an OCI registry (the CNCF distribution registry, or any registry the
// operator runs), used the way Flux's OCIRepository uses one: every .zip is an OCI artifact
// of one layer, the archive itself, whose blob digest is the archive's SHA-256 (what Lambda
// calls codeSha256). The artifact is tagged sha256-<hex>, so that the registry keeps it and
// List can find it; pods read the blob by digest (codeloader's oci scheme) and check it.
package codestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Media types of klambda's code artifacts.
const (
	// ArtifactType is the artifact's config media type (as Flux's OCIRepository sets its own).
	ArtifactType = "application/vnd.klambda.code.config.v1+json"
	// LayerMediaType is the .zip archive's layer.
	LayerMediaType = "application/vnd.klambda.code.layer.v1.zip"
	// TagPrefix starts the tag of the artifact holding the archive sha256:<hex>.
	TagPrefix = "sha256-"
)

// ErrNotFound is returned by Get and Delete for content the store does not hold.
var ErrNotFound = errors.New("not in the code store")

// Ref is stored content: its digest and the artifact that holds it.
type Ref struct {
	// Hex is the archive's SHA-256 (hex), its address in the store.
	Hex string
	// Size of the archive in bytes.
	Size int64
	// Artifact is the OCI reference of the artifact, pinned to its manifest digest
	// (registry/repository@sha256:…): what `oras pull` or `crane` read, and what a status
	// records.
	Artifact string
}

// Store is a content-addressed store of .zip archives.
type Store interface {
	// Put stores the archive in file, whose SHA-256 is hexDigest (checked), and returns
	// its reference. Putting content that is already stored does nothing but return it.
	Put(ctx context.Context, file, hexDigest string) (Ref, error)
	// Get opens the archive with this digest; ErrNotFound when not stored. The reader
	// checks the digest as it is read.
	Get(ctx context.Context, hexDigest string) (io.ReadCloser, error)
	// Stat returns the reference of stored content; ErrNotFound when not stored.
	Stat(ctx context.Context, hexDigest string) (Ref, error)
	// Delete removes the archive; ErrNotFound when not stored.
	Delete(ctx context.Context, hexDigest string) error
	// List returns the digests of everything stored.
	List(ctx context.Context) ([]string, error)
	// Location says how pods read the store (codeloader's oci source).
	Location() Location
}

// Location is where and how pods read the store.
type Location struct {
	// Registry is host[:port]; Repository the path of the repository in it.
	Registry, Repository string
	// PlainHTTP: the registry is reached without TLS.
	PlainHTTP bool
}

// ValidHex reports whether s is a lowercase hex SHA-256.
func ValidHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkHex(s string) error {
	if !ValidHex(s) {
		return fmt.Errorf("%q is not a hex SHA-256", s)
	}
	return nil
}

// HexFromTag returns the digest a store tag names, if it is one.
func HexFromTag(tag string) (string, bool) {
	h, ok := strings.CutPrefix(tag, TagPrefix)
	return h, ok && ValidHex(h)
}
