package controllers

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codestore"
)

// NewCodeStore opens the code store the configuration names (nil, nil without one). Its
// write credentials are the files username and password in codeStore.credentialsDir (a
// mounted Secret), read at every request, so that a rotated Secret is used without a
// restart.
func NewCodeStore(cfg Config) (*codestore.OCI, error) {
	c := cfg.CodeStore
	if c.Repository == "" {
		return nil, nil
	}
	repo, err := name.NewRepository(c.Repository)
	if err != nil {
		return nil, fmt.Errorf("codeStore.repository: %w", err)
	}
	opts := codestore.OCIOptions{Repository: c.Repository, PlainHTTP: cfg.PlainHTTP(repo.RegistryStr())}
	if c.CredentialsDir != "" {
		if _, err := readCredentials(c.CredentialsDir); err != nil {
			return nil, err
		}
		opts.Auth = fileAuth(c.CredentialsDir)
	}
	return codestore.NewOCI(opts)
}

func readCredentials(dir string) (authn.AuthConfig, error) {
	var a authn.AuthConfig
	for f, dst := range map[string]*string{"username": &a.Username, "password": &a.Password} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return a, fmt.Errorf("codeStore.credentialsDir: %w", err)
		}
		*dst = strings.TrimSpace(string(b))
	}
	return a, nil
}

type fileAuth string

func (d fileAuth) Authorization() (*authn.AuthConfig, error) {
	a, err := readCredentials(string(d))
	return &a, err
}

// CodeStoreGC deletes code store content that no Function, Version or LayerVersion
// references (docs/code-store.md). Content is deleted only once it has been unreferenced
// in every collection for Grace: a new archive is put into the store a moment before the
// status that references it is written, and the pods of an old revision may still be
// starting while a rollout replaces them. At most MaxDeletes go per collection. It runs
// on the leader only.
type CodeStoreGC struct {
	Reader     client.Reader
	Store      codestore.Store
	Interval   time.Duration
	Grace      time.Duration
	MaxDeletes int
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time

	mu sync.Mutex
	// unreferenced: when each stored digest was first seen unreferenced.
	unreferenced map[string]time.Time
}

// Start runs a collection every Interval until ctx ends (manager.Runnable).
func (g *CodeStoreGC) Start(ctx context.Context) error {
	if g.Interval <= 0 {
		return nil
	}
	return collectEvery(ctx, g.Interval, "code store garbage collection", func(ctx context.Context) error {
		_, err := g.Collect(ctx)
		return err
	})
}

// NeedLeaderElection: one manager collects.
func (g *CodeStoreGC) NeedLeaderElection() bool { return true }

// Referenced is every digest (hex) the cluster's Functions, Versions and LayerVersions use.
func Referenced(ctx context.Context, r client.Reader) (map[string]bool, error) {
	refs := map[string]bool{}
	add := func(b64 string) {
		if raw, err := base64.StdEncoding.DecodeString(b64); err == nil && len(raw) == 32 {
			refs[hex.EncodeToString(raw)] = true
		}
	}
	fns, vs, err := functionsAndVersions(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, f := range fns {
		add(f.Status.CodeSha256)
	}
	for _, v := range vs {
		add(v.Status.CodeSha256)
	}
	var lvs lambdav1alpha1.LayerVersionList
	if err := r.List(ctx, &lvs); err != nil {
		return nil, err
	}
	for _, lv := range lvs.Items {
		add(lv.Status.CodeSha256)
	}
	return refs, nil
}

// Collect runs one collection and returns the digests it deleted.
func (g *CodeStoreGC) Collect(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	stored, err := g.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	// The references are listed after the store: content put since is not in stored.
	refs, err := Referenced(ctx, g.Reader)
	if err != nil {
		return nil, err
	}
	if g.unreferenced == nil {
		g.unreferenced = map[string]time.Time{}
	}
	deleted := sweepUnreferenced(g.unreferenced, stored, refs, now(), g.Grace, g.MaxDeletes, func(h string) bool {
		if err := g.Store.Delete(ctx, h); err != nil && !isNotFound(err) {
			logf.FromContext(ctx).Error(err, "deleting unreferenced code", "sha256", h)
			return false
		}
		return true
	})
	if len(deleted) > 0 {
		logf.FromContext(ctx).Info("code store: deleted unreferenced code", "count", len(deleted))
	}
	return deleted, nil
}

func isNotFound(err error) bool { return errors.Is(err, codestore.ErrNotFound) }
