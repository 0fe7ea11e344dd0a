// Command imagepush pushes the image indexes of OCI image layouts (hack/imagebuild -oci, as
// `make release` writes them) to the reference each is named by in the layout (annotation
// io.containerd.image.name), with the credentials of ~/.docker/config.json, and prints each
// pushed reference with its digest:
//
//	imagepush dist/release/1.2.3/images/*
//	registry.example/klambda/manager:1.2.3 sha256:…
//
// The digest pushed is the layout's: blobs and manifests are copied as they are.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// nameAnnotation names an image of a layout by its full reference (containerd's, and what
// hack/imagebuild writes next to the OCI ref.name, which holds only the tag).
const nameAnnotation = "io.containerd.image.name"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagepush:", err)
		os.Exit(1)
	}
}

func run(dirs []string) error {
	if len(dirs) == 0 {
		return errors.New("usage: imagepush OCI-LAYOUT-DIR...")
	}
	for _, dir := range dirs {
		if err := push(dir); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
	}
	return nil
}

// push sends every image index of one layout to the reference it is named by.
func push(dir string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("not an OCI image layout: %w", err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) == 0 {
		return errors.New("the layout holds no image")
	}
	for _, d := range m.Manifests {
		if !d.MediaType.IsIndex() {
			return fmt.Errorf("%s is a %s, not an image index (hack/imagebuild -oci writes indexes)", d.Digest, d.MediaType)
		}
		refName := d.Annotations[nameAnnotation]
		if refName == "" {
			return fmt.Errorf("image index %s has no %s annotation: no reference to push it to", d.Digest, nameAnnotation)
		}
		ref, err := name.ParseReference(refName)
		if err != nil {
			return fmt.Errorf("annotation %s: %w", nameAnnotation, err)
		}
		idx, err := top.ImageIndex(d.Digest)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Println(ref.String(), d.Digest)
	}
	return nil
}
