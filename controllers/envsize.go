package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// maxEnvironmentBytes is Lambda's limit on a function's environment variables: the UTF-8
// bytes of the compact JSON of the name→value map.
const maxEnvironmentBytes = 4096

// checkEnvironmentSize counts the function's environment variables as Lambda does, the
// values from Secrets included (the schema can only count the literal ones at admission):
// over 4 KB, the function is refused with Lambda's message (InvalidConfiguration, which
// the status reports: Failed on create, a failed update keeping the previous
// configuration). A Secret or key not there yet (applied in the same sync) is waited for;
// an optional one that is missing counts as absent, as the kubelet leaves it unset.
// Values never appear in a message.
func checkEnvironmentSize(ctx context.Context, c client.Reader, ns string, env *lambdav1alpha1.Environment) error {
	if env == nil || len(env.Variables) == 0 {
		return nil
	}
	secrets := map[string]*corev1.Secret{}
	size, n := 2, 0 // {}
	var fromSecrets []string
	for _, v := range env.Variables {
		value := v.Value
		if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
			ref := v.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			s, ok := secrets[ref.Name]
			if !ok {
				s = &corev1.Secret{}
				if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, s); apierrors.IsNotFound(err) {
					s = nil
				} else if err != nil {
					return fmt.Errorf("reading Secret %s for environment variable %s: %w", ref.Name, v.Name, err)
				}
				secrets[ref.Name] = s
			}
			var data []byte
			if s != nil {
				data, ok = s.Data[ref.Key]
			}
			switch {
			case (s == nil || !ok) && optional:
				continue
			case s == nil:
				return &ResolveError{Reason: lambdav1alpha1.StateReasonCreating, Waiting: true,
					Message: fmt.Sprintf("environment variable %s: waiting for Secret %s", v.Name, ref.Name)}
			case !ok:
				return &ResolveError{Reason: lambdav1alpha1.StateReasonCreating, Waiting: true,
					Message: fmt.Sprintf("environment variable %s: waiting for key %s in Secret %s", v.Name, ref.Key, ref.Name)}
			}
			value = string(data)
			fromSecrets = append(fromSecrets, v.Name)
		}
		if n > 0 {
			size++ // ,
		}
		n++
		size += jsonStringLen(v.Name) + 1 + jsonStringLen(value)
	}
	if size > maxEnvironmentBytes {
		sort.Strings(fromSecrets)
		return invalid("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit: "+
			"%d bytes measured (compact JSON of names and values), with the values from Secrets of %s", size, strings.Join(fromSecrets, ", "))
	}
	return nil
}

// jsonStringLen is the length of s as a JSON string: quotes, two-byte escapes for " \ and
// \b \f \n \r \t, six-byte \u00XX for other control characters.
func jsonStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}
