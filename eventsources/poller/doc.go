// Package poller runs one event source mapping: it takes records from a Source (Kafka, SQS,
// RabbitMQ, NATS JetStream), drops those its filterCriteria reject, gathers the rest into
// batches (batch.Batcher), and carries each batch through Lambda's retry rules
// (batch.Delivery), invoking the function through an invoke.Invoker and settling records
// with the Source as each Step says.
//
// Records flow through lanes. A lane batches and delivers one batch at a time, in order:
//
//   - stream sources (Kafka, NATS): a lane per partition, or per partition and key hash when
//     parallelizationFactor > 1 (order is then kept per key, as Lambda keeps it per
//     partition key);
//   - queue sources (SQS, RabbitMQ): maximumConcurrency lanes fed round-robin.
//
// A PartitionGrouper source (Kafka, whose event groups records by topic-partition) has no
// lane goroutines: its lanes (partitions, or a partition's key hashes with
// parallelizationFactor) queue their records, and the ones with no batch in flight fill one
// batch together (shared.go), one batch in flight per lane still.
//
// Stream checkpoints are kept by a tracker per partition that moves the checkpoint only past
// records that are finished (delivered, discarded or filtered out) with every record before
// them, so lanes and filters never commit past an unfinished record.
package poller
