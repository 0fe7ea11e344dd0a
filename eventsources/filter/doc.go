// Package filter implements Lambda's event filtering for event source mappings: the
// FilterCriteria of a mapping, compiled once, decides per record whether the function sees
// it. Lambda borrowed EventBridge's pattern language, so this package follows EventBridge
// wherever Lambda's documentation is silent; it is its own package because the poller of
// every source (SQS, Kafka, RabbitMQ, NATS JetStream) applies the same rules, and because the
// controller uses Compile to reject bad patterns at admission with Lambda's messages.
//
// The language, in short:
//
//   - A pattern is a JSON object mirroring the record. Every field it names must be present
//     in the record (except under exists:false); fields it doesn't name are ignored. Fields
//     are AND-ed, the filters of a FilterCriteria are OR-ed, "$or" OR-s sub-patterns.
//   - A leaf is an array of alternatives: exact strings, numbers, booleans and null, and the
//     operator objects prefix, suffix, equals-ignore-case, anything-but, numeric and exists.
//   - Exact numbers are compared by their JSON text, as Lambda documents (300 ≠ 300.0);
//     numeric compares values.
//   - An array in the record matches when any of its elements matches; an object pattern
//     matches an array when one element matches the whole sub-pattern.
//   - exists only looks at leaves (EventBridge's rule): a field whose value is an object is
//     "not existing" for exists:true/false.
//
// The data fields of a record (SQS body, Kinesis data, Kafka key and value, MQ and NATS data)
// arrive as bytes and are matched as JSON when they hold a JSON object or array, else as a
// plain string. When the pattern's form and the data's form disagree, SQS and Kinesis drop
// the record, while Kafka, MQ and NATS ignore that part of the pattern (metadata-only
// filtering), exactly as Lambda's "format mismatch" table says.
package filter
