package v1alpha1_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambda "github.com/klambda/klambda/api/v1alpha1"
)

func esm(spec lambda.EventSourceMappingSpec, changes ...func(*lambda.EventSourceMapping)) *lambda.EventSourceMapping {
	e := &lambda.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Name: "my-mapping"}, Spec: spec}
	return with(e, changes...)
}

func kafkaESM(changes ...func(*lambda.EventSourceMapping)) *lambda.EventSourceMapping {
	return esm(lambda.EventSourceMappingSpec{
		FunctionName: "my-function",
		SelfManagedEventSource: &lambda.SelfManagedEventSource{Endpoints: lambda.KafkaEndpoints{
			KafkaBootstrapServers: []string{"kafka-0:9092"}}},
		Topics:           []string{"orders"},
		StartingPosition: lambda.StartingPositionTrimHorizon,
	}, changes...)
}

func sqsESM(changes ...func(*lambda.EventSourceMapping)) *lambda.EventSourceMapping {
	return esm(lambda.EventSourceMappingSpec{
		FunctionName: "my-function",
		SQS:          &lambda.SQSQueue{QueueURL: "http://elasticmq:9324/000000000000/jobs"},
	}, changes...)
}

func fifo(e *lambda.EventSourceMapping) { e.Spec.SQS.QueueURL += ".fifo" }

func rabbitESM(changes ...func(*lambda.EventSourceMapping)) *lambda.EventSourceMapping {
	return esm(lambda.EventSourceMappingSpec{
		FunctionName: "my-function",
		RabbitMQ:     &lambda.RabbitMQSource{BrokerURL: "amqp://rabbitmq:5672"},
		Queues:       []string{"pizzaQueue"},
		SourceAccessConfigurations: []lambda.SourceAccessConfiguration{
			{Type: lambda.SourceAccessBasicAuth, SecretRef: &lambda.SecretReference{Name: "rabbit"}},
			{Type: lambda.SourceAccessVirtualHost, URI: "/"},
		},
	}, changes...)
}

func natsESM(changes ...func(*lambda.EventSourceMapping)) *lambda.EventSourceMapping {
	return esm(lambda.EventSourceMappingSpec{
		FunctionName:     "my-function",
		NATSJetStream:    &lambda.NATSJetStreamSource{Servers: []string{"nats://nats:4222"}, Stream: "EVENTS"},
		StartingPosition: lambda.StartingPositionLatest,
	}, changes...)
}

func batchSize(n int32) func(*lambda.EventSourceMapping) {
	return func(e *lambda.EventSourceMapping) { e.Spec.BatchSize = &n }
}

func window(n int32) func(*lambda.EventSourceMapping) {
	return func(e *lambda.EventSourceMapping) { e.Spec.MaximumBatchingWindowInSeconds = &n }
}

func filters(patterns ...string) func(*lambda.EventSourceMapping) {
	return func(e *lambda.EventSourceMapping) {
		e.Spec.FilterCriteria = &lambda.FilterCriteria{}
		for _, p := range patterns {
			e.Spec.FilterCriteria.Filters = append(e.Spec.FilterCriteria.Filters, lambda.Filter{Pattern: p})
		}
	}
}

func TestEventSourceMappingValidation(t *testing.T) {
	const streamsOnly = "only supported for stream sources (Kafka, NATS JetStream)"
	runCreateChecks(t, []createCheck{
		accept("Kafka", kafkaESM()),
		accept("SQS", sqsESM()),
		accept("RabbitMQ", rabbitESM()),
		accept("NATS JetStream", natsESM()),

		// The source.
		reject("no source", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.SQS = nil }),
			"spec", "exactly one of selfManagedEventSource, sqs, rabbitMQ and natsJetStream"),
		reject("two sources", natsESM(func(e *lambda.EventSourceMapping) { e.Spec.SQS = &lambda.SQSQueue{QueueURL: "http://sqs/q"} }),
			"spec", "exactly one of selfManagedEventSource, sqs, rabbitMQ and natsJetStream"),
		reject("no Kafka bootstrap servers", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers = []string{}
		}), "spec.selfManagedEventSource.endpoints.kafkaBootstrapServers", "should have at least 1 items"),
		reject("11 Kafka bootstrap servers", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers = strings.Split(strings.Repeat("k:9092,", 10)+"k:9092", ",")
		}), "spec.selfManagedEventSource.endpoints.kafkaBootstrapServers", "must have at most 10 items"),
		reject("Kafka bootstrap server without port", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers = []string{"kafka-0"}
		}), "spec.selfManagedEventSource.endpoints.kafkaBootstrapServers[0]", "should match"),

		// functionName.
		accept("functionName with a qualifier", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.FunctionName = "my-function:live" })),
		accept("functionName as an ARN", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.FunctionName = "arn:aws:lambda:us-east-1:000000000000:function:my-function:2"
		})),
		reject("functionName with a space", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.FunctionName = "my function" }),
			"spec.functionName", "should match"),
		reject("functionName over 140", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.FunctionName = strings.Repeat("f", 141) }),
			"spec.functionName", "may not be more than 140"),

		// Batching.
		reject("batchSize 0", kafkaESM(batchSize(0)), "spec.batchSize", "greater than or equal to 1"),
		reject("batchSize 10001", kafkaESM(batchSize(10001)), "spec.batchSize", "less than or equal to 10000"),
		accept("Kafka batchSize 10000", kafkaESM(batchSize(10000))),
		accept("RabbitMQ batchSize 10000", rabbitESM(batchSize(10000))),
		accept("NATS batchSize 10000", natsESM(batchSize(10000))),
		accept("SQS batchSize 10000 with a window", sqsESM(batchSize(10000), window(1))),
		reject("SQS batchSize 11 without a window", sqsESM(batchSize(11)),
			"spec.maximumBatchingWindowInSeconds", "for a batch size over 10, you must also set maximumBatchingWindowInSeconds to at least 1 second"),
		reject("SQS batchSize 11 with a zero window", sqsESM(batchSize(11), window(0)),
			"spec.maximumBatchingWindowInSeconds", "at least 1 second"),
		accept("FIFO batchSize 10", sqsESM(fifo, batchSize(10))),
		reject("FIFO batchSize 11", sqsESM(fifo, batchSize(11), window(1)),
			"spec.batchSize", "the maximum batch size for a FIFO queue is 10"),
		reject("FIFO with a batching window", sqsESM(fifo, window(5)),
			"spec.maximumBatchingWindowInSeconds", "maximumBatchingWindowInSeconds is not supported for FIFO queues"),
		reject("window over 300", kafkaESM(window(301)),
			"spec.maximumBatchingWindowInSeconds", "less than or equal to 300"),

		// Starting position.
		reject("Kafka without startingPosition", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.StartingPosition = "" }),
			"spec.startingPosition", "startingPosition is required for stream sources"),
		reject("NATS without startingPosition", natsESM(func(e *lambda.EventSourceMapping) { e.Spec.StartingPosition = "" }),
			"spec.startingPosition", "startingPosition is required for stream sources"),
		reject("SQS with startingPosition", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.StartingPosition = lambda.StartingPositionLatest }),
			"spec.startingPosition", "startingPosition is only supported for stream sources"),
		reject("unknown startingPosition", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.StartingPosition = "EARLIEST" }),
			"spec.startingPosition", `Unsupported value: "EARLIEST"`),
		reject("Kafka AT_TIMESTAMP", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.StartingPosition = lambda.StartingPositionAtTimestamp
			e.Spec.StartingPositionTimestamp = &metav1.Time{Time: time.Unix(1700000000, 0)}
		}), "spec.startingPosition", "AT_TIMESTAMP is not supported for Kafka sources"),
		accept("NATS AT_TIMESTAMP with a timestamp", natsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.StartingPosition = lambda.StartingPositionAtTimestamp
			e.Spec.StartingPositionTimestamp = &metav1.Time{Time: time.Unix(1700000000, 0)}
		})),
		reject("AT_TIMESTAMP without a timestamp", natsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.StartingPosition = lambda.StartingPositionAtTimestamp
		}), "spec.startingPositionTimestamp", "startingPositionTimestamp is required with, and only valid with, startingPosition AT_TIMESTAMP"),
		reject("timestamp without AT_TIMESTAMP", natsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.StartingPositionTimestamp = &metav1.Time{Time: time.Unix(1700000000, 0)}
		}), "spec.startingPositionTimestamp", "startingPositionTimestamp is required with, and only valid with, startingPosition AT_TIMESTAMP"),

		// Topics and queues.
		reject("Kafka without topics", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.Topics = nil }),
			"spec.topics", "topics is required for, and only valid with, a Kafka source"),
		reject("two topics", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.Topics = []string{"orders", "payments"} }),
			"spec.topics", "must have at most 1 item"),
		reject("topics on SQS", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.Topics = []string{"orders"} }),
			"spec.topics", "topics is required for, and only valid with, a Kafka source"),
		reject("topic name over 249", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.Topics = []string{strings.Repeat("t", 250)} }),
			"spec.topics[0]", "may not be more than 249"),
		reject("RabbitMQ without queues", rabbitESM(func(e *lambda.EventSourceMapping) { e.Spec.Queues = nil }),
			"spec.queues", "queues is required for, and only valid with, a RabbitMQ source"),
		reject("two queues", rabbitESM(func(e *lambda.EventSourceMapping) { e.Spec.Queues = []string{"a", "b"} }),
			"spec.queues", "must have at most 1 item"),
		reject("queues on Kafka", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.Queues = []string{"a"} }),
			"spec.queues", "queues is required for, and only valid with, a RabbitMQ source"),

		// Stream settings.
		accept("stream settings on Kafka", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.ParallelizationFactor = ptr(int32(10))
			e.Spec.MaximumRecordAgeInSeconds = ptr(int32(-1))
			e.Spec.MaximumRetryAttempts = ptr(int32(10000))
			e.Spec.BisectBatchOnFunctionError = ptr(true)
			e.Spec.TumblingWindowInSeconds = ptr(int32(0))
			e.Spec.DestinationConfig = &lambda.EventSourceMappingDestinationConfig{OnFailure: nats("failed")}
		})),
		reject("parallelizationFactor 0", natsESM(func(e *lambda.EventSourceMapping) { e.Spec.ParallelizationFactor = ptr(int32(0)) }),
			"spec.parallelizationFactor", "greater than or equal to 1"),
		reject("parallelizationFactor 11", natsESM(func(e *lambda.EventSourceMapping) { e.Spec.ParallelizationFactor = ptr(int32(11)) }),
			"spec.parallelizationFactor", "less than or equal to 10"),
		reject("maximumRecordAgeInSeconds -2", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.MaximumRecordAgeInSeconds = ptr(int32(-2)) }),
			"spec.maximumRecordAgeInSeconds", "greater than or equal to -1"),
		reject("maximumRecordAgeInSeconds 604801", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.MaximumRecordAgeInSeconds = ptr(int32(604801)) }),
			"spec.maximumRecordAgeInSeconds", "less than or equal to 604800"),
		reject("maximumRetryAttempts -2", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.MaximumRetryAttempts = ptr(int32(-2)) }),
			"spec.maximumRetryAttempts", "greater than or equal to -1"),
		reject("maximumRetryAttempts 10001", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.MaximumRetryAttempts = ptr(int32(10001)) }),
			"spec.maximumRetryAttempts", "less than or equal to 10000"),
		reject("tumblingWindowInSeconds 60 (tumbling windows are not implemented)", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.TumblingWindowInSeconds = ptr(int32(60)) }),
			"spec.tumblingWindowInSeconds", "tumblingWindowInSeconds is not supported by klambda"),
		reject("tumblingWindowInSeconds 901", kafkaESM(func(e *lambda.EventSourceMapping) { e.Spec.TumblingWindowInSeconds = ptr(int32(901)) }),
			"spec.tumblingWindowInSeconds", "less than or equal to 900"),
		reject("bisectBatchOnFunctionError on SQS", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.BisectBatchOnFunctionError = ptr(true) }),
			"bisectBatchOnFunctionError", streamsOnly),
		reject("maximumRetryAttempts on RabbitMQ", rabbitESM(func(e *lambda.EventSourceMapping) { e.Spec.MaximumRetryAttempts = ptr(int32(3)) }),
			"maximumRetryAttempts", streamsOnly),
		reject("on-failure destination on SQS", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.DestinationConfig = &lambda.EventSourceMappingDestinationConfig{OnFailure: nats("failed")}
		}), "destinationConfig", streamsOnly),
		reject("on-failure destination with two targets", kafkaESM(func(e *lambda.EventSourceMapping) {
			d := nats("failed")
			d.SQS = &lambda.SQSQueue{QueueURL: "http://sqs/q"}
			e.Spec.DestinationConfig = &lambda.EventSourceMappingDestinationConfig{OnFailure: d}
		}), "spec.destinationConfig.onFailure", "exactly one of function, nats, kafka and sqs"),

		// Response types, filters, scaling.
		accept("ReportBatchItemFailures on SQS", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.FunctionResponseTypes = []lambda.FunctionResponseType{lambda.FunctionResponseTypeReportBatchItemFailures}
		})),
		reject("unknown function response type", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.FunctionResponseTypes = []lambda.FunctionResponseType{"ReportAll"}
		}), "spec.functionResponseTypes[0]", `Unsupported value: "ReportAll"`),
		reject("two function response types", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.FunctionResponseTypes = []lambda.FunctionResponseType{"ReportBatchItemFailures", "ReportBatchItemFailures"}
		}), "spec.functionResponseTypes", "must have at most 1 item"),
		accept("five filters", sqsESM(filters(`{"body":{"a":[1]}}`, `{"body":{"b":[2]}}`, `{}`, ` {"attributes": {"x": ["y"]}} `, "{\n\"a\": [\"b\"]\n}"))),
		reject("six filters", sqsESM(filters(`{}`, `{}`, `{}`, `{}`, `{}`, `{}`)),
			"spec.filterCriteria.filters", "must have at most 5 items"),
		reject("filter pattern that isn't a JSON object", sqsESM(filters(`["body"]`)),
			"spec.filterCriteria.filters[0].pattern", "pattern must be a JSON object"),
		reject("filter pattern over 4096", sqsESM(filters(`{"body":"`+strings.Repeat("x", 4090)+`"}`)),
			"spec.filterCriteria.filters[0].pattern", "may not be more than 4096"),
		accept("SQS maximumConcurrency 2 to 1000", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.ScalingConfig = &lambda.ScalingConfig{MaximumConcurrency: ptr(int32(1000))}
		})),
		reject("maximumConcurrency 1", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.ScalingConfig = &lambda.ScalingConfig{MaximumConcurrency: ptr(int32(1))}
		}), "spec.scalingConfig.maximumConcurrency", "greater than or equal to 2"),
		reject("maximumConcurrency 1001", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.ScalingConfig = &lambda.ScalingConfig{MaximumConcurrency: ptr(int32(1001))}
		}), "spec.scalingConfig.maximumConcurrency", "less than or equal to 1000"),
		reject("scalingConfig on Kafka", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.ScalingConfig = &lambda.ScalingConfig{MaximumConcurrency: ptr(int32(5))}
		}), "spec.scalingConfig", "scalingConfig is only supported for SQS sources"),

		// Access configurations and the Kafka consumer group.
		accept("Kafka SCRAM, TLS and CA", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{
				{Type: lambda.SourceAccessSASLSCRAM256Auth, SecretRef: &lambda.SecretReference{Name: "scram"}},
				{Type: lambda.SourceAccessServerRootCACertificate, SecretRef: &lambda.SecretReference{Name: "ca"}},
			}
		})),
		reject("sourceAccessConfigurations on SQS", sqsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{{Type: lambda.SourceAccessBasicAuth, SecretRef: &lambda.SecretReference{Name: "x"}}}
		}), "spec.sourceAccessConfigurations", "sourceAccessConfigurations are not supported for SQS sources"),
		reject("VIRTUAL_HOST on Kafka", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{{Type: lambda.SourceAccessVirtualHost, URI: "/"}}
		}), "spec.sourceAccessConfigurations", "VIRTUAL_HOST is only supported for RabbitMQ sources"),
		reject("SASL/SCRAM on RabbitMQ", rabbitESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{{Type: lambda.SourceAccessSASLSCRAM512Auth, SecretRef: &lambda.SecretReference{Name: "x"}}}
		}), "spec.sourceAccessConfigurations", "SASL_SCRAM_256_AUTH and SASL_SCRAM_512_AUTH are only supported for Kafka sources"),
		reject("BASIC_AUTH without a Secret", natsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{{Type: lambda.SourceAccessBasicAuth}}
		}), "spec.sourceAccessConfigurations[0]", "every other type takes secretRef"),
		reject("VIRTUAL_HOST without uri", rabbitESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations[1].URI = ""
		}), "spec.sourceAccessConfigurations[1]", "VIRTUAL_HOST takes uri"),
		reject("two configurations of one type", rabbitESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = append(e.Spec.SourceAccessConfigurations, lambda.SourceAccessConfiguration{Type: lambda.SourceAccessVirtualHost, URI: "/x"})
		}), "spec.sourceAccessConfigurations[2]", "Duplicate value"),
		reject("VPC_SUBNET access type", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = []lambda.SourceAccessConfiguration{{Type: "VPC_SUBNET", SecretRef: &lambda.SecretReference{Name: "x"}}}
		}), "spec.sourceAccessConfigurations[0].type", `Unsupported value: "VPC_SUBNET"`),
		reject("consumerGroupId over 200", kafkaESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedKafkaEventSourceConfig = &lambda.SelfManagedKafkaEventSourceConfig{ConsumerGroupID: strings.Repeat("g", 201)}
		}), "spec.selfManagedKafkaEventSourceConfig.consumerGroupId", "may not be more than 200"),
		reject("Kafka consumer group on NATS", natsESM(func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedKafkaEventSourceConfig = &lambda.SelfManagedKafkaEventSourceConfig{ConsumerGroupID: "g"}
		}), "spec.selfManagedKafkaEventSourceConfig", "selfManagedKafkaEventSourceConfig is only valid with a Kafka source"),
		reject("SQS queue URL that isn't a URL", sqsESM(func(e *lambda.EventSourceMapping) { e.Spec.SQS.QueueURL = "jobs" }),
			"spec.sqs.queueUrl", "should match"),
		reject("RabbitMQ broker URL that isn't AMQP", rabbitESM(func(e *lambda.EventSourceMapping) { e.Spec.RabbitMQ.BrokerURL = "http://rabbitmq:15672" }),
			"spec.rabbitMQ.brokerUrl", "should match"),
		reject("NATS without servers", natsESM(func(e *lambda.EventSourceMapping) { e.Spec.NATSJetStream.Servers = nil }),
			"spec.natsJetStream.servers", "Required value"),
	})
}

func TestEventSourceMappingDefaults(t *testing.T) {
	ns := newNamespace(t)
	e := sqsESM()
	e.Namespace = ns
	if err := k8s.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.Spec.Enabled == nil || !*e.Spec.Enabled {
		t.Errorf("enabled should default to true, got %v", e.Spec.Enabled)
	}
	if e.Spec.BatchSize != nil {
		t.Errorf("batchSize should stay unset (the source's default), got %d", *e.Spec.BatchSize)
	}
	countCases(1)
}

func TestEventSourceMappingUpdates(t *testing.T) {
	const kafkaCreateOnly = "can't be changed after a Kafka event source mapping is created"
	runUpdateChecks(t, []updateCheck{
		updateTo("Kafka topics are create-only", kafkaESM(), func(e *lambda.EventSourceMapping) { e.Spec.Topics = []string{"other"} },
			"spec", kafkaCreateOnly),
		updateTo("Kafka startingPosition is create-only", kafkaESM(), func(e *lambda.EventSourceMapping) { e.Spec.StartingPosition = lambda.StartingPositionLatest },
			"spec", kafkaCreateOnly),
		updateTo("Kafka bootstrap servers are create-only", kafkaESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers = []string{"kafka-1:9092"}
		}, "spec", kafkaCreateOnly),
		updateTo("Kafka consumer group is create-only", kafkaESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.SelfManagedKafkaEventSourceConfig = &lambda.SelfManagedKafkaEventSourceConfig{ConsumerGroupID: "g"}
		}, "spec", kafkaCreateOnly),
		updateTo("Kafka batch settings can change", kafkaESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.BatchSize = ptr(int32(1000))
			e.Spec.Enabled = ptr(false)
			filters(`{"value":{"a":["b"]}}`)(e)
		}),
		updateTo("VIRTUAL_HOST can't change", rabbitESM(), func(e *lambda.EventSourceMapping) { e.Spec.SourceAccessConfigurations[1].URI = "/other" },
			"spec.sourceAccessConfigurations", "VIRTUAL_HOST can't be changed"),
		updateTo("VIRTUAL_HOST can't be removed", rabbitESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations = e.Spec.SourceAccessConfigurations[:1]
		}, "spec.sourceAccessConfigurations", "VIRTUAL_HOST can't be changed"),
		updateTo("RabbitMQ credentials can change", rabbitESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.SourceAccessConfigurations[0].SecretRef.Name = "rotated"
		}),
		updateTo("SQS queue can't change", sqsESM(), func(e *lambda.EventSourceMapping) { e.Spec.SQS.QueueURL = "http://elasticmq:9324/000000000000/other" },
			"spec.sqs.queueUrl", "sqs.queueUrl can't be changed"),
		updateTo("the kind of source can't change", sqsESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.SQS = nil
			e.Spec.NATSJetStream = &lambda.NATSJetStreamSource{Servers: []string{"nats://nats:4222"}, Stream: "S"}
			e.Spec.StartingPosition = lambda.StartingPositionLatest
		}, "spec", "the kind of event source can't be changed"),
		updateTo("NATS stream can't change", natsESM(), func(e *lambda.EventSourceMapping) { e.Spec.NATSJetStream.Stream = "OTHER" },
			"spec", "natsJetStream.stream and startingPosition can't be changed"),
		updateTo("SQS batching and scaling can change", sqsESM(), func(e *lambda.EventSourceMapping) {
			e.Spec.BatchSize = ptr(int32(100))
			e.Spec.MaximumBatchingWindowInSeconds = ptr(int32(3))
			e.Spec.ScalingConfig = &lambda.ScalingConfig{MaximumConcurrency: ptr(int32(20))}
		}),
	})
}
