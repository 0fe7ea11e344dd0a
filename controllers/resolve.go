package controllers

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/semaphore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/netguard"
)

// Where a pod finds things.
const (
	taskRoot    = "/var/task"
	optRoot     = "/opt"
	runtimeDir  = "/var/runtime"
	sourcesRoot = "/klambda/sources"
	// codeZipKey is the binaryData key of klambda's immutable copies of ConfigMap code.
	codeZipKey = "code.zip"
)

// ResolveError is a problem with a function's code, image or layers that fails the
// Function (or its update) with one of Lambda's reason codes. Transient ones (a download
// that failed) are retried after a while.
type ResolveError struct {
	Reason    lambdav1alpha1.StateReasonCode
	Message   string
	Transient bool
	// Waiting: nothing is wrong yet, something the function needs (a layer) is still being
	// published; the function stays Pending (or its update InProgress) until it is.
	Waiting bool
	// Service: klambda's own code store could not be used (Transient too): the function is
	// retried, Pending, for storeFailureGrace before it is Failed (storeretry.go).
	Service bool
}

func (e *ResolveError) Error() string { return e.Message }

func invalid(format string, args ...any) error {
	return &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidConfiguration, Message: fmt.Sprintf(format, args...)}
}

// Digest is the digest of resolved code or layer content.
type Digest = codeloader.Digest

// digestFromBase64 turns Lambda's base64 codeSha256 back into a Digest (hex for the loader).
func digestFromBase64(b64 string, size int64) (Digest, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return Digest{}, fmt.Errorf("codeSha256 %q is not a base64 SHA-256", b64)
	}
	return Digest{Hex: hex.EncodeToString(raw), Base64: b64, Size: size}, nil
}

// Resolver fetches and checks code and layer content. Downloads (url, s3) are remembered by
// source for the life of the process, so a reconcile doesn't download again; ConfigMaps
// are read every time (they are small and read uncached).
type Resolver struct {
	// Reader reads ConfigMaps and Secrets from the API server (not from a cache, so the
	// manager doesn't cache every ConfigMap and Secret of the cluster).
	Reader client.Reader
	Client client.Client
	Config Config
	// Store is the code store (nil: none). With one, every archive is put into it once
	// resolved, and pods load it from there.
	Store codestore.Store

	mu    sync.Mutex
	cache map[string]cachedDigest

	slotsOnce sync.Once
	slots     *semaphore.Weighted
}

type cachedDigest struct {
	d   Digest
	err error
}

// storeError is a code store that could not be used: retried, the function's previous code
// keeps serving.
func storeError(what string, err error) error {
	return &ResolveError{Reason: lambdav1alpha1.StateReasonInternalError, Message: fmt.Sprintf("%s: the code store: %v", what, err), Transient: true, Service: true}
}

// Stored returns the code store's reference of stored content ("" and no error without a
// code store; codestore.ErrNotFound when it is not there).
func (r *Resolver) Stored(ctx context.Context, d Digest) (string, error) {
	if r.Store == nil {
		return "", nil
	}
	ref, err := r.Store.Stat(ctx, d.Hex)
	return ref.Artifact, err
}

// put stores a checked archive file in the code store ("" without one).
func (r *Resolver) put(ctx context.Context, what, file string, d Digest) (string, error) {
	if r.Store == nil {
		return "", nil
	}
	ref, err := r.Store.Put(ctx, file, d.Hex)
	if err != nil {
		return "", storeError(what, err)
	}
	log.FromContext(ctx).V(1).Info("code stored", "what", what, "sha256", d.Hex, "artifact", ref.Artifact)
	return ref.Artifact, nil
}

// putBytes stores a checked archive held in memory (ConfigMap content).
func (r *Resolver) putBytes(ctx context.Context, what string, data []byte, d Digest) (string, error) {
	if r.Store == nil {
		return "", nil
	}
	if ref, err := r.Stored(ctx, d); err == nil {
		return ref, nil
	}
	f, err := os.CreateTemp(r.Config.CodeFetch.TempDir, "klambda-*.zip")
	if err != nil {
		return "", storeError(what, err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", storeError(what, err)
	}
	return r.put(ctx, what, f.Name(), d)
}

// ZipResult is resolved .zip content.
type ZipResult struct {
	Digest Digest
	// ConfigMapCopy is klambda's immutable copy of ConfigMap content, which pods mount
	// (without a code store).
	ConfigMapCopy string
	// StoreRef is the code store's artifact holding the archive (with a code store).
	StoreRef string
}

// ResolveZip resolves a .zip source of owner (a Function or a LayerVersion) that will be
// unpacked into root: it reads or downloads the archive, checks its digest and that it
// unpacks safely, and for a ConfigMap source makes an immutable copy owned by owner, named
// by digest, so that published versions keep running the code they froze.
func (r *Resolver) ResolveZip(ctx context.Context, owner client.Object, what string, src lambdav1alpha1.CodeSource, root string) (ZipResult, error) {
	ns := owner.GetNamespace()
	switch {
	case src.ConfigMapRef != nil:
		return r.resolveConfigMap(ctx, owner, what, src.ConfigMapRef, root)
	case src.URL != "":
		s := codeloader.Source{Scheme: "https", URL: src.URL, SHA256: strings.ToLower(src.SHA256)}
		if strings.HasPrefix(src.URL, "http://") {
			s.Scheme = "http"
		}
		d, ref, err := r.fetchCached(ctx, what, s, nil, root)
		return ZipResult{Digest: d, StoreRef: ref}, err
	case src.S3 != nil:
		var creds *codeloader.Credentials
		key := ""
		if src.S3.Credentials != nil {
			var sec corev1.Secret
			if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: src.S3.Credentials.Name}, &sec); err != nil {
				if apierrors.IsNotFound(err) {
					return ZipResult{}, invalid("%s.s3.credentials: Secret %s not found", what, src.S3.Credentials.Name)
				}
				return ZipResult{}, err
			}
			creds = &codeloader.Credentials{AccessKeyID: string(sec.Data["AWS_ACCESS_KEY_ID"]), SecretAccessKey: string(sec.Data["AWS_SECRET_ACCESS_KEY"]), SessionToken: string(sec.Data["AWS_SESSION_TOKEN"])}
			if creds.AccessKeyID == "" {
				return ZipResult{}, invalid("%s.s3.credentials: Secret %s has no AWS_ACCESS_KEY_ID", what, src.S3.Credentials.Name)
			}
			key = sec.ResourceVersion
		}
		s := s3Source(src.S3, "")
		d, ref, err := r.fetchCachedKey(ctx, what, s.String()+"|"+key, s, creds, root)
		return ZipResult{Digest: d, StoreRef: ref}, err
	}
	return ZipResult{}, invalid("%s: no source: set configMapRef, url or s3", what)
}

func s3Source(l *lambdav1alpha1.S3Location, credPrefix string) codeloader.Source {
	return codeloader.Source{Scheme: "s3", Bucket: l.Bucket, Key: l.Key, Endpoint: l.Endpoint, Region: l.Region, ObjectVersion: l.ObjectVersion, CredentialsEnv: credPrefix}
}

func (r *Resolver) fetchCached(ctx context.Context, what string, s codeloader.Source, creds *codeloader.Credentials, root string) (Digest, string, error) {
	return r.fetchCachedKey(ctx, what, s.String(), s, creds, root)
}

// fetchCachedKey downloads, checks and (with a code store) stores an archive, once: a
// source seen before is not downloaded again while the store holds what it gave, and a
// source that pins a digest the store holds is not downloaded at all.
func (r *Resolver) fetchCachedKey(ctx context.Context, what, key string, s codeloader.Source, creds *codeloader.Credentials, root string) (Digest, string, error) {
	key += "|" + root
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && (c.err != nil || r.Store == nil) {
		return c.d, "", c.err
	}
	if ok {
		ref, err := r.Stored(ctx, c.d)
		if err == nil {
			return c.d, ref, nil
		}
		if !errors.Is(err, codestore.ErrNotFound) {
			return Digest{}, "", storeError(what, err)
		}
		// Gone from the store (collected, or the store was emptied): fetched again.
	}
	if r.Store != nil && codestore.ValidHex(s.SHA256) {
		ref, err := r.Store.Stat(ctx, s.SHA256)
		if err == nil {
			raw, _ := hex.DecodeString(s.SHA256)
			d := Digest{Hex: s.SHA256, Base64: base64.StdEncoding.EncodeToString(raw), Size: ref.Size}
			r.remember(key, d, nil)
			return d, ref.Artifact, nil
		}
		if !errors.Is(err, codestore.ErrNotFound) {
			return Digest{}, "", storeError(what, err)
		}
	}
	// One download at a time per slot (codeFetch.maxConcurrent), streamed to a temporary
	// file (codeFetch.tempDir) while it is hashed: the manager's memory does not depend on
	// the archive's size, and the disk it uses is bounded by maxConcurrent × maxBytes.
	if err := r.fetchSlots().Acquire(ctx, 1); err != nil {
		return Digest{}, "", err
	}
	defer r.fetchSlots().Release(1)
	file, d, err := codeloader.FetchLimited(ctx, s, creds, r.Config.CodeFetch.TempDir, r.Config.FetchLimits())
	if err != nil {
		// The status says the category only (codeloader.FetchError): never what the
		// server said, which would make the manager a scanner of the cluster's network.
		// The manager's log has the rest.
		var fe *codeloader.FetchError
		if errors.As(err, &fe) {
			log.FromContext(ctx).Info("code download failed", "what", what, "detail", fe.Detail())
			if fe.Kind == codeloader.FetchChecksum || fe.Kind == codeloader.FetchTooLarge {
				err = invalid("%s: %v", what, err)
				r.remember(key, Digest{}, err)
				return Digest{}, "", err
			}
		}
		return Digest{}, "", &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidConfiguration, Message: fmt.Sprintf("%s: %v", what, err), Transient: true}
	}
	defer func() { _ = os.Remove(file) }()
	if _, err := codeloader.Check(file, root); err != nil {
		err = invalid("%s: the package can't be unpacked into %s: %v", what, root, err)
		r.remember(key, Digest{}, err)
		return Digest{}, "", err
	}
	ref, err := r.put(ctx, what, file, d)
	if err != nil {
		return Digest{}, "", err
	}
	r.remember(key, d, nil)
	return d, ref, nil
}

// fetchSlots bounds the downloads that run at once (codeFetch.maxConcurrent).
func (r *Resolver) fetchSlots() *semaphore.Weighted {
	r.slotsOnce.Do(func() {
		n := r.Config.CodeFetch.MaxConcurrent
		if n <= 0 {
			n = DefaultMaxConcurrentFetches
		}
		r.slots = semaphore.NewWeighted(int64(n))
	})
	return r.slots
}

func (r *Resolver) remember(key string, d Digest, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[string]cachedDigest{}
	}
	r.cache[key] = cachedDigest{d, err}
}

func (r *Resolver) resolveConfigMap(ctx context.Context, owner client.Object, what string, ref *lambdav1alpha1.ConfigMapCodeSource, root string) (ZipResult, error) {
	var cm corev1.ConfigMap
	if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: owner.GetNamespace(), Name: ref.Name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return ZipResult{}, invalid("%s.configMapRef: ConfigMap %s not found", what, ref.Name)
		}
		return ZipResult{}, fmt.Errorf("reading ConfigMap %s: %w", ref.Name, err)
	}
	var zipData []byte
	if ref.Key != "" {
		if b, ok := cm.BinaryData[ref.Key]; ok {
			zipData = b
		} else if s, ok := cm.Data[ref.Key]; ok {
			zipData = []byte(s)
		} else {
			return ZipResult{}, invalid("%s.configMapRef: ConfigMap %s has no key %q", what, ref.Name, ref.Key)
		}
	} else {
		files := map[string][]byte{}
		for k, v := range cm.Data {
			files[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			files[k] = v
		}
		if len(files) == 0 {
			return ZipResult{}, invalid("%s.configMapRef: ConfigMap %s is empty", what, ref.Name)
		}
		var err error
		if zipData, err = codeloader.ZipFiles(files); err != nil {
			return ZipResult{}, invalid("%s.configMapRef: %v", what, err)
		}
	}
	d := codeloader.DigestOf(zipData)
	if _, err := codeloader.CheckBytes(zipData, root); err != nil {
		return ZipResult{}, invalid("%s: the package in ConfigMap %s can't be unpacked into %s: %v", what, ref.Name, root, err)
	}
	if r.Store != nil {
		ref, err := r.putBytes(ctx, what, zipData, d)
		return ZipResult{Digest: d, StoreRef: ref}, err
	}
	copyName := codeConfigMapName(owner.GetName(), d.Hex)
	if err := r.ensureCopy(ctx, owner, copyName, zipData); err != nil {
		return ZipResult{}, err
	}
	return ZipResult{Digest: d, ConfigMapCopy: copyName}, nil
}

// ensureCopy creates the immutable, content-addressed copy of ConfigMap content. Several
// owners may share content but each has its own copy (the name starts with the owner's).
func (r *Resolver) ensureCopy(ctx context.Context, owner client.Object, copyName string, data []byte) error {
	immutable := true
	labels := sharedAppLabels(appComponentLayer) // a LayerVersion's content
	if f, ok := owner.(*lambdav1alpha1.Function); ok {
		labels = functionAppLabels(f.Name)
		labels[contract.LabelFunction] = contract.FunctionLabelValue(f.Name)
	}
	labels[contract.LabelComponent] = "code"
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: copyName, Namespace: owner.GetNamespace(), Labels: labels},
		Immutable:  &immutable,
		BinaryData: map[string][]byte{codeZipKey: data},
	}
	if err := controllerutil.SetOwnerReference(owner, cm, r.Client.Scheme()); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the code copy %s: %w", copyName, err)
	}
	return nil
}

// ImageResult is a resolved container image.
type ImageResult struct {
	// URI is the image the pods run: pinned to a digest whenever one is known.
	URI    string
	Digest Digest
	// Unpinned explains why URI is a tag (the registry couldn't be asked).
	Unpinned string
}

// ResolveImage pins imageUri to its digest: the one it carries, or the registry's for its
// tag (remembered for the life of the process, as Lambda resolves a tag once per deploy;
// the function controller also keeps it in status.resolvedImageUri across restarts).
// keychain authenticates to the registry (the function's ServiceAccount's
// imagePullSecrets; nil: anonymous). A tag that can't be resolved is a *ResolveError
// (ImageAccessDenied, InvalidImage, or a transient InternalError), never a silently
// unpinned tag; only resolveImageTags: false runs tags unpinned. A registry listed in
// plainHTTPRegistries is asked over plain HTTP.
func (r *Resolver) ResolveImage(ctx context.Context, imageURI string, keychain authn.Keychain) (ImageResult, error) {
	ref, err := name.ParseReference(imageURI)
	if err != nil {
		return ImageResult{}, &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidImage, Message: fmt.Sprintf("code.imageUri %q is not a valid image reference: %v", imageURI, err)}
	}
	if dg, ok := ref.(name.Digest); ok {
		return imageResult(imageURI, dg.DigestStr())
	}
	if r.Config.PlainHTTP(ref.Context().RegistryStr()) {
		// Parsed above, so parsed again without an error.
		ref, _ = name.ParseReference(imageURI, name.Insecure)
	}
	if r.Config.ResolveImageTags == nil || !*r.Config.ResolveImageTags {
		// Unpinned by the operator's choice: the digest of the reference stands in for codeSha256.
		return ImageResult{URI: imageURI, Digest: codeloader.DigestOf([]byte(imageURI)), Unpinned: "tag not resolved to a digest: resolveImageTags is false"}, nil
	}
	key := "image|" + imageURI
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && c.err == nil {
		return imageResult(ref.Context().Name()+"@sha256:"+c.d.Hex, "sha256:"+c.d.Hex)
	}
	if keychain == nil {
		keychain = authn.NewMultiKeychain() // anonymous
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The registry is the tenant's to name: dialed through the egress policy, and its
	// answer is not echoed (the manager's log has it).
	tr := &http.Transport{Proxy: nil, DialContext: r.Config.Policy().DialContext, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 10 * time.Second, MaxResponseHeaderBytes: 64 << 10}
	defer tr.CloseIdleConnections()
	desc, herr := remote.Head(ref, remote.WithContext(hctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(keychain))
	if herr == nil && desc.Digest.Algorithm == "sha256" {
		raw, _ := hex.DecodeString(desc.Digest.Hex)
		r.remember(key, Digest{Hex: desc.Digest.Hex, Base64: base64.StdEncoding.EncodeToString(raw), Size: desc.Size}, nil)
		return imageResult(ref.Context().Name()+"@"+desc.Digest.String(), desc.Digest.String())
	}
	if herr != nil {
		log.FromContext(ctx).Info("image tag not resolved", "imageUri", imageURI, "detail", herr.Error())
	}
	var te *transport.Error
	rerr := &ResolveError{Reason: lambdav1alpha1.StateReasonInternalError, Transient: true}
	switch {
	case herr == nil:
		rerr.Reason, rerr.Message = lambdav1alpha1.StateReasonInvalidImage, fmt.Sprintf("code.imageUri %s: the registry answered a %s digest", imageURI, desc.Digest.Algorithm)
	case netguard.Denied(herr):
		rerr.Message = fmt.Sprintf("code.imageUri %s: the registry's address is not allowed by the manager's egress policy", imageURI)
	case errors.As(herr, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		rerr.Reason, rerr.Message = lambdav1alpha1.StateReasonImageAccessDenied, fmt.Sprintf("code.imageUri %s: the registry refused access (the function's ServiceAccount's imagePullSecrets are used)", imageURI)
	case errors.As(herr, &te) && te.StatusCode == http.StatusNotFound:
		rerr.Reason, rerr.Message = lambdav1alpha1.StateReasonInvalidImage, fmt.Sprintf("code.imageUri %s: the registry has no such image", imageURI)
	case hctx.Err() != nil:
		rerr.Message = fmt.Sprintf("code.imageUri %s: the tag could not be resolved to a digest: the registry did not answer in time", imageURI)
	default:
		rerr.Message = fmt.Sprintf("code.imageUri %s: the tag could not be resolved to a digest: the registry could not be asked", imageURI)
	}
	return ImageResult{}, rerr
}

func imageResult(uri, digest string) (ImageResult, error) {
	hexPart := strings.TrimPrefix(digest, "sha256:")
	raw, err := hex.DecodeString(hexPart)
	if err != nil || len(raw) != 32 {
		return ImageResult{}, &ResolveError{Reason: lambdav1alpha1.StateReasonInvalidImage, Message: fmt.Sprintf("code.imageUri: digest %q is not a sha256 digest", digest)}
	}
	return ImageResult{URI: uri, Digest: Digest{Hex: hexPart, Base64: base64.StdEncoding.EncodeToString(raw)}}, nil
}
