package poller

import (
	"context"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
)

// Message is one record fetched from a source.
type Message struct {
	// Record is the record as batching sees it: ID (the batchItemFailures identifier),
	// Partition, Offset, Size (its JSON in the event), Timestamp and the source's Ref.
	Record batch.Record
	// Key orders records within a partition when parallelizationFactor > 1 (the Kafka key,
	// the NATS subject).
	Key string
}

// Settlement is what a source must do with finished or failed records.
type Settlement struct {
	// Checkpoints (streams): per partition, the offset of the last record that, with every
	// record before it, is finished. Kafka commits offset+1.
	Checkpoints map[string]int64
	// Acked (queues): records finished — delete them (SQS) or ack them (RabbitMQ).
	Acked []batch.Record
	// Released (queues): records that failed — return them to the queue for redelivery.
	Released []batch.Record
}

// Source is one event source, opened for one mapping.
type Source interface {
	// Mode is batch.Stream or batch.Queue.
	Mode() batch.Mode
	// Fetch returns the next records in source order, blocking until some arrive or ctx
	// ends. It may return none (a poll that timed out).
	Fetch(ctx context.Context) ([]Message, error)
	// EnvelopeBytes is the size of the event around its records.
	EnvelopeBytes() int
	// Event builds the function's event from records of Fetch, in order.
	Event(records []batch.Record) ([]byte, error)
	// Settle commits, acks or releases records.
	Settle(ctx context.Context, s Settlement) error
	// FilterRecord is a record of Fetch as filters see it (from its Ref: no closure per
	// fetched record); called only when the mapping has filters.
	FilterRecord(r batch.Record) filter.Record
	// DescribeFailure fills the source's *BatchInfo of an on-failure record.
	DescribeFailure(rec *events.OnFailureRecord, records []batch.Record)
	// Close releases the connection. Unsettled records are redelivered later (uncommitted
	// offsets, unacked messages, visibility timeouts).
	Close() error
}

// EventAppender is a Source that can write its event into a caller's buffer (the poller
// reuses event buffers between invocations instead of allocating one per batch).
type EventAppender interface {
	// AppendEvent appends the event of records to dst, as Event builds it.
	AppendEvent(dst []byte, records []batch.Record) ([]byte, error)
}
