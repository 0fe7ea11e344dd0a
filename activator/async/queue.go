package async

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/klambda/klambda/api/contract"
)

// QueueOptions name the JetStream resources; the defaults suit one activator deployment.
type QueueOptions struct {
	// Stream holding accepted events (default KLAMBDA_ASYNC), on subjects
	// <SubjectPrefix>.<namespace>.<function> (default klambda.async).
	Stream        string
	SubjectPrefix string
	// StateBucket is the key-value bucket of retry state per request id
	// (default klambda-async-state).
	StateBucket string
	// Replicas of the stream, its consumers and the state bucket (default 1, at most 5).
	// More than 1 needs a NATS JetStream cluster of at least that many servers (3 for
	// several activator replicas, README "Clustering"); a single server refuses it, and
	// NewQueue says so. An existing stream and bucket are updated to it.
	Replicas int
	// SetupPatience is how long NewQueue retries while the JetStream API does not answer
	// or the cluster elects its leaders (default 30s); then it fails.
	SetupPatience time.Duration
	Metrics       *Metrics
	// Signer, when set, signs every stored event, and the workers refuse a message without
	// a valid signature (anyone else who can publish on an external NATS). Nil: events are
	// neither signed nor checked (the embedded server, whose queue account only this
	// process can reach).
	Signer *Signer
	// AcceptUnsigned lets events without a signature run (counted) while a queue filled by
	// an activator older than signing drains; a wrong signature is always refused.
	AcceptUnsigned bool
	// Limits bound the stream as a whole and each namespace's share of it (limits.go).
	Limits Limits
	// Shared says other activator replicas use the stream too (external NATS): the
	// namespaces' usage is then corrected from the stream's own counts every time the
	// workers look at it, as this replica does not see the others' accepts and settles.
	Shared bool
}

func (o *QueueOptions) defaults() {
	if o.Stream == "" {
		o.Stream = "KLAMBDA_ASYNC"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "klambda.async"
	}
	if o.StateBucket == "" {
		o.StateBucket = "klambda-async-state"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.SetupPatience <= 0 {
		o.SetupPatience = defaultSetupPatience
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	o.Limits.defaults()
}

// Queue is the durable queue of asynchronous events: a JetStream work-queue stream in file
// storage.
type Queue struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	state  jetstream.KeyValue
	opts   QueueOptions
	usage  *usage
	// notify, when set, hears the subject of every event this queue stored (the workers
	// start that function's consumer at once instead of at their next look at the stream).
	notify atomic.Pointer[func(subject string)]
}

// NewQueue creates (or updates) the stream and the state bucket on nc's server, with
// opts.Replicas replicas.
func NewQueue(ctx context.Context, nc *nats.Conn, opts QueueOptions) (*Queue, error) {
	opts.defaults()
	if err := opts.Limits.validate(); err != nil {
		return nil, err
	}
	if err := validateReplicas(opts.Replicas); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := createOrUpdate(ctx, &opts, "stream "+opts.Stream, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, opts.streamConfig())
	})
	if err != nil {
		return nil, err
	}
	state, err := createOrUpdate(ctx, &opts, "key-value bucket "+opts.StateBucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      opts.StateBucket,
			Description: "klambda asynchronous invocation attempts per request id",
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
			// Longer than the maximum event age plus retry delays; settled events delete theirs.
			TTL:      24 * time.Hour,
			MaxBytes: opts.Limits.StateMaxBytes,
		})
	})
	if err != nil {
		return nil, err
	}
	q := &Queue{nc: nc, js: js, stream: stream, state: state, opts: opts}
	// Each namespace's usage is read from the stream itself, so that quotas hold across
	// a restart of the activator.
	if q.usage, err = q.scanUsage(ctx); err != nil {
		return nil, fmt.Errorf("reading the usage of stream %s: %w", opts.Stream, err)
	}
	opts.Metrics.QueueOpen.Set(1)
	return q, nil
}

// streamConfig is the work-queue stream of accepted events.
func (o *QueueOptions) streamConfig() jetstream.StreamConfig {
	lim := o.Limits
	return jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "klambda asynchronous invocations",
		Subjects:    []string{o.SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		// No MaxAge: an event leaves the stream only when a worker has settled it (the
		// worker applies maximumEventAgeInSeconds and sends the expired event on).
		Duplicates: 2 * time.Minute,
		MaxMsgSize: maxPayload,
		// Nobody empties or deletes accepted events through the JetStream API (issue #15);
		// an existing stream is updated to this (nats-server allows turning these on).
		DenyDelete: true,
		DenyPurge:  true,
		// The whole stream is bounded, and a full stream refuses new events (DiscardNew):
		// the default, DiscardOld, would delete accepted events to make room.
		MaxBytes: lim.MaxBytes,
		MaxMsgs:  lim.MaxMessages,
		Discard:  jetstream.DiscardNew,
		// One function (one subject) never holds more than its namespace may: JetStream
		// enforces this itself, whatever the activators' accounting says.
		MaxMsgsPerSubject:    lim.NamespaceMaxMessages,
		DiscardNewPerSubject: true,
	}
}

// Enqueue stores ev and returns its request id once JetStream has acknowledged the write
// (the event is in the file store); only then may the caller answer 202. A payload over
// contract.MaxAsyncPayload returns ErrRequestTooLarge and stores nothing.
func (q *Queue) Enqueue(ctx context.Context, ev Event) (string, error) {
	if len(ev.Payload) > contract.MaxAsyncPayload {
		return "", ErrRequestTooLarge
	}
	return q.enqueue(ctx, ev)
}

// enqueue has no payload limit below the server's, for records sent to Function destinations.
func (q *Queue) enqueue(ctx context.Context, ev Event) (string, error) {
	return q.store(ctx, ev, false)
}

// store publishes ev and waits for JetStream's ack. moved: ev was accepted before, by an
// embedded queue (MoveEmbeddedStore): it is marked so (its workers read the attempts it
// made there) and not counted as received again.
func (q *Queue) store(ctx context.Context, ev Event, moved bool) (string, error) {
	if ev.Namespace == "" || ev.Function == "" {
		return "", errors.New("async event without namespace or function")
	}
	if ev.RequestID == "" {
		ev.RequestID = contract.NewRequestID()
	}
	if ev.Received.IsZero() {
		ev.Received = time.Now()
	}
	if err := ev.check(); err != nil {
		return "", fmt.Errorf("refusing to store an async event a worker would refuse: %w", err)
	}
	size := int64(len(ev.Payload))
	// The namespace's share is taken before the publish (concurrent events cannot overrun
	// it) and given back when the stream did not store the event.
	if err := q.usage.reserve(ev.Namespace, size); err != nil {
		return "", err
	}
	subject := q.subject(ev.Namespace, ev.Function)
	m := ev.toMsg(subject)
	if moved {
		m.Header.Set(hdrMoved, "1")
	}
	if q.opts.Signer != nil {
		q.opts.Signer.sign(m)
	}
	ack, retried, err := q.publish(ctx, m)
	if err != nil {
		q.usage.release(ev.Namespace, size)
		if lerr := limitError(err, ev.Namespace); lerr != nil {
			return "", lerr
		}
		return "", fmt.Errorf("storing async event %s for %s/%s: %w", ev.RequestID, ev.Namespace, ev.Function, err)
	}
	if ack.Duplicate && !retried {
		// A second copy of an event already stored (the caller sent it again). After a
		// retry, the copy stored is most likely this call's own first attempt.
		q.usage.release(ev.Namespace, size)
	} else if !moved {
		q.opts.Metrics.Received.WithLabelValues(ev.Namespace, ev.Function).Inc()
	}
	if n := q.notify.Load(); n != nil {
		(*n)(subject)
	}
	return ev.RequestID, nil
}

func (q *Queue) subject(ns, fn string) string {
	return q.opts.SubjectPrefix + "." + ns + "." + fn
}

// Pending is the number of events stored and not yet settled.
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// Conn is the queue's NATS connection. Only the queue uses it: tenants' destinations never
// publish on it (Deliverer.SetLocalNATS).
func (q *Queue) Conn() *nats.Conn { return q.nc }

// readEvent is a stored message as the event an activator accepted, or a *RejectedError:
// a wrong or (unless AcceptUnsigned) missing signature, malformed headers, or headers that
// do not match the subject.
func (q *Queue) readEvent(subject string, h nats.Header, data []byte) (Event, error) {
	if q.opts.Signer != nil {
		if err := q.opts.Signer.verify(subject, h, data); err != nil {
			var re *RejectedError
			if !q.opts.AcceptUnsigned || !errors.As(err, &re) || re.Reason != RejectUnsigned {
				return Event{}, err
			}
			q.opts.Metrics.Unsigned.Inc()
		}
	}
	return eventFromMsg(q.opts.SubjectPrefix, subject, h, data)
}
