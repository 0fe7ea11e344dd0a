// Package controlapi serves Lambda's control-plane REST API (CreateFunction,
// UpdateFunctionCode, PublishVersion, CreateAlias, PutFunctionConcurrency, ...) on the
// activator's endpoint, under the Invoke API's /namespaces/{ns} prefix and with its
// authentication, over the klambda CRDs: the API reads and writes Function, Version,
// Alias, EventSourceMapping and LayerVersion objects with the activator's client, so
// kubectl, GitOps and the API see the same objects. Each operation is authorized with a SubjectAccessReview on the Kubernetes verb
// and resource it amounts to (README.md).
package controlapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/internal/codestore"
)

// Authorizer decides whether a token may do what a permission key (Permission.Key) says
// in a namespace: auth.Checker over auth.Kube and SAR.
type Authorizer interface {
	CheckFrom(ctx context.Context, source, token, namespace, key string) (auth.Decision, error)
}

// Handler serves the control-plane API and hands every other request (the Invoke API,
// unknown operations) to Next.
type Handler struct {
	DefaultNamespace string
	Region           string
	AccountID        string
	// Client reads and writes the CRDs (the activator's client: direct, not cached, so an
	// answer reflects the write before it).
	Client client.Client
	// Store keeps uploaded .zip archives (ZipFile); nil: ZipFile is refused.
	Store codestore.Store
	// Auth nil turns authorization off (local development only).
	Auth Authorizer
	// NamespaceConcurrency is the namespace's concurrency limit (GetAccountSettings).
	NamespaceConcurrency int32
	// MaxUploads bounds the requests carrying a code upload (up to MaxUploadBytes each)
	// served at once; past it TooManyRequestsException. 0: DefaultMaxUploads.
	MaxUploads int
	// CodeKey signs and verifies the code links of GetFunction's Code.Location and
	// GetLayerVersion's Content.Location (codelocation.go); every replica needs the same
	// (LoadCodeLocationKey). nil: a random key of this Handler, whose links only it verifies.
	CodeKey []byte
	// MaxDownloads bounds the code downloads (each holding a code store connection) served
	// at once; past it TooManyRequestsException. 0: DefaultMaxDownloads.
	MaxDownloads int
	// Now is the clock of code links; nil: time.Now.
	Now func() time.Time
	// Next serves everything else.
	Next http.Handler
	Log  logr.Logger

	once      sync.Once
	mux       *http.ServeMux
	uploads   chan struct{}
	downloads chan struct{}
	codeKey   []byte
}

// Bounds of request bodies.
const (
	// MaxUploadBytes bounds CreateFunction's and UpdateFunctionCode's body: Lambda's 50 MB
	// zip, base64-encoded in JSON.
	MaxUploadBytes = 50*1024*1024*4/3 + 64*1024
	// maxBody bounds every other operation's body.
	maxBody = 1 << 20
	// DefaultMaxUploads is MaxUploads' default.
	DefaultMaxUploads = 4
)

// FieldManager is the field manager of the API's writes; LabelManagedBy (value
// ManagedByValue) marks the objects the API created (README.md, "Who owns an object").
const (
	FieldManager   = "klambda-lambda-api"
	LabelManagedBy = "lambda.klambda.dev/managed-by"
	ManagedByValue = "lambda-api"
	// AnnotationWritable: "true" lets the API change an object it did not create.
	AnnotationWritable = "lambda.klambda.dev/lambda-api-writable"
)

type nsKey struct{}

func namespaceOf(r *http.Request) string { return r.Context().Value(nsKey{}).(string) }

func (h *Handler) init() {
	h.mux = http.NewServeMux()
	n := h.MaxUploads
	if n <= 0 {
		n = DefaultMaxUploads
	}
	h.uploads = make(chan struct{}, n)
	if n = h.MaxDownloads; n <= 0 {
		n = DefaultMaxDownloads
	}
	h.downloads = make(chan struct{}, n)
	h.codeKey = h.CodeKey
	if len(h.codeKey) == 0 {
		h.codeKey = make([]byte, CodeLocationKeyBytes)
		_, _ = rand.Read(h.codeKey)
	}
	h.mux.HandleFunc("GET /klambda/code/{digest}", h.downloadCode)
	for _, rt := range h.routes() {
		h.mux.HandleFunc(rt.pattern, rt.fn)
	}
}

// ServeHTTP strips /namespaces/{ns}, serves a control-plane operation or hands the
// request to Next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	ns, rest, ok := h.split(r.URL.EscapedPath())
	if !ok {
		h.Next.ServeHTTP(w, r)
		return
	}
	r2 := r.Clone(context.WithValue(r.Context(), nsKey{}, ns))
	r2.URL.RawPath = rest
	p, err := url.PathUnescape(rest)
	if err != nil {
		h.Next.ServeHTTP(w, r)
		return
	}
	r2.URL.Path = p
	if _, pattern := h.mux.Handler(r2); pattern == "" {
		h.Next.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r2)
}

// split finds the namespace and the rest of the path.
func (h *Handler) split(p string) (ns, rest string, ok bool) {
	const prefix = "/namespaces/"
	if !strings.HasPrefix(p, prefix) {
		return h.DefaultNamespace, p, true
	}
	p = p[len(prefix):]
	i := strings.IndexByte(p, '/')
	if i <= 0 {
		return "", "", false
	}
	ns, err := url.PathUnescape(p[:i])
	if err != nil || !validDNSLabel(ns) {
		return "", "", false // the Invoke API answers it
	}
	return ns, p[i:], true
}

type route struct {
	pattern string
	fn      http.HandlerFunc
}

// op is one operation: what it needs and what it does.
type op func(c *call) (status int, out any, e *invoke.Error)

// call is one request being served.
type call struct {
	context.Context
	h     *Handler
	r     *http.Request
	ns    string
	query url.Values
	body  []byte
	user  string
}

func (h *Handler) serve(name string, upload bool, fn op) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := &call{Context: r.Context(), h: h, r: r, ns: namespaceOf(r), query: r.URL.Query()}
		status, out, e := h.run(c, upload, fn)
		if e != nil {
			if e.Status >= 500 {
				h.Log.Info("control-plane operation failed", "operation", name, "namespace", c.ns, "error", e.Message)
			}
			e.Write(w)
			return
		}
		writeJSON(w, status, out)
	}
}

func (h *Handler) run(c *call, upload bool, fn op) (int, any, *invoke.Error) {
	limit := int64(maxBody)
	if upload {
		select {
		case h.uploads <- struct{}{}:
			defer func() { <-h.uploads }()
		default:
			return 0, nil, errBusy("The activator serves as many code uploads at once as it may; retry.")
		}
		limit = MaxUploadBytes
	}
	if c.r.ContentLength > limit {
		return 0, nil, errTooLarge("Request must be smaller than " + strconv.FormatInt(limit, 10) + " bytes for this operation")
	}
	if c.r.Body != nil {
		var buf bytes.Buffer
		if c.r.ContentLength > 0 {
			buf.Grow(int(c.r.ContentLength))
		}
		if _, err := buf.ReadFrom(io.LimitReader(c.r.Body, limit+1)); err != nil {
			return 0, nil, errInvalid("could not read the request body: " + err.Error())
		}
		if int64(buf.Len()) > limit {
			return 0, nil, errTooLarge("Request must be smaller than " + strconv.FormatInt(limit, 10) + " bytes for this operation")
		}
		c.body = buf.Bytes()
	}
	// A write that lost an optimistic-concurrency race (mostly to a controller's status
	// update) is served again from a fresh read, which checks the caller's preconditions
	// (RevisionId, CodeSha256, the update state) again.
	for attempt := 1; ; attempt++ {
		status, out, e := fn(c)
		if e == nil || e.Message != conflictMessage || attempt == maxConflictRetries {
			return status, out, e
		}
	}
}

// maxConflictRetries bounds how often an operation is served again after a lost race.
const maxConflictRetries = 5

// authorize checks the caller may do verb on resource (name: "" for a collection) in the
// call's namespace; arn and action name the resource and Lambda's action in a refusal.
func (c *call) authorize(p Permission, action, arn string) *invoke.Error {
	h := c.h
	if h.Auth == nil {
		return nil
	}
	d, err := h.Auth.CheckFrom(c, clientIP(c.r), auth.TokenFrom(c.r.Header), c.ns, p.Key())
	switch {
	case err != nil:
		h.Log.Error(err, "authorization review failed", "namespace", c.ns)
		return errService("could not review the caller's token or permission")
	case d.Outcome == auth.NoToken:
		return invoke.ErrMissingToken()
	case d.Outcome == auth.InvalidToken:
		return invoke.ErrInvalidToken()
	case d.Outcome == auth.RateLimited:
		return invoke.ErrThrottled("CallerRateLimitExceeded")
	case d.Outcome == auth.Denied:
		return userErr(http.StatusForbidden, "AccessDeniedException",
			"User: "+d.User+" is not authorized to perform: lambda:"+action+" on resource: "+arn+
				" (Kubernetes: verb "+p.Verb+" on "+p.Resource+".lambda.klambda.dev in namespace "+c.ns+")")
	}
	c.user = d.User
	return nil
}

// decode reads the JSON body into v.
func (c *call) decode(v any) *invoke.Error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return userErr(http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: "+err.Error())
	}
	return nil
}

// writeJSON answers v as Lambda does: members without a value are left out.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if v == nil {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		var x any
		if err = json.Unmarshal(b, &x); err == nil {
			b, err = json.Marshal(prune(x))
		}
	}
	if err != nil {
		errService("encoding the answer: " + err.Error()).Write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// prune drops null members (the SDK types' unset pointers) and empty enum strings.
func prune(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, m := range v {
			if m == nil || m == "" {
				delete(v, k)
				continue
			}
			v[k] = prune(m)
		}
	case []any:
		for i := range v {
			v[i] = prune(v[i])
		}
	}
	return x
}

func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func validDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return true
}
