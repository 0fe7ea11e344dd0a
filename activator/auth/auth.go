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
//	AWS_SESSION_TOKEN=$(kubectl create token my-sa) aws lambda invoke --endpoint-url ...
//
// The SigV4 signature itself is not verified (there is no shared secret key); the token
// is the credential, so use TLS in front of the activator. Plain HTTP clients may send
// Authorization: Bearer <token> instead.
package auth

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

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
)

// Decision is a check's answer; User names the caller for the error message.
type Decision struct {
	Outcome Outcome
	User    string
}

// Checker combines the two reviews with a cache.
type Checker struct {
	Authn Authenticator
	Authz Authorizer
	// AllowTTL and DenyTTL bound how long a decision is reused.
	AllowTTL, DenyTTL time.Duration
	now               func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct {
	token     [32]byte
	namespace string
	function  string
}

type cached struct {
	d       Decision
	expires time.Time
}

// NewChecker returns a Checker with short cache lifetimes (10 s allowed, 2 s denied).
func NewChecker(authn Authenticator, authz Authorizer) *Checker {
	return &Checker{Authn: authn, Authz: authz, AllowTTL: 10 * time.Second, DenyTTL: 2 * time.Second,
		now: time.Now, cache: map[cacheKey]cached{}}
}

const maxCacheEntries = 10000

// Check decides whether token may invoke namespace/function. An error means a review
// could not be made (the API server is unreachable): answer 500, never allow.
func (c *Checker) Check(ctx context.Context, token, namespace, function string) (Decision, error) {
	if token == "" {
		return Decision{Outcome: NoToken}, nil
	}
	k := cacheKey{token: sha256.Sum256([]byte(token)), namespace: namespace, function: function}
	now := c.now()
	c.mu.Lock()
	if e, ok := c.cache[k]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		return e.d, nil
	}
	c.mu.Unlock()

	d, err := c.review(ctx, token, namespace, function)
	if err != nil {
		return d, err
	}
	ttl := c.DenyTTL
	if d.Outcome == Allowed {
		ttl = c.AllowTTL
	}
	c.mu.Lock()
	if len(c.cache) >= maxCacheEntries {
		for ck, e := range c.cache {
			if !now.Before(e.expires) {
				delete(c.cache, ck)
			}
		}
		if len(c.cache) >= maxCacheEntries {
			clear(c.cache)
		}
	}
	c.cache[k] = cached{d: d, expires: now.Add(ttl)}
	c.mu.Unlock()
	return d, nil
}

func (c *Checker) review(ctx context.Context, token, namespace, function string) (Decision, error) {
	id, ok, err := c.Authn.Authenticate(ctx, token)
	if err != nil {
		return Decision{}, err
	}
	if !ok {
		return Decision{Outcome: InvalidToken}, nil
	}
	allowed, err := c.Authz.Allowed(ctx, id, namespace, function)
	if err != nil {
		return Decision{}, err
	}
	if !allowed {
		return Decision{Outcome: Denied, User: id.User}, nil
	}
	return Decision{Outcome: Allowed, User: id.User}, nil
}

// Kube reviews tokens and permissions with the API server.
type Kube struct {
	Client kubernetes.Interface
	// Audiences the token must carry; empty: the API server's.
	Audiences []string
}

// Authenticate sends a TokenReview.
func (k *Kube) Authenticate(ctx context.Context, token string) (Identity, bool, error) {
	tr, err := k.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: k.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, false, err
	}
	if !tr.Status.Authenticated {
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
