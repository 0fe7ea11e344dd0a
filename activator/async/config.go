package async

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Lambda's defaults for an asynchronous invocation configuration.
const (
	DefaultMaximumRetryAttempts = 2
	DefaultMaximumEventAge      = 21600 * time.Second
)

// ErrFunctionNotFound is returned by a ConfigSource for a function (or qualifier) that
// does not exist (any more); the worker then applies Lambda's defaults and lets the
// invocation fail with the activator's ResourceNotFoundException.
var ErrFunctionNotFound = errors.New("function or qualifier not found")

// Config is the effective asynchronous configuration of one invocation target.
type Config struct {
	// Unresolved: the event's function (or qualifier) does not exist (deleted since the
	// event was accepted, or a message the activator did not accept); its metrics then
	// carry no names (Metrics.series).
	Unresolved           bool
	MaximumRetryAttempts int
	MaximumEventAge      time.Duration
	OnSuccess, OnFailure *lambdav1alpha1.Destination
	// ReservedConcurrency is the function's, nil when unreserved; 0 sends every event
	// straight to the failure path.
	ReservedConcurrency *int32
	// Version is what the qualifier resolves to ($LATEST, a number; an alias's primary
	// version), and DeadLetter that version's deadLetterConfig. They serve an event that
	// fails before any invocation told the executed version.
	Version    string
	DeadLetter *lambdav1alpha1.DeadLetterConfig
	// FunctionErrorDelays, when set, replaces the workers' RetryPolicy.FunctionErrorDelays
	// for this function (contract.AnnotationAsyncRetryDelays, honoured only when the operator allows it).
	FunctionErrorDelays []time.Duration
}

// ParseRetryDelays reads "1m,2m": one or two durations between 0 and 1 h.
func ParseRetryDelays(s string) ([]time.Duration, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("retry delays %q: at most two (before the 2nd and the 3rd attempt)", s)
	}
	ds := make([]time.Duration, 0, len(parts))
	for _, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("retry delays %q: %w", s, err)
		}
		if d < 0 || d > time.Hour {
			return nil, fmt.Errorf("retry delays %q: %v is outside 0–1h", s, d)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// ConfigSource looks up the configuration that applies to an event.
//
// eventInvokeConfig is per qualifier, as Lambda's PutFunctionEventInvokeConfig: an
// unqualified or $LATEST call uses Function.spec.eventInvokeConfig, a version its
// Version's, an alias its Alias's; a qualifier without its own configuration gets Lambda's
// defaults (2 retries, 6 hours, no destinations) — it does not inherit the function's.
// deadLetterConfig is version-specific, as in Lambda: the executed version's.
type ConfigSource interface {
	AsyncConfig(ctx context.Context, namespace, function, qualifier string) (Config, error)
	DeadLetterConfig(ctx context.Context, namespace, function, version string) (*lambdav1alpha1.DeadLetterConfig, error)
}

// ConfigFrom applies Lambda's defaults to an EventInvokeConfig (nil allowed).
func ConfigFrom(eic *lambdav1alpha1.EventInvokeConfig) Config {
	c := Config{MaximumRetryAttempts: DefaultMaximumRetryAttempts, MaximumEventAge: DefaultMaximumEventAge}
	if eic == nil {
		return c
	}
	if eic.MaximumRetryAttempts != nil {
		c.MaximumRetryAttempts = int(*eic.MaximumRetryAttempts)
	}
	if eic.MaximumEventAgeInSeconds != nil {
		c.MaximumEventAge = time.Duration(*eic.MaximumEventAgeInSeconds) * time.Second
	}
	if dc := eic.DestinationConfig; dc != nil {
		c.OnSuccess, c.OnFailure = dc.OnSuccess, dc.OnFailure
	}
	return c
}
