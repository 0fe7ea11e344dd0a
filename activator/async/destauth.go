package async

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// ErrDestinationDenied: the source function's ServiceAccount may not invoke the destination
// function, so the activator does not invoke it on the function's behalf.
var ErrDestinationDenied = errors.New("destination refused")

// FunctionDestinationAuthorizer enforces, at delivery, that a function destination is
// invoked only when the source function's ServiceAccount (the one its executed version runs
// as: spec.serviceAccountName, else default) may invoke it (SubjectAccessReview, verb
// invoke on functions). Answers are cached for TTL in a bounded LRU, so a flood of records
// costs one review per (source ServiceAccount, destination) per TTL.
type FunctionDestinationAuthorizer struct {
	// Reader resolves the source's ServiceAccount from Functions, Versions and Aliases (the
	// activator's informer cache).
	Reader client.Reader
	// Review answers a SubjectAccessReview; KubeReview asks the kube-apiserver.
	Review func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (bool, error)
	// TTL of an answer (default 10 s); Size bounds the cache (default 4096).
	TTL  time.Duration
	Size int

	cache *utilcache.LRUExpireCache
}

// KubeReview is FunctionDestinationAuthorizer.Review against the kube-apiserver.
func KubeReview(c kubernetes.Interface) func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (bool, error) {
	return func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (bool, error) {
		res, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return res.Status.Allowed, nil
	}
}

// Authorize answers nil when the event's function may have dest invoked on its behalf.
func (a *FunctionDestinationAuthorizer) Authorize(ctx context.Context, ev Event, dest *lambdav1alpha1.FunctionDestination) error {
	sa, err := a.serviceAccount(ctx, ev.Namespace, ev.Function, ev.Qualifier)
	if err != nil {
		return fmt.Errorf("finding the ServiceAccount of %s/%s: %w", ev.Namespace, ev.Function, err)
	}
	if a.cache == nil {
		size := a.Size
		if size <= 0 {
			size = 4096
		}
		a.cache = utilcache.NewLRUExpireCache(size)
	}
	key := ev.Namespace + "/" + sa + "/" + dest.Name
	if v, ok := a.cache.Get(key); ok {
		if err, _ := v.(error); err != nil && !errors.Is(err, errNone) {
			return err
		}
		return nil
	}
	user := "system:serviceaccount:" + ev.Namespace + ":" + sa
	allowed, err := a.Review(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ev.Namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ev.Namespace, Verb: "invoke",
			Group: lambdav1alpha1.GroupVersion.Group, Resource: "functions", Name: dest.Name},
	}})
	if err != nil {
		return fmt.Errorf("reviewing whether %s may invoke %s: %w", user, dest.Name, err)
	}
	res := errNone
	if !allowed {
		res = fmt.Errorf("%w: ServiceAccount %s of function %s may not invoke destination function %s", ErrDestinationDenied, sa, ev.Function, dest.Name)
	}
	ttl := a.TTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	a.cache.Add(key, res, ttl)
	if errors.Is(res, errNone) {
		return nil
	}
	return res
}

// errNone stands for "allowed" in the cache (which can't hold a nil error as a value).
var errNone = errors.New("allowed")

// serviceAccount is the ServiceAccount of the version the qualifier names.
func (a *FunctionDestinationAuthorizer) serviceAccount(ctx context.Context, ns, fn, qualifier string) (string, error) {
	orDefault := func(sa string) string {
		if sa == "" {
			return "default"
		}
		return sa
	}
	version := qualifier
	if version != "" && version != contract.Latest && !isVersionNumber(version) {
		a, err := (&KubeConfigSource{Client: a.Reader}).alias(ctx, ns, fn, qualifier)
		if err != nil {
			return "", err
		}
		if version, err = routedVersion(a); err != nil {
			return "", err
		}
	}
	if version == "" || version == contract.Latest {
		var f lambdav1alpha1.Function
		if err := a.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: fn}, &f); err != nil {
			return "", err
		}
		return orDefault(f.Spec.ServiceAccountName), nil
	}
	v, err := (&KubeConfigSource{Client: a.Reader}).version(ctx, ns, fn, version)
	if err != nil {
		return "", err
	}
	if v.Status.Configuration == nil {
		return "", fmt.Errorf("version %s of %s/%s has no configuration yet", version, ns, fn)
	}
	return orDefault(v.Status.Configuration.ServiceAccountName), nil
}

// destinationRefused checks a function destination before delivery (Workers.deliver):
// a refusal (or a failed check) is counted and logged as a failed delivery, not retried.
func (w *Workers) destinationRefused(ctx context.Context, ev Event, dest *lambdav1alpha1.Destination, deadLetter bool, log logr.Logger) bool {
	if dest == nil || dest.Function == nil || w.dst.FunctionDestinations == nil {
		return false
	}
	err := w.dst.FunctionDestinations.Authorize(ctx, ev, dest.Function)
	if err == nil {
		return false
	}
	w.countDeliveryFailure(ev, deadLetter)
	if deadLetter {
		log.Error(err, "Not sending the failed event to its dead-letter function; the event is discarded")
	} else {
		log.Error(err, "Not delivering the invocation record to its destination function")
	}
	return true
}
