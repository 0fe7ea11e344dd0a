package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
)

// Versions finds a version's Deployment and its Function's UID (scaleclient.Deployments).
type Versions interface {
	Version(ctx context.Context, key fnkey.Key) (*appsv1.Deployment, types.UID, error)
}

// InvokeSecrets reads a function's invoke secret from a Secret its Function controls
// (invokesecret.Reader).
type InvokeSecrets interface {
	Named(ctx context.Context, namespace, name string, owner types.UID) (string, error)
}

// Environments is the dispatcher's side (dispatch.Dispatcher): a pod being specialized is
// held out of the informer's view until it joins as an environment, or fails.
type Environments interface {
	Hold(key fnkey.Key, name string)
	Join(key fnkey.Key, e dispatch.Environment)
	Fail(key fnkey.Key, name string)
}

// Starter serves cold starts from the pools (scaler.Prewarmed): for a version whose
// Deployment carries a specialization template, it takes a ready generic pod of the
// template's pool, fills the template in, claims the pod for the Deployment, specializes
// its shim, and hands it to the dispatcher. A pod that fails after its claim is deleted:
// it is never returned to a pool nor given to another version.
type Starter struct {
	Index         *Index
	Client        kubernetes.Interface
	HTTP          *http.Client
	Versions      Versions
	InvokeSecrets InvokeSecrets
	Environments  Environments
	// Wake asks the scaler for a pass (a start failed: the Deployment scales instead).
	Wake func(fnkey.Key)
	// Timeout bounds one start, from the claim to the specialized shim (default 30 s).
	Timeout time.Duration
	Log     logr.Logger

	mu       sync.Mutex
	starting map[fnkey.Key]int
	// failed: when a start of the version last failed; for FailureBackoff its cold starts
	// take the Deployment's path rather than spend another pool pod.
	failed map[fnkey.Key]time.Time
}

// FailureBackoff is how long a version whose start failed leaves the pools alone.
const FailureBackoff = 10 * time.Second

// Starting is how many of key's pool pods are being prepared.
func (s *Starter) Starting(key fnkey.Key) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starting[key]
}

// Start takes up to n of key's pool pods and prepares each in the background; it answers
// how many it took (0 for a version a pool cannot serve, or an empty pool).
func (s *Starter) Start(key fnkey.Key, n int) int {
	if n <= 0 || s.backingOff(key) {
		return 0
	}
	ctx := context.Background()
	dep, fnUID, err := s.Versions.Version(ctx, key)
	if err != nil {
		return 0
	}
	raw := dep.Annotations[contract.AnnotationSpecialization]
	if raw == "" {
		return 0 // not eligible (contract.AnnotationPoolIneligible says why)
	}
	var st contract.SpecializationTemplate
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		s.Log.Error(err, "reading the specialization template; cold starts take the Deployment's path", "deployment", dep.Name, "namespace", dep.Namespace)
		return 0
	}
	taken := 0
	for ; taken < n; taken++ {
		pod := s.Index.Take(key.Namespace, st.Pool)
		if pod == nil {
			break
		}
		s.Environments.Hold(key, pod.Name)
		s.mu.Lock()
		if s.starting == nil {
			s.starting = map[fnkey.Key]int{}
		}
		s.starting[key]++
		s.mu.Unlock()
		go s.prepare(key, dep, fnUID, &st, pod)
	}
	return taken
}

func (s *Starter) backingOff(key fnkey.Key) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, at := range s.failed {
		if now.Sub(at) >= FailureBackoff {
			delete(s.failed, k)
		}
	}
	_, ok := s.failed[key]
	return ok
}

// prepare makes pod one of key's environments, or, failing, deletes it if it was claimed,
// backs off and wakes the scaler.
func (s *Starter) prepare(key fnkey.Key, dep *appsv1.Deployment, fnUID types.UID, st *contract.SpecializationTemplate, pod *corev1.Pod) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	env, claimed, err := s.specialize(ctx, key, dep, fnUID, st, pod)
	if err == nil {
		s.Environments.Join(key, env)
		s.Log.V(1).Info("a pool environment joined", "key", key.String(), "pod", pod.Name, "took", time.Since(start))
	} else {
		s.Log.Error(err, "taking a pool environment; the Deployment scales instead", "key", key.String(), "pod", pod.Name, "claimed", claimed)
		s.Environments.Fail(key, pod.Name)
		if claimed {
			s.deleteClaimed(pod)
		} else {
			s.Index.Untake(pod) // nothing was done to it: still generic
		}
		s.mu.Lock()
		if s.failed == nil {
			s.failed = map[fnkey.Key]time.Time{}
		}
		s.failed[key] = time.Now()
		s.mu.Unlock()
	}
	s.mu.Lock()
	if s.starting[key]--; s.starting[key] <= 0 {
		delete(s.starting, key)
	}
	s.mu.Unlock()
	if err != nil && s.Wake != nil {
		s.Wake(key)
	}
}

// specialize: Secrets read and template filled in while the pod is claimed (two API round
// trips at once: neither needs the other), then the shim specialized — only once the pod is
// the version's does it get the version's secrets. claimed says whether the pod is the
// version's already (a claimed pod whose Secrets could not be read is deleted by prepare,
// as one whose specialization failed: the pool makes another, and the key backs off).
func (s *Starter) specialize(ctx context.Context, key fnkey.Key, dep *appsv1.Deployment, fnUID types.UID, st *contract.SpecializationTemplate,
	pod *corev1.Pod) (env dispatch.Environment, claimed bool, err error) {
	type prepared struct {
		invoke, token string
		spec          *contract.Specialization
		err           error
	}
	ready := make(chan prepared, 1)
	go func() {
		var p prepared
		if p.invoke, p.err = s.InvokeSecrets.Named(ctx, key.Namespace, st.InvokeSecretName, fnUID); p.err == nil {
			if p.token, p.err = s.poolToken(ctx, key.Namespace); p.err == nil {
				p.spec, p.err = Build(ctx, st, pod, p.invoke, s.secretValue)
			}
		}
		ready <- p
	}()
	got, claimErr := Claim(ctx, s.Client, pod, dep, st)
	p := <-ready
	if claimErr != nil {
		return env, false, fmt.Errorf("claiming pod %s: %w", pod.Name, claimErr)
	}
	if p.err != nil {
		return env, true, p.err
	}
	if err := Specialize(ctx, s.HTTP, got, p.token, p.spec); err != nil {
		return env, true, err
	}
	return dispatch.Environment{Name: got.Name, Addr: net.JoinHostPort(got.Status.PodIP, strconv.Itoa(contract.ShimPort)), Secret: p.invoke, Claimed: true}, true, nil
}

// poolToken reads the namespace's pool Secret (what its generic shims want).
func (s *Starter) poolToken(ctx context.Context, ns string) (string, error) {
	sec, err := s.Client.CoreV1().Secrets(ns).Get(ctx, contract.PoolSecretName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the pool Secret: %w", err)
	}
	t := string(sec.Data[contract.InvokeSecretKey])
	if t == "" {
		return "", fmt.Errorf("the pool Secret %s/%s has no key %s", ns, contract.PoolSecretName, contract.InvokeSecretKey)
	}
	return t, nil
}

func (s *Starter) secretValue(ctx context.Context, ns, name, key string) (string, bool, error) {
	sec, err := s.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, ok := sec.Data[key]
	return string(v), ok, nil
}

// deleteClaimed deletes a pod claimed for a version that did not become its environment
// (its specialization failed or timed out): whatever it holds, it serves nobody.
func (s *Starter) deleteClaimed(pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uid := pod.UID
	err := s.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		s.Log.Error(err, "deleting a claimed pod whose specialization failed; its shim refuses to serve, and it goes with its Deployment", "pod", pod.Name, "namespace", pod.Namespace)
	}
}

// Remove deletes claimed pods (idle past the timeout; the scaler drained them).
func (s *Starter) Remove(ctx context.Context, key fnkey.Key, pods []string) error {
	var errs []error
	for _, name := range pods {
		if err := s.Client.CoreV1().Pods(key.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting pool environment %s/%s: %w", key.Namespace, name, err))
		}
	}
	return errors.Join(errs...)
}
