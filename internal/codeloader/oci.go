package codeloader

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// openOCI reads a blob of klambda's code store: GET /v2/<repository>/blobs/sha256:<hex>,
// anonymously (go-containerregistry's transport does a registry's token exchange), through
// the same policy-bound, redirect-bounded client as an http source. The blob is the archive,
// so the pinned digest is the blob's address and is checked as for any source.
func openOCI(ctx context.Context, src Source, lim Limits) (io.ReadCloser, int64, error) {
	if src.SHA256 == "" {
		return nil, 0, fmt.Errorf("oci source %s/%s: the blob's sha256 is not pinned", src.Registry, src.Repository)
	}
	var opts []name.Option
	if src.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(src.Registry+"/"+src.Repository, opts...)
	if err != nil {
		return nil, 0, err
	}
	client, done := httpClient(lim)
	tr, err := transport.NewWithContext(ctx, repo.Registry, authn.Anonymous, client.Transport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		done()
		return nil, 0, err
	}
	client.Transport = tr
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/sha256:%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), src.SHA256)
	return get(ctx, client, done, u)
}
