package async

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// Limits bound the queue. The stream as a whole refuses events past MaxBytes or MaxMessages
// (JetStream's DiscardNew: an accepted event is never deleted to make room), and each
// namespace may hold at most NamespaceMaxBytes of payload and NamespaceMaxMessages events
// in it, so that one namespace cannot fill the store for everyone. Zero values take the
// defaults; every limit is positive.
type Limits struct {
	// MaxBytes of the whole stream, as JetStream counts them (payload, headers, subject);
	// default 512 MiB. It is reserved in the JetStream store when the stream is created, so
	// it must fit in the store (the embedded server offers 75% of the volume's free space:
	// keep it under about 70% of activator.async.persistence.size).
	MaxBytes int64
	// MaxMessages in the whole stream (default 200,000).
	MaxMessages int64
	// NamespaceMaxBytes is the payload bytes one namespace's waiting events may hold
	// (default 128 MiB, a quarter of the default stream).
	NamespaceMaxBytes int64
	// NamespaceMaxMessages is the number of events one namespace may have waiting
	// (default 50,000). It also bounds each function (JetStream's per-subject limit).
	NamespaceMaxMessages int64
	// StateMaxBytes bounds the key-value bucket of retry state (default 128 MiB).
	StateMaxBytes int64
}

// Default limits.
const (
	DefaultMaxBytes             = 512 << 20
	DefaultMaxMessages          = 200_000
	DefaultNamespaceMaxBytes    = 128 << 20
	DefaultNamespaceMaxMessages = 50_000
	DefaultStateMaxBytes        = 128 << 20
)

func (l *Limits) defaults() {
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxMessages == 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	if l.NamespaceMaxBytes == 0 {
		l.NamespaceMaxBytes = min(DefaultNamespaceMaxBytes, l.MaxBytes)
	}
	if l.NamespaceMaxMessages == 0 {
		l.NamespaceMaxMessages = min(DefaultNamespaceMaxMessages, l.MaxMessages)
	}
	if l.StateMaxBytes == 0 {
		l.StateMaxBytes = DefaultStateMaxBytes
	}
}

func (l *Limits) validate() error {
	switch {
	case l.MaxBytes < maxPayload:
		return fmt.Errorf("async queue: maximum bytes %d is below one event (%d)", l.MaxBytes, maxPayload)
	case l.MaxMessages < 1, l.NamespaceMaxMessages < 1:
		return errors.New("async queue: message limits must be at least 1")
	case l.NamespaceMaxBytes < contract.MaxAsyncPayload:
		return fmt.Errorf("async queue: namespace maximum bytes %d is below one event (%d)", l.NamespaceMaxBytes, contract.MaxAsyncPayload)
	case l.NamespaceMaxBytes > l.MaxBytes || l.NamespaceMaxMessages > l.MaxMessages:
		return errors.New("async queue: a namespace's quota cannot exceed the whole queue's limit")
	case l.StateMaxBytes < maxPayload:
		return fmt.Errorf("async queue: state bucket maximum bytes %d is below one record (%d)", l.StateMaxBytes, maxPayload)
	}
	return nil
}

// ErrQueueFull is wrapped by the errors of an event refused because its namespace is over
// its quota or the whole queue is full. Nothing was stored; the Invoke API answers 429
// TooManyRequestsException and the caller may retry later.
var ErrQueueFull = errors.New("asynchronous event queue full")

// QueueFullError says which limit refused an event.
type QueueFullError struct {
	Namespace string
	// Reason is a sentence for the caller, without the namespace's neighbours' figures.
	Reason string
}

func (e *QueueFullError) Error() string { return e.Reason }
func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// limitError turns JetStream's refusal of a publish over the stream's limits into a
// QueueFullError; nil for any other error.
func limitError(err error, namespace string) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil
	}
	d := apiErr.Description
	switch {
	case strings.Contains(d, "maximum messages per subject exceeded"):
		return &QueueFullError{Namespace: namespace, Reason: "The function's asynchronous event queue is full; retry later."}
	case strings.Contains(d, "maximum bytes exceeded"), strings.Contains(d, "maximum messages exceeded"),
		strings.Contains(d, "insufficient resources"):
		return &QueueFullError{Namespace: namespace, Reason: "The asynchronous event queue is full; retry later."}
	}
	return nil
}

// usage is each namespace's share of the stream: payload bytes and events. It is read
// from the stream when the queue opens (so it survives a restart of the activator), taken
// before every publish and given back when an event is settled (acknowledged: it leaves
// the work-queue stream).
type usage struct {
	maxBytes, maxMsgs int64

	mu sync.Mutex
	ns map[string]nsUsage
}

type nsUsage struct{ bytes, msgs int64 }

func newUsage(l Limits) *usage {
	return &usage{maxBytes: l.NamespaceMaxBytes, maxMsgs: l.NamespaceMaxMessages, ns: map[string]nsUsage{}}
}

// reserve takes room for one event of size payload bytes, or says why there is none.
func (u *usage) reserve(namespace string, size int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.ns[namespace]
	switch {
	case n.msgs+1 > u.maxMsgs:
		return &QueueFullError{Namespace: namespace, Reason: "Namespace " + namespace + " has " +
			strconv.FormatInt(n.msgs, 10) + " asynchronous events waiting, its quota (" + strconv.FormatInt(u.maxMsgs, 10) + "); retry later."}
	case n.bytes+size > u.maxBytes:
		return &QueueFullError{Namespace: namespace, Reason: "Namespace " + namespace + "'s waiting asynchronous events hold " +
			strconv.FormatInt(n.bytes, 10) + " bytes; this event would pass its quota (" + strconv.FormatInt(u.maxBytes, 10) + " bytes); retry later."}
	}
	n.bytes += size
	n.msgs++
	u.ns[namespace] = n
	return nil
}

// release gives back one event's room.
func (u *usage) release(namespace string, size int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, ok := u.ns[namespace]
	if !ok {
		return
	}
	n.bytes = max(n.bytes-size, 0)
	n.msgs = max(n.msgs-1, 0)
	if n.msgs == 0 {
		delete(u.ns, namespace)
		return
	}
	u.ns[namespace] = n
}

// Usage is a namespace's waiting events and their payload bytes, as the quota counts them.
func (q *Queue) Usage(namespace string) (messages, bytes int64) {
	q.usage.mu.Lock()
	defer q.usage.mu.Unlock()
	n := q.usage.ns[namespace]
	return n.msgs, n.bytes
}

// scanUsage reads every stored event's namespace and payload size. The stream holds at
// most Limits.MaxMessages events, so this is bounded; it runs once, before the queue
// accepts anything.
func (q *Queue) scanUsage(ctx context.Context) (*usage, error) {
	u := newUsage(q.opts.Limits)
	info, err := q.stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return u, nil
	}
	prefix := q.opts.SubjectPrefix + "."
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; {
		m, err := q.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(q.opts.SubjectPrefix+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		if ns, _, ok := strings.Cut(strings.TrimPrefix(m.Subject, prefix), "."); ok {
			n := u.ns[ns]
			n.bytes += int64(len(m.Data))
			n.msgs++
			u.ns[ns] = n
		}
		seq = m.Sequence + 1
	}
	return u, nil
}

// correct sets each namespace's event count to the stream's own (subjects: the stream's
// per-subject counts, taken by the workers every DiscoverInterval), for a stream shared by
// several activator replicas: events another replica accepted count, and events another
// replica settled stop counting. Bytes follow the count at the namespace's average event
// size (JetStream counts bytes per stream, not per subject), so the byte quota is
// approximate with several replicas; the message quota is exact to within a look.
func (q *Queue) correct(subjects map[string]uint64) {
	prefix := q.opts.SubjectPrefix + "."
	stored := map[string]int64{}
	for s, n := range subjects {
		if ns, _, ok := strings.Cut(strings.TrimPrefix(s, prefix), "."); ok {
			stored[ns] += int64(n)
		}
	}
	u := q.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	for ns, n := range u.ns {
		s := stored[ns]
		if s == n.msgs {
			continue
		}
		if s == 0 {
			delete(u.ns, ns)
			continue
		}
		avg := int64(contract.MaxAsyncPayload / 4) // unknown sizes (all accepted elsewhere): a guess
		if n.msgs > 0 {
			avg = n.bytes / n.msgs
		}
		u.ns[ns] = nsUsage{msgs: s, bytes: avg * s}
	}
	for ns, s := range stored {
		if _, ok := u.ns[ns]; !ok {
			u.ns[ns] = nsUsage{msgs: s, bytes: int64(contract.MaxAsyncPayload/4) * s}
		}
	}
}

// settled gives an event's room back once it has left the stream.
func (q *Queue) settled(subject string, size int) {
	prefix := q.opts.SubjectPrefix + "."
	if ns, _, ok := strings.Cut(strings.TrimPrefix(subject, prefix), "."); ok {
		q.usage.release(ns, int64(size))
	}
}

// Acceptor is the Invoke handler's EventQueue over a Queue: it answers an event refused
// for a full queue or a namespace over its quota with Lambda's 429
// TooManyRequestsException (nothing stored; the caller may retry), and an oversized one
// with 413 RequestTooLargeException.
type Acceptor struct{ Queue *Queue }

var _ invoke.EventQueue = Acceptor{}

// Enqueue stores the event, or refuses it with an *invoke.Error.
func (a Acceptor) Enqueue(ctx context.Context, ev invoke.AsyncEvent) (string, error) {
	id, err := a.Queue.Enqueue(ctx, Event{Namespace: ev.Namespace, Function: ev.Function, Qualifier: ev.Qualifier,
		Payload: ev.Payload, ClientContext: ev.ClientContext, TraceID: ev.TraceID, Received: ev.Received})
	var full *QueueFullError
	switch {
	case errors.As(err, &full):
		e := invoke.ErrThrottled("")
		e.Message = full.Reason
		return "", e
	case errors.Is(err, ErrRequestTooLarge):
		return "", invoke.ErrRequestTooLarge(contract.MaxAsyncPayload)
	}
	return id, err
}
