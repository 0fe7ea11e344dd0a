// Package batch is the broker-independent heart of an event source mapping: gathering
// records into batches (Batcher) and deciding, after each invocation, what happens to the
// records of a batch (Delivery) — retried, split, committed or sent to the on-failure
// destination. It knows nothing about Kafka, SQS, RabbitMQ or NATS, does no I/O and reads
// time only from an injected Clock, so Lambda's batching and retry rules can be tested
// exhaustively here and every poller gets them identically.
package batch

import (
	"errors"
	"fmt"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// Clock tells the time; tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real time.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// Record is one message as the batching logic sees it. The poller keeps its own message in
// Ref.
type Record struct {
	// ID is the record's item identifier, as the function names it in batchItemFailures:
	// the SQS messageId, the NATS stream sequence or Kafka offset as a decimal string. It
	// must be unique within a batch (a Kafka batch spanning partitions needs the partition
	// in it, or the poller maps the function's identifiers to IDs).
	ID string
	// Partition is the unit of ordering: Kafka "topic-partition", the NATS stream, an SQS
	// FIFO message group; "" for unordered queues.
	Partition string
	// Offset is the record's position in its partition, increasing (streams only).
	Offset int64
	// Size is how many bytes the record adds to the invocation payload: its marshalled JSON
	// in the source's event shape.
	Size int
	// Timestamp is when the source received the record; maximumRecordAgeInSeconds counts
	// from it.
	Timestamp time.Time
	// Ref is the poller's handle on the message (delivery tag, receipt handle, ...).
	Ref any
}

// BatcherConfig is the mapping's batching settings.
type BatcherConfig struct {
	// BatchSize is the most records per batch (Lambda's BatchSize, 1–10000).
	BatchSize int
	// Window is MaximumBatchingWindowInSeconds: how long to gather records after the first
	// one arrives. 0 invokes as soon as records are available (whatever one poll returned).
	Window time.Duration
	// MaxPayloadBytes caps the invocation payload; 0 means contract.MaxSyncPayload (6 MB).
	MaxPayloadBytes int
	// EnvelopeBytes is the size of the event around its records (e.g. {"Records":[]}).
	EnvelopeBytes int
}

// FlushReason says why a batch was cut.
type FlushReason int

const (
	// BatchFull: BatchSize records.
	BatchFull FlushReason = iota
	// PayloadFull: the next record would have overflowed the payload limit.
	PayloadFull
	// WindowElapsed: the batching window ended (or is 0).
	WindowElapsed
	// Flushed: the poller asked (e.g. on shutdown or partition revocation).
	Flushed
)

func (r FlushReason) String() string {
	switch r {
	case BatchFull:
		return "BatchFull"
	case PayloadFull:
		return "PayloadFull"
	case WindowElapsed:
		return "WindowElapsed"
	}
	return "Flushed"
}

// Batch is a cut batch, records in arrival order.
type Batch struct {
	Records []Record
	// PayloadBytes is the event's estimated size: envelope, records and separators.
	PayloadBytes int
	Reason       FlushReason
}

// RecordTooLargeError reports a record that alone exceeds the payload limit. It never fits
// an invocation: the poller must send it to the on-failure destination with the condition
// MaximumPayloadSizeExceeded (or log it) and then commit it, never drop it silently.
type RecordTooLargeError struct {
	Record       Record
	PayloadBytes int
	Limit        int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record %q needs a %d-byte payload, over the %d-byte limit", e.Record.ID, e.PayloadBytes, e.Limit)
}

// Batcher gathers records into batches. It is not safe for concurrent use; a poller owns one
// per stream of records it batches.
type Batcher struct {
	cfg     BatcherConfig
	clock   Clock
	pending []Record
	bytes   int // payload of pending, envelope included
	started time.Time
	lastLen int // records in the last batch cut
}

// NewBatcher validates cfg.
func NewBatcher(cfg BatcherConfig, clock Clock) (*Batcher, error) {
	if cfg.BatchSize < 1 {
		return nil, errors.New("batch size must be at least 1")
	}
	if cfg.Window < 0 {
		return nil, errors.New("batching window must not be negative")
	}
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = contract.MaxSyncPayload
	}
	if cfg.EnvelopeBytes < 0 || cfg.EnvelopeBytes >= cfg.MaxPayloadBytes {
		return nil, errors.New("envelope must be smaller than the payload limit")
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &Batcher{cfg: cfg, clock: clock}, nil
}

// Add adds a record and returns the batches it completed: the pending batch when r would
// overflow the payload (r then starts the next batch), and the batch r fills to BatchSize.
// A record too large for any batch is returned as a *RecordTooLargeError, after the pending
// batch is cut so that order is kept: the batches returned precede the rejected record.
func (b *Batcher) Add(r Record) ([]Batch, error) {
	var out []Batch
	alone := b.cfg.EnvelopeBytes + r.Size
	if alone > b.cfg.MaxPayloadBytes {
		if len(b.pending) > 0 {
			out = append(out, b.cut(PayloadFull))
		}
		return out, &RecordTooLargeError{Record: r, PayloadBytes: alone, Limit: b.cfg.MaxPayloadBytes}
	}
	if len(b.pending) > 0 && b.bytes+1+r.Size > b.cfg.MaxPayloadBytes {
		out = append(out, b.cut(PayloadFull))
	}
	if len(b.pending) == 0 {
		b.started = b.clock.Now()
		b.bytes = b.cfg.EnvelopeBytes + r.Size
		if b.pending == nil {
			// Room for as many records as the last batch held, up to the batch size: one
			// allocation per batch rather than one per doubling.
			b.pending = make([]Record, 0, min(b.cfg.BatchSize, max(b.lastLen, 16)))
		}
	} else {
		b.bytes += 1 + r.Size // a comma between records
	}
	b.pending = append(b.pending, r)
	if len(b.pending) >= b.cfg.BatchSize {
		out = append(out, b.cut(BatchFull))
	}
	return out, nil
}

// Limit is the payload limit.
func (b *Batcher) Limit() int { return b.cfg.MaxPayloadBytes }

// FitsAlone tells whether r fits an invocation at all (false: Add would reject it with a
// *RecordTooLargeError).
func (b *Batcher) FitsAlone(r Record) bool {
	return b.cfg.EnvelopeBytes+r.Size <= b.cfg.MaxPayloadBytes
}

// Fits tells whether r joins the pending batch without Add cutting that batch for the
// payload limit first (a poller filling one batch from several partitions asks before it
// takes a record off a partition).
func (b *Batcher) Fits(r Record) bool {
	if !b.FitsAlone(r) {
		return false
	}
	return len(b.pending) == 0 || b.bytes+1+r.Size <= b.cfg.MaxPayloadBytes
}

// Ready returns the pending batch if its window has ended; with a zero window, any pending
// records are ready at once.
func (b *Batcher) Ready() (Batch, bool) {
	if len(b.pending) == 0 {
		return Batch{}, false
	}
	if b.clock.Now().Before(b.started.Add(b.cfg.Window)) {
		return Batch{}, false
	}
	return b.cut(WindowElapsed), true
}

// Deadline is when the pending batch's window ends; false when nothing is pending.
func (b *Batcher) Deadline() (time.Time, bool) {
	if len(b.pending) == 0 {
		return time.Time{}, false
	}
	return b.started.Add(b.cfg.Window), true
}

// Flush returns whatever is pending, window or not.
func (b *Batcher) Flush() (Batch, bool) {
	if len(b.pending) == 0 {
		return Batch{}, false
	}
	return b.cut(Flushed), true
}

// Len is the number of pending records.
func (b *Batcher) Len() int { return len(b.pending) }

func (b *Batcher) cut(reason FlushReason) Batch {
	batch := Batch{Records: b.pending, PayloadBytes: b.bytes, Reason: reason}
	b.lastLen = len(b.pending)
	b.pending, b.bytes = nil, 0
	return batch
}
