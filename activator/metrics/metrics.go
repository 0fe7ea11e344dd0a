// Package metrics holds the activator's Prometheus metrics, named after Lambda's
// CloudWatch metrics (Invocations, Errors, Throttles, Duration, ConcurrentExecutions,
// InitDuration) and labelled namespace, function, version (the version that ran) and
// resource (what the caller named: the alias, the version, or $LATEST).
//
// Label values never come from what a caller merely typed: namespace, function, version
// and resource label only functions the router resolved (Kubernetes objects, bounded by
// what the API server holds). A request refused before that (bad path, no or bad token,
// denied, no such function or qualifier) counts under namespace="" and function="", and
// the error type label is one of a fixed set (ErrorType), so a flood of made-up names
// makes no new series.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is one set of the activator's metrics.
type Metrics struct {
	Invocations   *prometheus.CounterVec
	Errors        *prometheus.CounterVec
	Throttles     *prometheus.CounterVec
	Duration      *prometheus.HistogramVec
	Concurrent    *prometheus.GaugeVec
	InitDuration  *prometheus.HistogramVec
	QueueWait     *prometheus.HistogramVec
	InvokeFailure *prometheus.CounterVec

	series sync.Map // seriesKey → *Series
}

var (
	invocationLabels = []string{"namespace", "function", "version", "resource"}
	versionLabels    = []string{"namespace", "function", "version"}
)

// New registers the metrics with reg (nil: a private registry, for tests).
func New(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	m := &Metrics{
		Invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_invocations_total",
			Help: "Invocations that ran the function (successful or with a function error), as Lambda's Invocations.",
		}, invocationLabels),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_errors_total",
			Help: "Invocations that ended in a function error (X-Amz-Function-Error), as Lambda's Errors.",
		}, invocationLabels),
		Throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_throttles_total",
			Help: "Requests refused with TooManyRequestsException, by reason.",
		}, append(append([]string{}, invocationLabels...), "reason")),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "klambda_duration_seconds",
			Help:    "Time the function spent on an invocation, as the shim measured it (Lambda's Duration).",
			Buckets: buckets,
		}, invocationLabels),
		Concurrent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "klambda_concurrent_executions",
			Help: "Environments busy with an invocation now (Lambda's ConcurrentExecutions).",
		}, versionLabels),
		InitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "klambda_init_duration_seconds",
			Help:    "Init phase of environments, reported on their first invocation (cold starts).",
			Buckets: buckets,
		}, versionLabels),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "klambda_queue_wait_seconds",
			Help:    "Time a request waited for a free environment (0 when one was idle).",
			Buckets: buckets,
		}, versionLabels),
		InvokeFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_invocation_failures_total",
			Help: "Requests answered with an invocation error (4xx/5xx) other than a throttle, by error type.",
		}, []string{"namespace", "function", "type"}),
	}
	reg.MustRegister(m.Invocations, m.Errors, m.Throttles, m.Duration, m.Concurrent, m.InitDuration, m.QueueWait, m.InvokeFailure)
	return m
}

// Unresolved is the namespace and function label of a failure that happened before the
// request's function was resolved (a name the caller made up must not become a series).
const Unresolved = ""

// errorTypes are the invocation error types of Lambda's Invoke API and the activator's
// own; any other type (an environment can answer with one) counts as "Other".
var errorTypes = map[string]bool{}

func init() {
	for _, t := range []string{
		// Lambda's Invoke errors.
		"EC2AccessDeniedException", "EC2ThrottledException", "EC2UnexpectedException", "EFSIOException",
		"EFSMountConnectivityException", "EFSMountFailureException", "EFSMountTimeoutException",
		"ENILimitReachedException", "InvalidParameterValueException", "InvalidRequestContentException",
		"InvalidRuntimeException", "InvalidSecurityGroupIDException", "InvalidSubnetIDException",
		"InvalidZipFileException", "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
		"KMSNotFoundException", "RecursiveInvocationException", "RequestTooLargeException",
		"ResourceConflictException", "ResourceNotFoundException", "ResourceNotReadyException", "ServiceException",
		"SnapStartException", "SnapStartNotReadyException", "SnapStartTimeoutException",
		"SubnetIPAddressLimitReachedException", "TooManyRequestsException", "UnsupportedMediaTypeException",
		// The activator's (request validation and authentication, as AWS answers them).
		"ValidationException", "UnknownOperationException", "AccessDeniedException",
		"MissingAuthenticationTokenException", "UnrecognizedClientException",
	} {
		errorTypes[t] = true
	}
}

// ErrorType is the type label of an invocation error: t when it is one of the known
// types, else "Other".
func ErrorType(t string) string {
	if errorTypes[t] {
		return t
	}
	return "Other"
}

// Seconds converts for Observe.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// Series are one route's metric children, looked up once and reused, so that a warm
// invocation does not hash label values five times.
type Series struct {
	Invocations  prometheus.Counter
	Errors       prometheus.Counter
	Duration     prometheus.Observer
	Concurrent   prometheus.Gauge
	InitDuration prometheus.Observer
	QueueWait    prometheus.Observer
}

type seriesKey struct{ namespace, function, version, resource string }

// For answers the series of one (namespace, function, version, resource).
func (m *Metrics) For(namespace, function, version, resource string) *Series {
	k := seriesKey{namespace, function, version, resource}
	if s, ok := m.series.Load(k); ok {
		return s.(*Series)
	}
	s := &Series{
		Invocations:  m.Invocations.WithLabelValues(namespace, function, version, resource),
		Errors:       m.Errors.WithLabelValues(namespace, function, version, resource),
		Duration:     m.Duration.WithLabelValues(namespace, function, version, resource),
		Concurrent:   m.Concurrent.WithLabelValues(namespace, function, version),
		InitDuration: m.InitDuration.WithLabelValues(namespace, function, version),
		QueueWait:    m.QueueWait.WithLabelValues(namespace, function, version),
	}
	actual, _ := m.series.LoadOrStore(k, s)
	return actual.(*Series)
}
