// Package auth decides whether a caller may invoke a function: its Kubernetes token is
// checked with a TokenReview, and the permission (verb invoke on functions in
// lambda.klambda.dev, for the function's name and namespace) with a SubjectAccessReview.
// Decisions are cached briefly so that a warm invocation costs no API call.
//
// How the token arrives. The AWS CLI and SDKs sign with SigV4 and cannot send a bearer
// token, but they do send a session token as X-Amz-Security-Token. So a Kubernetes
// token travels as the AWS session token:
//
//	AWS_ACCESS_KEY_ID=klambda AWS_SECRET_ACCESS_KEY=unused \
//	AWS_SESSION_TOKEN=$(kubectl create token my-sa --audience klambda) aws lambda invoke --endpoint-url ...
//
// The token must be made for the activator: its audience must be klambda (Kube.Audiences),
// so that an API server token (and a token stolen from a caller) is of no use at the
// other. The SigV4 signature itself is not verified (there is no shared secret key); the
// token is the credential, so serve the activator over TLS (cmd/activator --tls-cert-file).
// Plain HTTP clients may send Authorization: Bearer <token> instead.
package auth

import (
	"context"
	"crypto/sha256"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"k8s.io/utils/lru"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The permission an invocation needs.
const (
	Group    = "lambda.klambda.dev"
	Resource = "functions"
	Verb     = "invoke"
)

// HeaderSecurityToken is where SigV4 clients put AWS_SESSION_TOKEN.
const HeaderSecurityToken = "X-Amz-Security-Token"

// TokenFrom finds the caller's Kubernetes token: Authorization: Bearer, else the SigV4
// session token.
func TokenFrom(h http.Header) string {
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return h.Get(HeaderSecurityToken)
}

// Identity is an authenticated caller.
type Identity struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string]authenticationv1.ExtraValue
}

// Authenticator reviews tokens.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (id Identity, ok bool, err error)
}

// Authorizer reviews permissions.
type Authorizer interface {
	Allowed(ctx context.Context, id Identity, namespace, function string) (bool, error)
}

// Outcome of a check.
type Outcome int

const (
	Allowed Outcome = iota
	NoToken
	InvalidToken
	Denied
	// RateLimited: the review the request needs was refused by the per-source review
	// budget (a flood of unknown tokens); answer 429 and let the caller retry.
	RateLimited
)

// Decision is a check's answer; User names the caller for the error message.
type Decision struct {
	Outcome Outcome
	User    string
}

// Checker combines the two reviews with caches that a flood cannot flush:
//
//   - allowed decisions (token, namespace, function) live AllowTTL in their own bounded
//     LRU, and so do the identities of tokens the API server accepted;
//   - refusals (a token the API server rejected, a permission it denied) live in a
//     separate bounded LRU (InvalidTTL, DenyTTL), so a flood of bad tokens evicts only
//     other bad tokens;
//   - a review the caches cannot answer costs API calls, so it is rate-limited per
//     source (the client's IP; ReviewRate, ReviewBurst; a bounded LRU of limiters), and
//     concurrent reviews of the same token (and of the same decision) are made once
//     (singleflight).
type Checker struct {
	Authn Authenticator
	Authz Authorizer
	// AllowTTL and DenyTTL bound how long an allowed and a denied decision is reused;
	// InvalidTTL how long a token the API server rejected is refused without asking again.
	AllowTTL, DenyTTL, InvalidTTL time.Duration
	// ReviewRate and ReviewBurst bound the reviews (cache misses) one source may cause:
	// past them a request is answered RateLimited without a review. ReviewRate 0: no limit.
	ReviewRate  rate.Limit
	ReviewBurst int
	// ReviewTimeout bounds one review (it is shared by the callers waiting for it).
	ReviewTimeout time.Duration
	now           func() time.Time

	allowed    *lru.Cache // decisionKey → cached
	identities *lru.Cache // tokenKey → cachedIdentity
	refused    *lru.Cache // decisionKey (InvalidToken: namespace and function empty) → cached
	sources    *lru.Cache // source → *rate.Limiter
	flight     singleflight.Group
}

type tokenKey [32]byte

type decisionKey struct {
	token     tokenKey
	namespace string
	function  string
}

type cached struct {
	d       Decision
	expires time.Time
}

type cachedIdentity struct {
	id      Identity
	expires time.Time
}

// Bounds of the caches.
const (
	maxCacheEntries   = 10000 // allowed decisions; and identities
	maxRefusedEntries = 10000 // refused tokens and denied decisions
	maxSources        = 4096  // per-source review limiters
)

// Defaults of NewChecker.
const (
	DefaultAllowTTL      = 10 * time.Second
	DefaultDenyTTL       = 2 * time.Second
	DefaultInvalidTTL    = 10 * time.Second
	DefaultReviewRate    = 20 // reviews per second per source
	DefaultReviewBurst   = 40
	DefaultReviewTimeout = 10 * time.Second
)

// NewChecker returns a Checker with short cache lifetimes (10 s allowed, 2 s denied, 10 s
// for a rejected token) and reviews limited to 20 a second (bursts of 40) per source.
func NewChecker(authn Authenticator, authz Authorizer) *Checker {
	return &Checker{Authn: authn, Authz: authz,
		AllowTTL: DefaultAllowTTL, DenyTTL: DefaultDenyTTL, InvalidTTL: DefaultInvalidTTL,
		ReviewRate: DefaultReviewRate, ReviewBurst: DefaultReviewBurst, ReviewTimeout: DefaultReviewTimeout,
		now:        time.Now,
		allowed:    lru.New(maxCacheEntries),
		identities: lru.New(maxCacheEntries),
		refused:    lru.New(maxRefusedEntries),
		sources:    lru.New(maxSources),
	}
}

// Check is CheckFrom for a caller whose source is unknown (all such callers share one
// review budget).
func (c *Checker) Check(ctx context.Context, token, namespace, function string) (Decision, error) {
	return c.CheckFrom(ctx, "", token, namespace, function)
}

// CheckFrom decides whether token, presented from source (the client's IP), may invoke
// namespace/function. An error means a review could not be made (the API server is
// unreachable): answer 500, never allow.
func (c *Checker) CheckFrom(ctx context.Context, source, token, namespace, function string) (Decision, error) {
	if token == "" {
		return Decision{Outcome: NoToken}, nil
	}
	tk := tokenKey(sha256.Sum256([]byte(token)))
	k := decisionKey{token: tk, namespace: namespace, function: function}
	now := c.now()
	if d, ok := c.lookup(c.allowed, k, now); ok {
		return d, nil
	}
	if d, ok := c.lookup(c.refused, decisionKey{token: tk}, now); ok {
		return d, nil
	}
	if d, ok := c.lookup(c.refused, k, now); ok {
		return d, nil
	}

	// One review for every caller of the same decision; the review outlives a caller
	// that gives up, as the others may still wait for it.
	fk := "d\x00" + string(tk[:]) + "\x00" + namespace + "\x00" + function
	v, err, _ := c.flight.Do(fk, func() (any, error) {
		if !c.admit(source) {
			return Decision{Outcome: RateLimited}, nil
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ReviewTimeout)
		defer cancel()
		return c.review(rctx, tk, token, namespace, function)
	})
	if err != nil {
		return Decision{}, err
	}
	return v.(Decision), nil
}

func (c *Checker) lookup(cache *lru.Cache, k decisionKey, now time.Time) (Decision, bool) {
	if v, ok := cache.Get(k); ok {
		if e := v.(cached); now.Before(e.expires) {
			return e.d, true
		}
		cache.Remove(k)
	}
	return Decision{}, false
}

// admit takes one review from source's budget.
func (c *Checker) admit(source string) bool {
	if c.ReviewRate == 0 {
		return true
	}
	var lim *rate.Limiter
	if v, ok := c.sources.Get(source); ok {
		lim = v.(*rate.Limiter)
	} else {
		lim = rate.NewLimiter(c.ReviewRate, max(c.ReviewBurst, 1))
		c.sources.Add(source, lim)
	}
	return lim.AllowN(c.now(), 1)
}

func (c *Checker) review(ctx context.Context, tk tokenKey, token, namespace, function string) (Decision, error) {
	id, ok, err := c.identity(ctx, tk, token)
	if err != nil {
		return Decision{}, err
	}
	if !ok {
		d := Decision{Outcome: InvalidToken}
		c.refused.Add(decisionKey{token: tk}, cached{d: d, expires: c.now().Add(c.InvalidTTL)})
		return d, nil
	}
	allowed, err := c.Authz.Allowed(ctx, id, namespace, function)
	if err != nil {
		return Decision{}, err
	}
	k := decisionKey{token: tk, namespace: namespace, function: function}
	if !allowed {
		d := Decision{Outcome: Denied, User: id.User}
		c.refused.Add(k, cached{d: d, expires: c.now().Add(c.DenyTTL)})
		return d, nil
	}
	d := Decision{Outcome: Allowed, User: id.User}
	c.allowed.Add(k, cached{d: d, expires: c.now().Add(c.AllowTTL)})
	return d, nil
}

// identity reviews token once for all the decisions it is used for (AllowTTL), and once
// for concurrent callers.
func (c *Checker) identity(ctx context.Context, tk tokenKey, token string) (Identity, bool, error) {
	if v, ok := c.identities.Get(tk); ok {
		if e := v.(cachedIdentity); c.now().Before(e.expires) {
			return e.id, true, nil
		}
		c.identities.Remove(tk)
	}
	type result struct {
		id Identity
		ok bool
	}
	v, err, _ := c.flight.Do("t\x00"+string(tk[:]), func() (any, error) {
		id, ok, err := c.Authn.Authenticate(ctx, token)
		if err == nil && ok {
			c.identities.Add(tk, cachedIdentity{id: id, expires: c.now().Add(c.AllowTTL)})
		}
		return result{id, ok}, err
	})
	if err != nil {
		return Identity{}, false, err
	}
	r := v.(result)
	return r.id, r.ok, nil
}

// DefaultAudience is the audience a caller's token must carry: a token made for the
// activator (kubectl create token --audience klambda, a projected ServiceAccount token
// with audience klambda), never one made for the API server, so a token the activator
// sees cannot be replayed against the API server, and an API token cannot invoke.
const DefaultAudience = "klambda"

// Kube reviews tokens and permissions with the API server.
type Kube struct {
	Client kubernetes.Interface
	// Audiences the token must carry one of; empty: DefaultAudience. (Never the API
	// server's own: that would accept every token the cluster issues.)
	Audiences []string
}

func (k *Kube) audiences() []string {
	if len(k.Audiences) == 0 {
		return []string{DefaultAudience}
	}
	return k.Audiences
}

// Authenticate sends a TokenReview for the Kube's audiences and accepts the token only
// when the API server says it is valid for one of them (status.audiences).
func (k *Kube) Authenticate(ctx context.Context, token string) (Identity, bool, error) {
	want := k.audiences()
	tr, err := k.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: want},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, false, err
	}
	if !tr.Status.Authenticated {
		return Identity{}, false, nil
	}
	// An authenticator that ignores audiences answers without status.audiences: such a
	// token was not made for klambda.
	if !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(want, a) }) {
		return Identity{}, false, nil
	}
	u := tr.Status.User
	return Identity{User: u.Username, UID: u.UID, Groups: u.Groups, Extra: u.Extra}, true, nil
}

// Allowed sends a SubjectAccessReview.
func (k *Kube) Allowed(ctx context.Context, id Identity, namespace, function string) (bool, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(id.Extra))
	for key, v := range id.Extra {
		extra[key] = authorizationv1.ExtraValue(v)
	}
	sar, err := k.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: id.User, UID: id.UID, Groups: id.Groups, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: Verb, Group: Group, Resource: Resource, Name: function,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}
