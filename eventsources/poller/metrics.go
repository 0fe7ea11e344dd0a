package poller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of event source mappings, named after Lambda's CloudWatch metrics, labelled by
// namespace, mapping and function.
var (
	iteratorAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "klambda_iterator_age_seconds",
		Help: "Age of the last record of the last batch the mapping invoked its function with (Lambda's IteratorAge).",
	}, []string{"namespace", "mapping", "function"})
	offsetLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "klambda_esm_offset_lag",
		Help: "Records in the source not yet read by the mapping (Lambda's OffsetLag), for sources that know it.",
	}, []string{"namespace", "mapping", "function"})
	batches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klambda_esm_batches_total",
		Help: "Invocations by the mapping, by outcome (Success, FunctionError, PartialFailure, Throttled, SystemError).",
	}, []string{"namespace", "mapping", "function", "outcome"})
	recordsInvoked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klambda_esm_records_total",
		Help: "Records read from the source by the mapping.",
	}, []string{"namespace", "mapping", "function"})
	recordsFiltered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klambda_esm_records_filtered_total",
		Help: "Records dropped because no filter of filterCriteria matched them.",
	}, []string{"namespace", "mapping", "function"})
	failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klambda_esm_failures_total",
		Help: "Records given up on, by condition (RetryAttemptsExhausted, RecordAgeExceeded, MaximumPayloadSizeExceeded).",
	}, []string{"namespace", "mapping", "function", "condition"})
	destinationErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klambda_esm_destination_delivery_failures_total",
		Help: "Failed attempts to send an on-failure record to the mapping's destination.",
	}, []string{"namespace", "mapping", "function"})
	concurrency = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "klambda_esm_concurrency",
		Help: "Concurrent pollers of a scaled queue mapping (SQS), each with one batch in flight at most.",
	}, []string{"namespace", "mapping", "function"})
)

// Register adds the metrics to reg (the controller-runtime metrics registry in the binary).
func Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{iteratorAge, offsetLag, batches, recordsInvoked, recordsFiltered, failures, destinationErrors, concurrency} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
		}
	}
	return nil
}

// forgetSeries deletes a stopped mapping's series (labels: namespace, mapping, function),
// so that mappings created and deleted over time do not accumulate series.
func forgetSeries(labels []string) {
	m := prometheus.Labels{"namespace": labels[0], "mapping": labels[1], "function": labels[2]}
	for _, c := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{iteratorAge, offsetLag, batches, recordsInvoked, recordsFiltered, failures, destinationErrors, concurrency} {
		c.DeletePartialMatch(m)
	}
}

// LagReporter is implemented by sources that know how far behind the mapping is.
type LagReporter interface {
	Lag() (records int64, ok bool)
}
