package async

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// KubeConfigSource reads Functions, Versions and Aliases through a controller-runtime
// client; the activator passes its manager's cached client, so a lookup is a map read.
type KubeConfigSource struct {
	Client client.Reader
	// RetryDelayAnnotation honours contract.AnnotationAsyncRetryDelays on Functions (a malformed value
	// is ignored: the workers' policy applies).
	RetryDelayAnnotation bool
}

var _ ConfigSource = (*KubeConfigSource)(nil)

// AsyncConfig resolves the qualifier's own eventInvokeConfig (see ConfigSource), the
// function's reserved concurrency and the dead-letter config of the version the qualifier
// points to.
func (k *KubeConfigSource) AsyncConfig(ctx context.Context, ns, fn, qualifier string) (Config, error) {
	var f lambdav1alpha1.Function
	if err := k.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: fn}, &f); err != nil {
		return Config{}, notFound(err, "Function %s/%s", ns, fn)
	}
	var cfg Config
	switch {
	case qualifier == "" || qualifier == contract.Latest:
		cfg = ConfigFrom(f.Spec.EventInvokeConfig)
		cfg.Version, cfg.DeadLetter = contract.Latest, f.Spec.DeadLetterConfig
	case isVersionNumber(qualifier):
		v, err := k.version(ctx, ns, fn, qualifier)
		if err != nil {
			return Config{}, err
		}
		cfg = ConfigFrom(v.Spec.EventInvokeConfig)
		cfg.Version = qualifier
		if v.Status.Configuration != nil {
			cfg.DeadLetter = v.Status.Configuration.DeadLetterConfig
		}
	default:
		a, err := k.alias(ctx, ns, fn, qualifier)
		if err != nil {
			return Config{}, err
		}
		cfg = ConfigFrom(a.Spec.EventInvokeConfig)
		if cfg.Version, err = routedVersion(a); err != nil {
			return Config{}, err
		}
		if cfg.DeadLetter, err = k.deadLetter(ctx, &f, cfg.Version); err != nil {
			return Config{}, err
		}
	}
	cfg.ReservedConcurrency = f.Spec.ReservedConcurrentExecutions
	if v, ok := f.Annotations[contract.AnnotationAsyncRetryDelays]; ok && k.RetryDelayAnnotation {
		if ds, err := ParseRetryDelays(v); err == nil {
			cfg.FunctionErrorDelays = ds
		}
	}
	return cfg, nil
}

// DeadLetterConfig is the deadLetterConfig of one version ($LATEST or a number).
func (k *KubeConfigSource) DeadLetterConfig(ctx context.Context, ns, fn, version string) (*lambdav1alpha1.DeadLetterConfig, error) {
	var f lambdav1alpha1.Function
	if err := k.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: fn}, &f); err != nil {
		return nil, notFound(err, "Function %s/%s", ns, fn)
	}
	return k.deadLetter(ctx, &f, version)
}

func (k *KubeConfigSource) deadLetter(ctx context.Context, f *lambdav1alpha1.Function, version string) (*lambdav1alpha1.DeadLetterConfig, error) {
	if version == "" || version == contract.Latest {
		return f.Spec.DeadLetterConfig, nil
	}
	v, err := k.version(ctx, f.Namespace, f.Name, version)
	if err != nil {
		return nil, err
	}
	if v.Status.Configuration == nil {
		return nil, nil
	}
	return v.Status.Configuration.DeadLetterConfig, nil
}

func (k *KubeConfigSource) version(ctx context.Context, ns, fn, number string) (*lambdav1alpha1.Version, error) {
	var list lambdav1alpha1.VersionList
	if err := k.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Versions in %s: %w", ns, err)
	}
	for i := range list.Items {
		v := &list.Items[i]
		if v.Spec.FunctionName == fn && v.Status.Version == number {
			return v, nil
		}
	}
	return nil, fmt.Errorf("version %s of %s/%s: %w", number, ns, fn, ErrFunctionNotFound)
}

func (k *KubeConfigSource) alias(ctx context.Context, ns, fn, name string) (*lambdav1alpha1.Alias, error) {
	var list lambdav1alpha1.AliasList
	if err := k.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing Aliases in %s: %w", ns, err)
	}
	// Of two Aliases with one effective name the older one owns it (the other is a
	// DuplicateAlias the router ignores too).
	var owner *lambdav1alpha1.Alias
	for i := range list.Items {
		a := &list.Items[i]
		if a.Spec.FunctionName == fn && a.EffectiveName() == name && a.DeletionTimestamp == nil &&
			(owner == nil || lambdav1alpha1.AliasPrecedes(a, owner)) {
			owner = a
		}
	}
	if owner != nil {
		return owner, nil
	}
	return nil, fmt.Errorf("alias %s of %s/%s: %w", name, ns, fn, ErrFunctionNotFound)
}

// KubeSecrets reads Secrets for SQS credentials.
func KubeSecrets(c client.Reader) SecretGetter {
	return func(ctx context.Context, ns, name string) (map[string][]byte, error) {
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return nil, err
		}
		return s.Data, nil
	}
}

func notFound(err error, format string, args ...any) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf(format+": %w", append(args, ErrFunctionNotFound)...)
	}
	return fmt.Errorf("reading "+format+": %w", append(args, err)...)
}

func isVersionNumber(q string) bool {
	_, err := strconv.ParseUint(q, 10, 64)
	return err == nil
}

// routedVersion is the version an alias routes to: its validated status, as the router
// uses it (never its spec, which may name a version not published yet, a Version object,
// or versions that may not be weighted together). An alias the controller has not
// validated yet routes nothing: ErrFunctionNotFound, as the router answers.
func routedVersion(a *lambdav1alpha1.Alias) (string, error) {
	if a.Status.FunctionVersion == "" {
		return "", fmt.Errorf("alias %s of %s/%s has no validated routing yet: %w", a.EffectiveName(), a.Namespace, a.Spec.FunctionName, ErrFunctionNotFound)
	}
	return a.Status.FunctionVersion, nil
}
