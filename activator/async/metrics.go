package async

import "github.com/prometheus/client_golang/prometheus"

// Metrics are named after Lambda's CloudWatch metrics (AsyncEventsReceived, AsyncEventAge,
// AsyncEventsDropped, DestinationDeliveryFailures, DeadLetterErrors).
type Metrics struct {
	Received            *prometheus.CounterVec
	Age                 *prometheus.HistogramVec
	Dropped             *prometheus.CounterVec
	DestinationFailures *prometheus.CounterVec
	DeadLetterErrors    *prometheus.CounterVec
	// Rejected counts messages on the queue's subjects that are not events an activator
	// accepted, by reason (RejectMalformed, ...): never invoked. Unsigned counts events run
	// without a signature (QueueOptions.AcceptUnsigned).
	Rejected *prometheus.CounterVec
	Unsigned prometheus.Counter
	// QueueOpen is 1 once the queue is open (OpeningQueue: an external NATS reached), else 0.
	QueueOpen prometheus.Gauge
}

// series are an event's label values: its namespace and function once they resolved to a
// Function, else empty (a message's headers are not a reason for a new series).
func series(ev Event, cfg Config) []string {
	if cfg.Unresolved {
		return []string{"", ""}
	}
	return []string{ev.Namespace, ev.Function}
}

// NewMetrics creates the metrics and registers them with reg when it is not nil
// (the activator passes controller-runtime's metrics.Registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"namespace", "function"}
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_async_events_received_total",
			Help: "Asynchronous events stored in the queue (Lambda's AsyncEventsReceived).",
		}, l),
		Age: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "klambda_async_event_age_seconds",
			Help:    "Time from accepting an asynchronous event to each attempt to invoke it (Lambda's AsyncEventAge).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 180, 600, 1800, 3600, 10800, 21600},
		}, l),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_async_events_dropped_total",
			Help: "Asynchronous events discarded without a successful run: retries exhausted, maximum age exceeded, reserved concurrency 0 (Lambda's AsyncEventsDropped).",
		}, l),
		DestinationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_destination_delivery_failures_total",
			Help: "Invocation records that could not be delivered to their destination (Lambda's DestinationDeliveryFailures).",
		}, l),
		DeadLetterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_dead_letter_errors_total",
			Help: "Failed events that could not be sent to the dead-letter target (Lambda's DeadLetterErrors).",
		}, l),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klambda_async_events_rejected_total",
			Help: "Messages on the async queue's subjects refused without an invocation: malformed, subject_mismatch, unsigned, bad_signature.",
		}, []string{"reason"}),
		Unsigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "klambda_async_events_unsigned_total",
			Help: "Async events run without a signature (--async-accept-unsigned, while an older queue drains).",
		}),
		QueueOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "klambda_async_queue_open",
			Help: "1 once the asynchronous invocation queue is open (its NATS reached and the stream ready); 0 while Event invocations are refused with ServiceException.",
		}),
	}
	for _, r := range []string{RejectMalformed, RejectSubjectMismatch, RejectUnsigned, RejectBadSignature} {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Age, m.Dropped, m.DestinationFailures, m.DeadLetterErrors, m.Rejected, m.Unsigned, m.QueueOpen)
	}
	return m
}
