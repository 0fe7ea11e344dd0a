// Package async is klambda's asynchronous invocation (X-Amz-Invocation-Type: Event): a
// durable queue on NATS JetStream (embedded in the activator by default, or an external
// NATS), and workers that invoke with Lambda's retry rules, maximum event age, destinations
// and dead-letter targets.
//
//	event.go         Event and its encoding as a JetStream message
//	server.go        the embedded nats-server (JetStream file store)
//	queue.go         Queue: the stream, Enqueue (returns once JetStream has stored the event)
//	cluster.go       the queue on a JetStream cluster: replicas, their refusals, retries during elections
//	retry.go         RetryPolicy: Lambda's delays, all configurable
//	config.go        Config and ConfigSource: the effective async settings of a qualifier
//	kubeconfig.go    ConfigSource over a controller-runtime client (API types)
//	record.go        Lambda's invocation record JSON
//	destinations.go  Deliverer: Function, NATS, Kafka and SQS targets for records and DLQ
//	worker.go        Workers: the durable pull consumer and each event's fate
//	metrics.go       Prometheus metrics
//
// Delivery is at-least-once, as in Lambda: an event is acknowledged only after its fate is
// settled, so a crash at any point re-delivers it.
package async
