package controllers

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/internal/derivedimage"
)

// How derived images no Function or Version runs are deleted: checked every
// derivedGCInterval, deleted once unreferenced for derivedGCGrace (an image is derived a
// moment before the status that records it is written, and an old revision's pods may
// still be starting), at most derivedGCMaxDeletes per collection.
const (
	derivedGCInterval   = 10 * time.Minute
	derivedGCGrace      = time.Hour
	derivedGCMaxDeletes = 100
)

// DerivedImageGC deletes the derived images (tags img-<key> of imageFunctions.repository)
// that no Function's or Version's status.derivedImageUri has named for Grace. Only the
// manifest is deleted; the registry reclaims the blobs with its own collection. It runs on
// the leader, with the function controller's deriver (which then forgets the image).
type DerivedImageGC struct {
	Reader     client.Reader
	Deriver    *ImageDeriver
	Interval   time.Duration
	Grace      time.Duration
	MaxDeletes int
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time

	mu           sync.Mutex
	unreferenced map[string]time.Time // by manifest digest
}

// NewDerivedImageGC is the collector of d's repository with the default schedule.
func NewDerivedImageGC(r client.Reader, d *ImageDeriver) *DerivedImageGC {
	return &DerivedImageGC{Reader: r, Deriver: d, Interval: derivedGCInterval, Grace: derivedGCGrace, MaxDeletes: derivedGCMaxDeletes}
}

// Start runs a collection every Interval until ctx ends (manager.Runnable).
func (g *DerivedImageGC) Start(ctx context.Context) error {
	return collectEvery(ctx, g.Interval, "derived image garbage collection", func(ctx context.Context) error {
		_, err := g.Collect(ctx)
		return err
	})
}

// NeedLeaderElection: one manager collects.
func (g *DerivedImageGC) NeedLeaderElection() bool { return true }

// referencedDerived is every derived image digest a Function or Version status names.
func referencedDerived(ctx context.Context, r client.Reader) (map[string]bool, error) {
	refs := map[string]bool{}
	add := func(uri string) {
		if _, d, ok := strings.Cut(uri, "@"); ok {
			refs[d] = true
		}
	}
	fns, vs, err := functionsAndVersions(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, f := range fns {
		add(f.Status.DerivedImageURI)
	}
	for _, v := range vs {
		add(v.Status.DerivedImageURI)
	}
	return refs, nil
}

// Collect runs one collection and returns the digests it deleted.
func (g *DerivedImageGC) Collect(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	d := g.Deriver
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(d.auth), remote.WithTransport(remote.DefaultTransport)}
	tags, err := remote.List(d.target, opts...)
	if err != nil {
		if derivedimage.IsNotFound(err) {
			return nil, nil // nothing derived yet
		}
		return nil, err
	}
	stored := map[string]string{} // digest -> key
	for _, t := range tags {
		key, ok := strings.CutPrefix(t, derivedimage.TagPrefix)
		if !ok {
			continue
		}
		desc, err := remote.Head(d.target.Tag(t), opts...)
		if err != nil {
			if derivedimage.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		stored[desc.Digest.String()] = key
	}
	// The references are listed after the repository: an image derived since is not in stored.
	refs, err := referencedDerived(ctx, g.Reader)
	if err != nil {
		return nil, err
	}
	if g.unreferenced == nil {
		g.unreferenced = map[string]time.Time{}
	}
	digests := make([]string, 0, len(stored))
	for digest := range stored {
		digests = append(digests, digest)
	}
	deleted := sweepUnreferenced(g.unreferenced, digests, refs, now(), g.Grace, g.MaxDeletes, func(digest string) bool {
		d.forget(stored[digest])
		if err := remote.Delete(d.target.Digest(digest), opts...); err != nil && !derivedimage.IsNotFound(err) {
			logf.FromContext(ctx).Error(err, "deleting an unreferenced derived image", "digest", digest)
			return false
		}
		return true
	})
	if len(deleted) > 0 {
		logf.FromContext(ctx).Info("deleted unreferenced derived images", "count", len(deleted))
	}
	return deleted, nil
}
