// Package metricsauth serves a controller-runtime manager's metrics endpoint to authorized
// callers only, for the manager and the pollers alike.
package metricsauth

import (
	"net/http"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/klambda/klambda/internal/persource"
)

// Options serves the metrics endpoint on addr; secure: over HTTPS (a self-signed
// certificate), to callers the API server authenticates and allows get on the non-resource
// URL /metrics (controller-runtime's secure metrics).
func Options(addr string, secure bool) metricsserver.Options {
	if !secure {
		return metricsserver.Options{BindAddress: addr}
	}
	return metricsserver.Options{BindAddress: addr, SecureServing: true, FilterProvider: LimitedAuthFilter}
}

// LimitedAuthFilter is controller-runtime's authentication and authorization filter behind
// a per-client request limit: each request with an unknown token costs a TokenReview.
func LimitedAuthFilter(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	f, err := filters.WithAuthenticationAndAuthorization(cfg, hc)
	if err != nil {
		return nil, err
	}
	return func(log logr.Logger, h http.Handler) (http.Handler, error) {
		h, err := f(log, h)
		if err != nil {
			return nil, err
		}
		return persource.Limit(2, 10, h), nil
	}, nil
}
