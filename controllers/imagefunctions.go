package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/semaphore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/derivedimage"
)

// An Image function runs in one container when the manager can derive its image
// (imageFunctions): the function's image for its architecture plus the runtime-shim, with
// the shim in front of the image's ENTRYPOINT (internal/derivedimage). The derived image
// is written once per (image digest, architecture, shim) into imageFunctions.repository,
// which the nodes pull from, and recorded in status.derivedImageUri; a restarted manager
// finds it there by its tag (the same digest, nothing rebuilt). While an image is being
// derived its function is Pending (Lambda's state while it optimizes an image), or its
// update InProgress. A derivation that fails leaves the function in the sidecar shape
// with a Warning Event (ImageNotDerived), and is tried again after retryFailedDerivation
// (the functions it left in the sidecar shape are then reconciled).

// retryFailedDerivation is how long a failed derivation is remembered before a reconcile
// tries it again (until then its functions run in the sidecar shape).
const retryFailedDerivation = 10 * time.Minute

// lookupTimeout bounds the question "is it derived already?" asked during a reconcile.
const lookupTimeout = 10 * time.Second

// ImageDeriver derives and finds the one-container images of Image functions.
type ImageDeriver struct {
	cfg    Config
	target name.Repository
	auth   authn.Authenticator
	slots  *semaphore.Weighted
	// wake has a Function for every waiter of a derivation that ended (the function
	// controller watches it).
	wake chan event.GenericEvent
	// retryAfter is retryFailedDerivation (tests shorten it).
	retryAfter time.Duration

	mu    sync.Mutex
	shims map[string]derivedimage.Shim // by GOARCH, hashed once
	byKey map[string]*derivation
}

type derivation struct {
	done    bool
	digest  v1.Hash
	err     error
	ended   time.Time
	waiters map[types.NamespacedName]bool
	// told: the functions already given the failure's Warning Event.
	told map[types.NamespacedName]bool
}

// NewImageDeriver returns the deriver of cfg.ImageFunctions (nil when it is off).
func NewImageDeriver(cfg Config) (*ImageDeriver, error) {
	c := cfg.ImageFunctions
	if c.Repository == "" {
		return nil, nil
	}
	var opts []name.Option
	if repo, err := name.NewRepository(c.Repository); err == nil && cfg.PlainHTTP(repo.RegistryStr()) {
		opts = append(opts, name.Insecure)
	}
	target, err := name.NewRepository(c.Repository, opts...)
	if err != nil {
		return nil, fmt.Errorf("imageFunctions.repository: %w", err)
	}
	d := &ImageDeriver{cfg: cfg, target: target, auth: authn.Anonymous, wake: make(chan event.GenericEvent, 256), retryAfter: retryFailedDerivation,
		shims: map[string]derivedimage.Shim{}, byKey: map[string]*derivation{}}
	if c.CredentialsDir != "" {
		if _, err := readCredentials(c.CredentialsDir); err != nil {
			return nil, fmt.Errorf("imageFunctions: %w", err)
		}
		d.auth = fileAuth(c.CredentialsDir)
	}
	n := c.MaxConcurrent
	if n <= 0 {
		n = DefaultImageFunctionsMaxConcurrent
	}
	d.slots = semaphore.NewWeighted(int64(n))
	return d, nil
}

// Wake is the channel of Functions whose derivation ended.
func (d *ImageDeriver) Wake() <-chan event.GenericEvent { return d.wake }

// goarch is the GOARCH of a function's architecture.
func goarch(c *lambdav1alpha1.FunctionConfiguration) (lambdaArch, arch string) {
	if len(c.Architectures) > 0 && c.Architectures[0] == lambdav1alpha1.ArchitectureArm64 {
		return string(lambdav1alpha1.ArchitectureArm64), "arm64"
	}
	return string(lambdav1alpha1.ArchitectureX8664), "amd64"
}

// DerivedImage is what Derived found.
type DerivedImage struct {
	// URI is the derived image, pinned ("" : the sidecar shape).
	URI string
	// Failed says why there is none when its derivation failed; Tell: this function has
	// not been told yet (a Warning Event).
	Failed string
	Tell   bool
}

// Derived returns the one-container image of an Image function whose image resolved to
// img: found or derived before, or nothing when it cannot have one (no shim for its
// architecture, an unpinned image) or its derivation failed. While it is being derived,
// a waiting *ResolveError (the function stays Pending, or its update InProgress).
// keychain gives the registry credentials of the function's pods, asked only when the
// registry is.
//
// The derived image is pulled from klambda's repository, anonymously: a function gets one
// only once its own credentials have read the source (the derivation, or a HEAD of the
// source's manifest when the image was derived for another function), else any tenant
// naming a digest another tenant derived would run that private image. What the
// function's status already records for the same image is not asked again.
func (d *ImageDeriver) Derived(ctx context.Context, fn *lambdav1alpha1.Function, img ImageResult, keychain func() (authn.Keychain, error)) (DerivedImage, error) {
	if d == nil || img.Unpinned != "" || !strings.Contains(img.URI, "@sha256:") {
		return DerivedImage{}, nil
	}
	lambdaArch, arch := goarch(&fn.Spec.FunctionConfiguration)
	shimFile, ok := d.cfg.ImageFunctions.Shims[lambdaArch]
	if !ok {
		return DerivedImage{}, nil
	}
	shim, err := d.shim(arch, shimFile)
	if err != nil {
		logf.FromContext(ctx).Error(err, "the runtime-shim for Image functions can't be read", "architecture", lambdaArch, "file", shimFile)
		return DerivedImage{Failed: fmt.Sprintf("the manager's runtime-shim for %s can't be read", lambdaArch), Tell: true}, nil
	}
	req, err := d.request(img.URI, arch, shim)
	if err != nil {
		return DerivedImage{Failed: err.Error(), Tell: true}, nil
	}
	st := &fn.Status
	sameImage := st.ResolvedImageURI == img.URI && st.DerivedImageURI != ""
	known := ""
	if sameImage && resolvedThisGeneration(fn) {
		known = st.DerivedImageURI
	}
	res, err := d.derived(ctx, types.NamespacedName{Namespace: fn.Namespace, Name: fn.Name}, img, req, known, keychain)
	if err != nil || res.URI == "" || sameImage && res.URI == st.DerivedImageURI {
		return res, err
	}
	if err := d.mayPull(ctx, req, keychain); err != nil {
		return DerivedImage{}, err
	}
	return res, nil
}

// mayPull asks the source's registry for its manifest with the function's credentials.
func (d *ImageDeriver) mayPull(ctx context.Context, req derivedimage.Request, keychain func() (authn.Keychain, error)) error {
	kc, err := keychain()
	if err != nil {
		return err
	}
	if kc != nil {
		req.SourceRegistry.Keychain = kc
	}
	hctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	_, err = derivedimage.Head(hctx, req.Source, req.SourceRegistry)
	if err == nil {
		return nil
	}
	logf.FromContext(ctx).Info("image access check failed", "image", req.Source.String(), "detail", err.Error())
	uri := req.Source.String()
	var te *transport.Error
	switch {
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return &ResolveError{Reason: lambdav1alpha1.StateReasonImageAccessDenied, Message: fmt.Sprintf("code.imageUri %s: the registry refused access (the function's ServiceAccount's imagePullSecrets are used)", uri)}
	case derivedimage.IsNotFound(err):
		return &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidImage, Message: fmt.Sprintf("code.imageUri %s: the registry has no such image", uri)}
	}
	return &ResolveError{Reason: lambdav1alpha1.StateReasonInternalError, Transient: true, Message: fmt.Sprintf("code.imageUri %s: the registry could not be asked", uri)}
}

// derived finds, waits for or starts the derivation of req.
func (d *ImageDeriver) derived(ctx context.Context, fnKey types.NamespacedName, img ImageResult, req derivedimage.Request, known string, keychain func() (authn.Keychain, error)) (DerivedImage, error) {
	key := req.Key()
	d.mu.Lock()
	job := d.byKey[key]
	if job != nil && job.done && job.err != nil && time.Since(job.ended) >= d.retryAfter {
		delete(d.byKey, key)
		job = nil
	}
	if job != nil {
		defer d.mu.Unlock()
		switch {
		case !job.done:
			job.waiters[fnKey] = true
			return DerivedImage{}, waitingForDerivation(img.URI)
		case job.err == nil:
			return DerivedImage{URI: d.target.Digest(job.digest.String()).String()}, nil
		}
		tell := !job.told[fnKey]
		job.told[fnKey] = true
		return DerivedImage{Failed: failureMessage(job.err), Tell: tell}, nil
	}
	d.mu.Unlock()
	// Derived before (by this process before it restarted, or another replica): its tag
	// says so, and the same digest is used. Nothing is rebuilt.
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	digest, found, err := derivedimage.Lookup(lctx, req)
	cancel()
	if err == nil && found {
		d.mu.Lock()
		d.byKey[key] = &derivation{done: true, digest: digest, ended: time.Now(), told: map[types.NamespacedName]bool{}}
		d.mu.Unlock()
		return DerivedImage{URI: d.target.Digest(digest.String()).String()}, nil
	}
	if err != nil {
		logf.FromContext(ctx).Info("derived image lookup failed", "image", img.URI, "detail", err.Error())
		if known != "" {
			// What this generation runs stays: a registry that is down changes nothing.
			return DerivedImage{URI: known}, nil
		}
		// Derive asks again, and a failure there is reported.
	}
	kc, err := keychain()
	if err != nil {
		return DerivedImage{}, err
	}
	if kc != nil {
		req.SourceRegistry.Keychain = kc
	}
	d.start(ctx, key, req, fnKey)
	return DerivedImage{}, waitingForDerivation(img.URI)
}

// derivedShimCommand starts a derived image's shim (its ENTRYPOINT's beginning): the
// invoke port and Runtime API address of every function pod.
func derivedShimCommand() []string {
	return derivedimage.ShimEntrypoint(fmt.Sprintf(":%d", contract.ShimPort), runtimeAPIAddr)
}

func waitingForDerivation(uri string) error {
	return &ResolveError{Reason: lambdav1alpha1.StateReasonCreating, Waiting: true,
		Message: fmt.Sprintf("code.imageUri %s: the image is being prepared to start in one container (the runtime-shim added)", uri)}
}

// failureMessage is what a function's Event says about a failed derivation: the category,
// never what a registry answered (the manager's log has it).
func failureMessage(err error) string {
	switch {
	case errors.Is(err, derivedimage.ErrTooLarge), errors.Is(err, derivedimage.ErrPlatform):
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "the image could not be derived in time"
	}
	return "the image could not be read or the derived image could not be written"
}

// start derives in the background (at most imageFunctions.maxConcurrent at once, each
// within imageFunctions.timeout) and wakes the waiting functions when it ends.
func (d *ImageDeriver) start(ctx context.Context, key string, req derivedimage.Request, fnKey types.NamespacedName) {
	d.mu.Lock()
	if job := d.byKey[key]; job != nil {
		if !job.done {
			job.waiters[fnKey] = true
		}
		d.mu.Unlock()
		return
	}
	job := &derivation{waiters: map[types.NamespacedName]bool{fnKey: true}, told: map[types.NamespacedName]bool{}}
	d.byKey[key] = job
	d.mu.Unlock()
	log := logf.FromContext(ctx).WithValues("image", req.Source.String(), "architecture", req.Arch)
	go func() {
		// The timeout starts with the derivation, not while it waits for a slot: a queue
		// behind a large image does not time out (it is bounded by the functions waiting).
		_ = d.slots.Acquire(context.Background(), 1)
		dctx, cancel := context.WithTimeout(context.Background(), d.cfg.ImageFunctions.Timeout.Duration)
		started := time.Now()
		digest, err := derivedimage.Derive(dctx, req)
		cancel()
		d.slots.Release(1)
		if err == nil {
			log.Info("image derived", "derived", d.target.Digest(digest.String()).String(), "seconds", time.Since(started).Seconds())
		} else {
			log.Info("image derivation failed", "detail", err.Error())
		}
		d.mu.Lock()
		job.done, job.digest, job.err, job.ended = true, digest, err, time.Now()
		waiters := job.waiters
		job.waiters = nil
		d.mu.Unlock()
		d.wakeAll(waiters)
		if err != nil {
			// The functions left in the sidecar shape come back to try again.
			time.AfterFunc(d.retryAfter+time.Second/10, func() {
				d.mu.Lock()
				told := maps.Clone(job.told)
				d.mu.Unlock()
				d.wakeAll(told)
			})
		}
	}()
}

// wakeAll sends the functions to the function controller.
func (d *ImageDeriver) wakeAll(fns map[types.NamespacedName]bool) {
	for w := range fns {
		select {
		case d.wake <- event.GenericEvent{Object: &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}}}:
		default: // the waiting function's own requeue (30 s) brings it back
		}
	}
}

// forget drops what the deriver knows of key (its image is being deleted): the next
// function that needs it derives it again.
func (d *ImageDeriver) forget(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if job := d.byKey[key]; job != nil && job.done {
		delete(d.byKey, key)
	}
}

// shim hashes the shim binary of arch once.
func (d *ImageDeriver) shim(arch, file string) (derivedimage.Shim, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.shims[arch]; ok {
		return s, nil
	}
	s, err := derivedimage.ReadShim(file)
	if err != nil {
		return s, err
	}
	d.shims[arch] = s
	return s, nil
}

// request is the derivation of the pinned image uri. The function's registry is the
// tenant's to name: dialed through the egress policy (and, set by Derived, with its
// ServiceAccount's pull secrets), as when its tag was resolved.
func (d *ImageDeriver) request(uri, arch string, shim derivedimage.Shim) (derivedimage.Request, error) {
	ref, err := name.NewDigest(uri)
	if err != nil {
		return derivedimage.Request{}, fmt.Errorf("code.imageUri %s is not a pinned image reference", uri)
	}
	if d.cfg.PlainHTTP(ref.Context().RegistryStr()) {
		ref, _ = name.NewDigest(uri, name.Insecure)
	}
	tr := &http.Transport{Proxy: nil, DialContext: d.cfg.Policy().DialContext, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second, MaxResponseHeaderBytes: 64 << 10}
	return derivedimage.Request{
		Source: ref, SourceRegistry: derivedimage.Registry{Keychain: authn.NewMultiKeychain(), Transport: tr},
		Arch: arch, Shim: shim, Entrypoint: derivedShimCommand(),
		Target: d.target, TargetRegistry: derivedimage.Registry{Auth: d.auth, Transport: remote.DefaultTransport},
		MaxBytes: d.cfg.ImageFunctions.MaxBytes,
		Jobs:     2,
	}, nil
}
