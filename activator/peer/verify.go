package peer

import (
	"context"
	"crypto/sha256"
	"time"

	"k8s.io/utils/lru"

	"github.com/klambda/klambda/activator/auth"
)

// Audience is the audience of the tokens activators present to each other.
const Audience = "klambda-activator-peer"

// KubeVerifier accepts the tokens of one ServiceAccount (the activators') made for
// Audience, reviewed by the API server (TokenReview) and cached for TTL.
type KubeVerifier struct {
	Authn auth.Authenticator // auth.Kube with Audiences {Audience}
	// User is the activators' ServiceAccount: system:serviceaccount:<namespace>:<name>.
	User string
	TTL  time.Duration

	cache *lru.Cache
}

// NewKubeVerifier returns a KubeVerifier that remembers up to 64 tokens.
func NewKubeVerifier(authn auth.Authenticator, user string, ttl time.Duration) *KubeVerifier {
	return &KubeVerifier{Authn: authn, User: user, TTL: ttl, cache: lru.New(64)}
}

// IsPeer tells whether token is a peer activator's.
func (v *KubeVerifier) IsPeer(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	k := sha256.Sum256([]byte(token))
	if exp, ok := v.cache.Get(k); ok && time.Now().Before(exp.(time.Time)) {
		return true, nil
	}
	id, ok, err := v.Authn.Authenticate(ctx, token)
	if err != nil || !ok || id.User != v.User {
		return false, err
	}
	v.cache.Add(k, time.Now().Add(v.TTL))
	return true, nil
}
