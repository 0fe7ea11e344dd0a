package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/controlapi"
	"github.com/klambda/klambda/internal/codestore"
)

// controlAPIOptions are the flags of the Lambda control-plane API (activator/controlapi).
type controlAPIOptions struct {
	on                   *bool
	repository, credsDir *string
	plainHTTP            *bool
	maxUploads           *int
	codeKeySecret        *string
}

func bindControlAPIFlags(fs *flag.FlagSet) *controlAPIOptions {
	return &controlAPIOptions{
		on:            fs.Bool("control-api", false, "Serve Lambda's control-plane API (CreateFunction, UpdateFunctionCode, PublishVersion, CreateAlias, ...) on the Invoke API's listener, authorized per operation by SubjectAccessReviews; the activator then needs write access to Functions, Versions, Aliases, EventSourceMappings and LayerVersions (chart activator.controlAPI.enabled)."),
		repository:    fs.String("code-store-repository", "", "The code store (registry/path, as the manager's codeStore.repository) that CreateFunction's and UpdateFunctionCode's ZipFile uploads go to; empty: ZipFile is refused."),
		plainHTTP:     fs.Bool("code-store-plain-http", false, "Reach --code-store-repository without TLS (an in-cluster registry)."),
		credsDir:      fs.String("code-store-credentials-dir", "", "Directory with files username and password: write credentials of --code-store-repository, read at every request."),
		maxUploads:    fs.Int("control-api-max-uploads", controlapi.DefaultMaxUploads, "Code uploads (each up to 50 MB zipped) served at once; past it TooManyRequestsException."),
		codeKeySecret: fs.String("code-location-key-secret", "", "Secret of $POD_NAMESPACE whose key \"key\" signs the 10-minute links of GetFunction's Code.Location and GetLayerVersion's Content.Location to the code store's archives; created with a random key when missing, so that every replica verifies the others' links. Empty: a key of this process (its links verify only on it, until it restarts)."),
	}
}

// wrap puts the control-plane API in front of the Invoke API (next), when enabled.
func (o *controlAPIOptions) wrap(next http.Handler, scheme *runtime.Scheme, cfg *rest.Config, cs kubernetes.Interface,
	checker *auth.Checker, authOn bool, opts *options, log logr.Logger) (http.Handler, error) {
	if !*o.on {
		if *o.repository != "" || *o.codeKeySecret != "" {
			return nil, errors.New("--code-store-repository and --code-location-key-secret are used by the control-plane API only: give --control-api too")
		}
		return next, nil
	}
	if *o.maxUploads < 1 {
		return nil, errors.New("--control-api-max-uploads must be at least 1")
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	h := &controlapi.Handler{DefaultNamespace: *opts.defaultNS, Region: *opts.region, AccountID: *opts.accountID,
		Client: c, NamespaceConcurrency: int32(*opts.namespaceLimit), MaxUploads: *o.maxUploads, Next: next,
		Log: log.WithName("control-api")}
	if authOn {
		if checker == nil {
			return nil, errors.New("the control-plane API needs the Invoke API's authorization")
		}
		// Its own checker: the same token reviews (audiences), SubjectAccessReviews of the
		// operation's verb and resource, its own caches and review budget.
		c := controlapi.NewChecker(checker.Authn, cs)
		c.ReviewRate, c.ReviewBurst = checker.ReviewRate, checker.ReviewBurst
		h.Auth = c
	}
	if *o.repository != "" {
		so := codestore.OCIOptions{Repository: *o.repository, PlainHTTP: *o.plainHTTP}
		if *o.credsDir != "" {
			if _, err := readStoreCredentials(*o.credsDir); err != nil {
				return nil, err
			}
			so.Auth = storeAuth(*o.credsDir)
		}
		if h.Store, err = codestore.NewOCI(so); err != nil {
			return nil, fmt.Errorf("--code-store-repository: %w", err)
		}
	}
	if *o.codeKeySecret != "" {
		ns := os.Getenv("POD_NAMESPACE")
		switch {
		case h.Store == nil:
			return nil, errors.New("--code-location-key-secret signs links to the code store: give --code-store-repository too")
		case ns == "":
			return nil, errors.New("--code-location-key-secret needs $POD_NAMESPACE (the Secret's namespace)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if h.CodeKey, err = controlapi.LoadCodeLocationKey(ctx, cs, ns, *o.codeKeySecret); err != nil {
			return nil, fmt.Errorf("--code-location-key-secret: %w", err)
		}
	}
	log.Info("serving the Lambda control-plane API", "codeStore", *o.repository)
	return h, nil
}

func readStoreCredentials(dir string) (authn.AuthConfig, error) {
	var a authn.AuthConfig
	for f, dst := range map[string]*string{"username": &a.Username, "password": &a.Password} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return a, fmt.Errorf("--code-store-credentials-dir: %w", err)
		}
		*dst = strings.TrimSpace(string(b))
	}
	return a, nil
}

// storeAuth reads the credentials at every request (a rotated Secret needs no restart).
type storeAuth string

func (d storeAuth) Authorization() (*authn.AuthConfig, error) {
	a, err := readStoreCredentials(string(d))
	return &a, err
}
