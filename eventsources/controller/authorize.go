package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// The pollers invoke functions and read Secrets with their own, cluster-wide identity. So
// that a mapping's author can't use that identity for more than they could do themselves,
// a mapping acts as a ServiceAccount of its namespace (spec.serviceAccountName, default
// "default"), and its poller starts only when that ServiceAccount may invoke the function
// (and an on-failure function destination) and get every Secret the mapping names.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// DefaultServiceAccount is the ServiceAccount a mapping without spec.serviceAccountName acts as.
const DefaultServiceAccount = "default"

// AccessDeniedError is a mapping whose ServiceAccount lacks a permission its poller would use.
type AccessDeniedError struct {
	ServiceAccount string
	Missing        []string
}

func (e *AccessDeniedError) Error() string {
	return fmt.Sprintf("ServiceAccount %s may not %s: grant it these permissions (a Role and RoleBinding in the mapping's namespace) or name another one in spec.serviceAccountName",
		e.ServiceAccount, strings.Join(e.Missing, ", "))
}

// Authorizer answers whether a user may do something (a SubjectAccessReview).
type Authorizer interface {
	Allowed(ctx context.Context, user string, groups []string, attrs authorizationv1.ResourceAttributes) (bool, error)
}

// KubeAuthorizer asks the kube-apiserver.
type KubeAuthorizer struct{ Client kubernetes.Interface }

// Allowed creates a SubjectAccessReview.
func (k KubeAuthorizer) Allowed(ctx context.Context, user string, groups []string, attrs authorizationv1.ResourceAttributes) (bool, error) {
	res, err := k.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// serviceAccountOf is the ServiceAccount a mapping acts as.
func serviceAccountOf(esm *lambdav1alpha1.EventSourceMapping) string {
	if esm.Spec.ServiceAccountName != "" {
		return esm.Spec.ServiceAccountName
	}
	return DefaultServiceAccount
}

// authorize checks every permission the mapping's poller would use on its behalf: invoke on
// the target function (and an on-failure function destination), get on each Secret it names.
func authorize(ctx context.Context, a Authorizer, esm *lambdav1alpha1.EventSourceMapping) error {
	sa := serviceAccountOf(esm)
	ns := esm.Namespace
	user := "system:serviceaccount:" + ns + ":" + sa
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	type need struct{ verb, resource, group, name string }
	var needs []need
	fn, _, _ := strings.Cut(functionName(esm.Spec.FunctionName), ":")
	needs = append(needs, need{"invoke", "functions", lambdav1alpha1.GroupVersion.Group, fn})
	secret := func(name string) { needs = append(needs, need{"get", "secrets", "", name}) }
	for _, c := range esm.Spec.SourceAccessConfigurations {
		if c.SecretRef != nil {
			secret(c.SecretRef.Name)
		}
	}
	if esm.Spec.SQS != nil && esm.Spec.SQS.Credentials != nil {
		secret(esm.Spec.SQS.Credentials.Name)
	}
	if dc := esm.Spec.DestinationConfig; dc != nil && dc.OnFailure != nil {
		switch d := dc.OnFailure; {
		case d.Function != nil:
			needs = append(needs, need{"invoke", "functions", lambdav1alpha1.GroupVersion.Group, d.Function.Name})
		case d.SQS != nil && d.SQS.Credentials != nil:
			secret(d.SQS.Credentials.Name)
		}
	}
	var missing []string
	seen := map[need]bool{}
	for _, n := range needs {
		if seen[n] {
			continue
		}
		seen[n] = true
		ok, err := a.Allowed(ctx, user, groups, authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: n.verb, Group: n.group, Resource: n.resource, Name: n.name})
		if err != nil {
			return fmt.Errorf("checking whether ServiceAccount %s may %s %s %s: %w", sa, n.verb, n.resource, n.name, err)
		}
		if !ok {
			what := n.resource
			if n.group != "" {
				what += "." + n.group
			}
			missing = append(missing, n.verb+" "+what+" "+n.name)
		}
	}
	if len(missing) > 0 {
		return &AccessDeniedError{ServiceAccount: sa, Missing: missing}
	}
	return nil
}

func isAccessDenied(err error) bool {
	var ad *AccessDeniedError
	return errors.As(err, &ad)
}
