// Package invokesecret reads the token a function pod's shim wants on its invoke endpoint.
package invokesecret

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/activator/internal/ownerchain"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Reader finds the invoke secret of a pod's shim: the pod's annotation
// contract.AnnotationInvokeSecret names a Secret in the pod's namespace whose key
// contract.InvokeSecretKey holds it. Secrets are read through a short-lived cache; it runs
// on pod events, never per request. A Secret is used only when its controller is the
// pod's Function (the UID given): a Secret of that name someone else made is refused,
// never read for its value.
type Reader struct {
	Client kubernetes.Interface
	TTL    time.Duration
	// MinRefresh: a cached Secret that does not answer (another owner, no such key) is read
	// again once it is older than this (default 1 s) — the Secret may have been deleted and
	// made again by a new Function of the same name (a GitOps tool deleting and applying a
	// directory), whose pods must not wait out the TTL.
	MinRefresh time.Duration

	mu    sync.Mutex
	cache map[string]secretEntry
}

type secretEntry struct {
	data    map[string][]byte
	owner   types.UID // the UID of the Function controlling the Secret; "" if none
	fetched time.Time
	expires time.Time
}

// value is the entry's value of key for the Function with UID owner, or why it has none
// (another owner, or no such key): a reason to read the Secret again, and the error then.
func (e secretEntry) value(ck string, owner types.UID, key string) (string, error) {
	if owner == "" || e.owner != owner {
		return "", fmt.Errorf("secret %s is not controlled by the pod's Function (UID %s): not used", ck, owner)
	}
	v, ok := e.data[key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ck, key)
	}
	return string(v), nil
}

// ForPod answers the secret the pod's shim wants ("" when the pod names no Secret); the
// named Secret must be controlled by the Function with UID owner.
func (s *Reader) ForPod(ctx context.Context, p *corev1.Pod, owner types.UID) (string, error) {
	name := p.Annotations[contract.AnnotationInvokeSecret]
	if name == "" {
		return "", nil
	}
	return s.read(ctx, p.Namespace, name, contract.InvokeSecretKey, owner)
}

// Named answers the invoke secret in Secret name of namespace ns, which must be
// controlled by the Function with UID owner (for a pod about to name it: a pool pod being
// specialized, docs/pools.md).
func (s *Reader) Named(ctx context.Context, ns, name string, owner types.UID) (string, error) {
	return s.read(ctx, ns, name, contract.InvokeSecretKey, owner)
}

// pruneAt: the cache drops its expired entries when it holds this many.
const pruneAt = 1024

func (s *Reader) read(ctx context.Context, ns, name, key string, owner types.UID) (string, error) {
	ck := ns + "/" + name
	now := time.Now()
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]secretEntry{}
	}
	e, ok := s.cache[ck]
	s.mu.Unlock()
	minRefresh := s.MinRefresh
	if minRefresh == 0 {
		minRefresh = time.Second
	}
	if _, verr := e.value(ck, owner, key); !ok || now.After(e.expires) || (verr != nil && now.Sub(e.fetched) >= minRefresh) {
		sec, err := s.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", ck, err)
		}
		ttl := s.TTL
		if ttl == 0 {
			ttl = time.Minute
		}
		e = secretEntry{fetched: now, expires: now.Add(ttl)}
		if ref, err := ownerchain.ControllerRef(sec, lambdav1alpha1.GroupVersion.Group, "Function"); err == nil {
			e.owner = ref.UID
		}
		if e.owner != "" {
			e.data = sec.Data // only a Function's Secret is kept
		}
		s.mu.Lock()
		if len(s.cache) >= pruneAt {
			for k, old := range s.cache {
				if now.After(old.expires) {
					delete(s.cache, k)
				}
			}
		}
		s.cache[ck] = e
		s.mu.Unlock()
	}
	return e.value(ck, owner, key)
}
