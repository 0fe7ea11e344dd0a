package async

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The queue on a NATS JetStream cluster (README, "Clustering"): the stream, its consumers
// and the state bucket are replicated (QueueOptions.Replicas, R3 for several activator
// replicas), and every activator replica pulls from the same durable consumers, so an event
// runs on one replica at a time and is redelivered to another after AckWait when its
// replica dies.

// MaxReplicas is JetStream's largest replication factor.
const MaxReplicas = 5

// JetStream API error codes (nats-server's jetstream_errors_generated.go) that say a
// replication factor cannot be placed, and one that says the cluster is electing.
const (
	jsErrNoPeers                = 10005 // no suitable peers for placement
	jsErrInsufficientResources  = 10023 // insufficient resources
	jsErrReplicasNotSupported   = 10074 // replicas > 1 not supported in non-clustered mode
	jsErrClusterTemporarilyDown = 10008 // JetStream system temporarily unavailable
)

// How long NewQueue tries again while a cluster elects its leaders (a NATS cluster
// starting with the activator), and how long an Enqueue tries to store one event while
// the stream elects a new leader after a NATS node's loss.
const (
	defaultSetupPatience = 30 * time.Second
	publishPatience      = 15 * time.Second
	apiAttemptTimeout    = 5 * time.Second
	// A store normally answers in milliseconds; a publish unanswered for this long most
	// likely went to a dead leader, and is sent again (a duplicate is dropped).
	publishAttemptTimeout = 2 * time.Second
	retryWait             = 250 * time.Millisecond
)

func validateReplicas(r int) error {
	if r < 1 || r > MaxReplicas {
		return fmt.Errorf("async queue: stream replicas %d: JetStream allows 1 to %d", r, MaxReplicas)
	}
	return nil
}

// replicasError explains a server's refusal to place r replicas; nil for any other error.
func replicasError(err error, r int) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil
	}
	switch apiErr.ErrorCode {
	case jsErrReplicasNotSupported:
		return fmt.Errorf("async queue: %d stream replicas need a NATS JetStream cluster of at least %d servers, "+
			"and this NATS is a single server (the embedded one, or an external one without clustering): "+
			"use --async-stream-replicas=1 or point --async-nats-url at a cluster (%w)", r, r, err)
	case jsErrNoPeers, jsErrInsufficientResources:
		return fmt.Errorf("async queue: the NATS JetStream cluster cannot place %d stream replicas: it has fewer "+
			"than %d JetStream servers up, or they lack the storage the queue's limits reserve "+
			"(--async-max-bytes on each of them) (%w)", r, r, err)
	}
	return nil
}

// transient says err may pass once the cluster has elected a leader: no server answered,
// the answer did not come in time, or JetStream said it is temporarily unavailable.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrClusterTemporarilyDown
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// retrying runs op until it succeeds, fails for good, ctx ends or patience runs out; each
// attempt has its own timeout, so a request lost with a dying server is sent again.
func retrying[T any](ctx context.Context, patience, perAttempt time.Duration, op func(context.Context) (T, error)) (T, int, error) {
	deadline := time.Now().Add(patience)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, perAttempt)
		v, err := op(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return v, attempt, err
		}
		select {
		case <-time.After(retryWait):
		case <-ctx.Done():
			return v, attempt, err
		}
	}
}

// createOrUpdate creates (or updates: JetStream changes an existing stream's or bucket's
// replicas) one of the queue's JetStream resources, explaining a replication the servers
// cannot place.
func createOrUpdate[T any](ctx context.Context, o *QueueOptions, what string, op func(context.Context) (T, error)) (T, error) {
	v, _, err := retrying(ctx, o.SetupPatience, min(apiAttemptTimeout, o.SetupPatience), op)
	if err == nil {
		return v, nil
	}
	if rerr := replicasError(err, o.Replicas); rerr != nil {
		return v, fmt.Errorf("creating %s: %w", what, rerr)
	}
	if transient(err) {
		return v, fmt.Errorf("creating %s: the NATS JetStream API did not answer within %s (is JetStream enabled, and does the cluster have a leader, i.e. a majority of its servers up?): %w", what, o.SetupPatience, err)
	}
	return v, fmt.Errorf("creating %s: %w", what, err)
}

// publish stores m, sending it again while the stream elects a new leader (a NATS node
// died); the Nats-Msg-Id header (the request id) makes JetStream drop a second copy. It
// reports whether an earlier attempt may have stored m.
func (q *Queue) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, bool, error) {
	ack, attempts, err := retrying(ctx, publishPatience, publishAttemptTimeout, func(actx context.Context) (*jetstream.PubAck, error) {
		return q.js.PublishMsg(actx, m)
	})
	return ack, attempts > 1, err
}
