// Package events holds the JSON documents a function receives from, and returns to, an
// event source mapping: the batch events of each source, the function's partial-batch
// response, and the on-failure destination record. They are exactly Lambda's shapes (spec §3,
// corrected where the guide is wrong: Kafka and RabbitMQ batches are objects keyed by
// "topic-partition" and "queue::vhost", Kafka's partition is a number, payloads are base64,
// Kafka header values are arrays of byte values), because functions written for Lambda and its
// runtime libraries (aws-lambda-go's events package, Powertools) decode them unchanged.
//
// The sources and their eventSource strings:
//
//	SQS                 {"Records":[{... "eventSource":"aws:sqs" ...}]}
//	self-managed Kafka  {"eventSource":"SelfManagedKafka","bootstrapServers":"h1:9092,h2:9092","records":{"topic-0":[...]}}
//	RabbitMQ            {"eventSource":"aws:rmq","eventSourceArn":"...","rmqMessagesByQueue":{"queue::/":[...]}}
//	NATS JetStream      {"eventSource":"klambda:nats","eventSourceArn":"...","servers":"nats://a:4222","records":{"STREAM":[...]}}
//
// Lambda has no NATS source, so klambda defines one in the same spirit as Kafka's: records
// are grouped under the stream name (the unit of ordering, as a Kafka partition is), each
// record carries its subject, stream sequence (the position, as a Kafka offset), timestamp in
// Unix milliseconds, JetStream's delivery count, multi-valued headers as NATS defines them
// ({"Name":["v1","v2"]}), and the payload in base64:
//
//	{"eventSource":"klambda:nats","eventSourceArn":"nats://nats.nats.svc:4222/ORDERS",
//	 "servers":"nats://nats.nats.svc:4222","records":{"ORDERS":[{"stream":"ORDERS",
//	 "subject":"orders.created","sequence":42,"timestamp":1545084650987,"numDelivered":1,
//	 "headers":{"Nats-Msg-Id":["a1"]},"data":"eyJpZCI6N30="}]}}
//
// The on-failure record of Kafka follows Lambda's KafkaBatchInfo (pointers, not data);
// SQSBatchInfo, RabbitMQBatchInfo and NATSBatchInfo are klambda's equivalents in the same
// form. See OnFailureRecord.
package events
