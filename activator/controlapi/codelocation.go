package controlapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/internal/codestore"
)

// GetFunction's Code.Location and GetLayerVersion's Content.Location are, as on Lambda,
// links valid for CodeLocationTTL: the activator itself serves the archive from the code
// store (GET /namespaces/{ns}/klambda/code/{sha256 hex}) to whoever holds the link, which
// carries its expiry and an HMAC-SHA256, by the activator's key, over (namespace, digest,
// expiry). The link is signed only after the caller was authorized to read the function or
// layer; the download needs no token.

// CodeLocationTTL is how long a code link stays valid (Lambda's 10 minutes).
const CodeLocationTTL = 10 * time.Minute

// Query parameters of a code link.
const (
	codeExpiresParam   = "X-Klambda-Expires"
	codeSignatureParam = "X-Klambda-Signature"
)

// CodeLocationKeyBytes is the size of a generated key; a shorter key is refused.
const CodeLocationKeyBytes = 32

// CodeLocationKeySecretKey is the key of the Secret (LoadCodeLocationKey) holding the key.
const CodeLocationKeySecretKey = "key"

// DefaultMaxDownloads is MaxDownloads' default.
const DefaultMaxDownloads = 16

// codeMAC is the signature of a link to the archive hx for namespace ns until exp (Unix s).
func (h *Handler) codeMAC(ns, hx string, exp int64) []byte {
	m := hmac.New(sha256.New, h.codeKey)
	_, _ = io.WriteString(m, "klambda-code-location/v1\n"+ns+"\n"+hx+"\n"+strconv.FormatInt(exp, 10))
	return m.Sum(nil)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// codeLink is a link, valid CodeLocationTTL, to the archive hx in the store, on the
// activator the call came to.
func (c *call) codeLink(hx string) string {
	exp := c.h.now().Add(CodeLocationTTL).Unix()
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	q := url.Values{codeExpiresParam: {strconv.FormatInt(exp, 10)},
		codeSignatureParam: {base64.RawURLEncoding.EncodeToString(c.h.codeMAC(c.ns, hx, exp))}}
	return scheme + "://" + c.r.Host + "/namespaces/" + c.ns + "/klambda/code/" + hx + "?" + q.Encode()
}

// storedCode is the hex digest of the archive whose base64 SHA-256 is b64 when the code
// store holds it: stored says the object's status found it there (codeStoreRef), or
// url and sha256 are the spec's and name it in the store (an upload of this API, stored
// before the object was written). "" when not known to be stored: the caller answers the
// code's own location.
func (h *Handler) storedCode(b64 string, stored bool, specURL, specSHA string) string {
	if h.Store == nil || b64 == "" {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != sha256.Size {
		return ""
	}
	hx := hex.EncodeToString(raw)
	if stored || (specSHA == hx && specURL == storeBlobURL(h.Store.Location(), hx)) {
		return hx
	}
	return ""
}

// storeBlobURL is the registry URL of the archive hx in the store.
func storeBlobURL(loc codestore.Location, hx string) string {
	scheme := "https://"
	if loc.PlainHTTP {
		scheme = "http://"
	}
	return scheme + loc.Registry + "/v2/" + loc.Repository + "/blobs/sha256:" + hx
}

func errCodeLink(msg string) *invoke.Error {
	return userErr(http.StatusForbidden, "AccessDeniedException", msg)
}

// verifyCodeLink checks a link to hx for namespace ns: its signature first (so that an
// expiry is claimed only of a link this activator's key signed), then its expiry.
func (h *Handler) verifyCodeLink(ns, hx string, q url.Values) *invoke.Error {
	if !codestore.ValidHex(hx) {
		return errCodeLink("This code link is not valid: " + hx + " is not a SHA-256 (hex). Call GetFunction or GetLayerVersion for a new link.")
	}
	exp, err := strconv.ParseInt(q.Get(codeExpiresParam), 10, 64)
	sig, err2 := base64.RawURLEncoding.DecodeString(q.Get(codeSignatureParam))
	if err != nil || err2 != nil || len(sig) != sha256.Size {
		return errCodeLink("This code link is not valid: it needs " + codeExpiresParam + " and " + codeSignatureParam +
			" as GetFunction or GetLayerVersion answered them.")
	}
	if !hmac.Equal(sig, h.codeMAC(ns, hx, exp)) {
		return errCodeLink("The signature of this code link does not match: its namespace (" + ns + "), digest or expiry was changed, " +
			"or another key signed it. Call GetFunction or GetLayerVersion for a new link.")
	}
	if at := time.Unix(exp, 0); !h.now().Before(at) {
		return errCodeLink("This code link expired at " + at.UTC().Format(time.RFC3339) + " (links are valid " + CodeLocationTTL.String() +
			"). Call GetFunction or GetLayerVersion for a new one.")
	}
	return nil
}

// downloadCode serves GET /klambda/code/{digest}: the archive, streamed from the store
// (never held whole), to the holder of a valid link. A refused link reads nothing.
func (h *Handler) downloadCode(w http.ResponseWriter, r *http.Request) {
	if h.Store == nil {
		errNotFound("This activator has no code store: it serves no code links.").Write(w)
		return
	}
	ns, hx := namespaceOf(r), r.PathValue("digest")
	if e := h.verifyCodeLink(ns, hx, r.URL.Query()); e != nil {
		e.Write(w)
		return
	}
	select {
	case h.downloads <- struct{}{}:
		defer func() { <-h.downloads }()
	default:
		errBusy("The activator serves as many code downloads at once as it may; retry.").Write(w)
		return
	}
	ref, err := h.Store.Stat(r.Context(), hx)
	var rc io.ReadCloser
	if err == nil && r.Method != http.MethodHead {
		rc, err = h.Store.Get(r.Context(), hx)
	}
	switch {
	case errors.Is(err, codestore.ErrNotFound):
		errNotFound("The code store no longer holds sha256:" + hx + ".").Write(w)
		return
	case err != nil:
		h.Log.Info("code download failed", "namespace", ns, "digest", hx, "error", err.Error())
		errService("could not read the code store").Write(w)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(ref.Size, 10))
	w.Header().Set("Content-Disposition", `attachment; filename="`+hx+`.zip"`)
	if rc == nil { // HEAD
		return
	}
	defer func() { _ = rc.Close() }()
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(w, rc, buf); err != nil {
		// The status and length are sent: cut the connection, so that the client sees a
		// truncated body, not a whole one.
		h.Log.Info("code download cut", "namespace", ns, "digest", hx, "error", err.Error())
		panic(http.ErrAbortHandler)
	}
}

// LoadCodeLocationKey returns the key that signs code links, kept in Secret name of
// namespace (key "key"): the first activator to start creates it with a random key, every
// other replica and restart reads it, so that each replica verifies the others' links. An
// operator may create the Secret beforehand (rotation: replace it and restart the
// activators; links already answered then stop working).
func LoadCodeLocationKey(ctx context.Context, cs kubernetes.Interface, namespace, name string) ([]byte, error) {
	secrets := cs.CoreV1().Secrets(namespace)
	for attempt := 0; attempt < 5; attempt++ {
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			k := sec.Data[CodeLocationKeySecretKey]
			if len(k) < CodeLocationKeyBytes {
				return nil, fmt.Errorf("Secret %s/%s: key %q must hold at least %d bytes (it has %d)", namespace, name, CodeLocationKeySecretKey, CodeLocationKeyBytes, len(k))
			}
			return k, nil
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
		}
		k := make([]byte, CodeLocationKeyBytes)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
			"app.kubernetes.io/name": "klambda", "app.kubernetes.io/component": "activator", "app.kubernetes.io/managed-by": "klambda-activator"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{CodeLocationKeySecretKey: k}}
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		switch {
		case err == nil:
			return k, nil
		case apierrors.IsAlreadyExists(err):
			continue // another replica created it first: use theirs
		}
		return nil, fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
	}
	return nil, fmt.Errorf("Secret %s/%s keeps changing under the activator", namespace, name)
}
