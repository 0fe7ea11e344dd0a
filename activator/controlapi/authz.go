package controlapi

import (
	"context"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/activator/auth"
)

// Permission is the Kubernetes permission an operation needs: verb on resource (functions,
// versions, aliases) in lambda.klambda.dev, for the object's name ("" for a collection).
type Permission struct {
	Verb, Resource, Name string
}

// Key encodes the permission as the "function" of auth.Checker's decision cache, so that
// the Invoke API's checker (its caches, per-source review budget and single flight) serves
// the control plane too; SAR decodes it.
func (p Permission) Key() string { return p.Verb + " " + p.Resource + " " + p.Name }

func parseKey(k string) (Permission, bool) {
	parts := strings.SplitN(k, " ", 3)
	if len(parts) != 3 {
		return Permission{}, false
	}
	return Permission{Verb: parts[0], Resource: parts[1], Name: parts[2]}, true
}

// SAR reviews a Permission with a SubjectAccessReview (auth.Authorizer).
type SAR struct {
	Client kubernetes.Interface
}

// Allowed asks the API server whether id may do what key (Permission.Key) says in namespace.
func (s SAR) Allowed(ctx context.Context, id auth.Identity, namespace, key string) (bool, error) {
	p, ok := parseKey(key)
	if !ok {
		return false, nil
	}
	extra := make(map[string]authorizationv1.ExtraValue, len(id.Extra))
	for k, v := range id.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: id.User, UID: id.UID, Groups: id.Groups, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: p.Verb, Group: auth.Group, Resource: p.Resource, Name: p.Name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// NewChecker is the control plane's authorization: the activator's token review (authn,
// e.g. auth.Kube with its audiences) and SAR, with auth.Checker's caches and bounds.
func NewChecker(authn auth.Authenticator, cs kubernetes.Interface) *auth.Checker {
	return auth.NewChecker(authn, SAR{Client: cs})
}
