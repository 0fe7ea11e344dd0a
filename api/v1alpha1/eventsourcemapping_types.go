package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StartingPosition is where a stream source starts reading.
// +kubebuilder:validation:Enum=TRIM_HORIZON;LATEST;AT_TIMESTAMP
type StartingPosition string

const (
	StartingPositionTrimHorizon StartingPosition = "TRIM_HORIZON"
	StartingPositionLatest      StartingPosition = "LATEST"
	StartingPositionAtTimestamp StartingPosition = "AT_TIMESTAMP"
)

// FunctionResponseType is Lambda's FunctionResponseTypes item.
// +kubebuilder:validation:Enum=ReportBatchItemFailures
type FunctionResponseType string

// FunctionResponseTypeReportBatchItemFailures lets the function report which records failed.
const FunctionResponseTypeReportBatchItemFailures FunctionResponseType = "ReportBatchItemFailures"

// SourceAccessType is Lambda's SourceAccessConfiguration Type, without the VPC types (pods are
// on the cluster network already).
// +kubebuilder:validation:Enum=BASIC_AUTH;SASL_SCRAM_256_AUTH;SASL_SCRAM_512_AUTH;CLIENT_CERTIFICATE_TLS_AUTH;SERVER_ROOT_CA_CERTIFICATE;VIRTUAL_HOST
type SourceAccessType string

const (
	SourceAccessBasicAuth                SourceAccessType = "BASIC_AUTH"
	SourceAccessSASLSCRAM256Auth         SourceAccessType = "SASL_SCRAM_256_AUTH"
	SourceAccessSASLSCRAM512Auth         SourceAccessType = "SASL_SCRAM_512_AUTH"
	SourceAccessClientCertificateTLSAuth SourceAccessType = "CLIENT_CERTIFICATE_TLS_AUTH"
	SourceAccessServerRootCACertificate  SourceAccessType = "SERVER_ROOT_CA_CERTIFICATE"
	SourceAccessVirtualHost              SourceAccessType = "VIRTUAL_HOST"
)

// SourceAccessConfiguration is how the poller authenticates to the source, with a Secret in
// place of Lambda's Secrets Manager ARN:
//   - BASIC_AUTH (Kafka SASL/PLAIN, RabbitMQ, NATS): keys username and password;
//   - SASL_SCRAM_256_AUTH, SASL_SCRAM_512_AUTH (Kafka): keys username and password;
//   - CLIENT_CERTIFICATE_TLS_AUTH (Kafka, RabbitMQ, NATS): keys tls.crt and tls.key;
//   - SERVER_ROOT_CA_CERTIFICATE (Kafka, RabbitMQ, NATS): key ca.crt;
//   - VIRTUAL_HOST (RabbitMQ): uri is the virtual host name, no Secret.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'VIRTUAL_HOST' ? (has(self.uri) && !has(self.secretRef)) : (has(self.secretRef) && !has(self.uri))",message="VIRTUAL_HOST takes uri (the virtual host); every other type takes secretRef"
type SourceAccessConfiguration struct {
	// type of the configuration.
	// +required
	Type SourceAccessType `json:"type"`

	// secretRef names the Secret holding the credentials.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// uri: the RabbitMQ virtual host for VIRTUAL_HOST (1–200 characters).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	URI string `json:"uri,omitempty"`
}

// SelfManagedEventSource is Lambda's SelfManagedEventSource: a Kafka cluster.
type SelfManagedEventSource struct {
	// endpoints of the cluster.
	// +required
	Endpoints KafkaEndpoints `json:"endpoints"`
}

// KafkaEndpoints is Lambda's SelfManagedEventSource.Endpoints.
type KafkaEndpoints struct {
	// kafkaBootstrapServers: host:port pairs (1–10), Lambda's KAFKA_BOOTSTRAP_SERVERS.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=300
	// +kubebuilder:validation:items:Pattern=`^[^\s:]+:[0-9]{1,5}$`
	KafkaBootstrapServers []string `json:"kafkaBootstrapServers"`
}

// SelfManagedKafkaEventSourceConfig is Lambda's SelfManagedKafkaEventSourceConfig.
type SelfManagedKafkaEventSourceConfig struct {
	// consumerGroupId of the poller (1–200 characters); defaults to the mapping's UUID.
	// If the group exists, its committed offsets win over startingPosition.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9-/*:_+=.@-]+$`
	ConsumerGroupID string `json:"consumerGroupId,omitempty"`
}

// RabbitMQSource is a RabbitMQ broker (AMQP 0-9-1), in place of an Amazon MQ broker ARN.
// The queue is in queues, the virtual host and credentials in sourceAccessConfigurations
// (VIRTUAL_HOST, BASIC_AUTH), as in Lambda.
type RabbitMQSource struct {
	// brokerUrl: amqp://host:5672 or amqps://host:5671, without credentials.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^amqps?://[^\s]+$`
	BrokerURL string `json:"brokerUrl"`
}

// NATSJetStreamSource is a NATS JetStream stream, read by a durable pull consumer. Credentials
// go in sourceAccessConfigurations (BASIC_AUTH, CLIENT_CERTIFICATE_TLS_AUTH, SERVER_ROOT_CA_CERTIFICATE).
type NATSJetStreamSource struct {
	// servers: NATS URLs (1–10), e.g. nats://nats.nats.svc:4222.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^(nats|tls|wss?)://[^\s]+$`
	Servers []string `json:"servers"`

	// stream name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\s.*>/\\]+$`
	Stream string `json:"stream"`

	// subject filters the stream's messages (wildcards allowed); empty means all of them.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	Subject string `json:"subject,omitempty"`

	// durableName of the consumer; defaults to the mapping's UUID.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\s.*>/\\]+$`
	DurableName string `json:"durableName,omitempty"`
}

// Filter is one of Lambda's event filter patterns.
type Filter struct {
	// pattern: an EventBridge-style JSON object, as a string (at most 4096 characters).
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule=`self.matches('^\\s*\\{[\\s\\S]*\\}\\s*$')`,message="pattern must be a JSON object"
	Pattern string `json:"pattern"`
}

// FilterCriteria is Lambda's FilterCriteria: a record is processed if any filter matches.
type FilterCriteria struct {
	// filters (at most 5).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	Filters []Filter `json:"filters,omitempty"`
}

// ScalingConfig is Lambda's ScalingConfig (SQS sources).
type ScalingConfig struct {
	// maximumConcurrency of invocations by this mapping (2–1000).
	// +optional
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=1000
	MaximumConcurrency *int32 `json:"maximumConcurrency,omitempty"`
}

// EventSourceMappingDestinationConfig is where records of discarded batches go.
type EventSourceMappingDestinationConfig struct {
	// onFailure receives a record of each batch discarded after its last attempt.
	// +optional
	OnFailure *Destination `json:"onFailure,omitempty"`
}

// EventSourceMappingSpec is Lambda's CreateEventSourceMapping request, with the source
// given as exactly one of selfManagedEventSource (Kafka), sqs, rabbitMQ and natsJetStream.
// Kafka and NATS JetStream are stream sources; SQS and RabbitMQ are queue sources.
//
// +kubebuilder:validation:XValidation:rule="[has(self.selfManagedEventSource), has(self.sqs), has(self.rabbitMQ), has(self.natsJetStream)].filter(x, x).size() == 1",message="exactly one of selfManagedEventSource, sqs, rabbitMQ and natsJetStream must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.sqs) || !self.sqs.queueUrl.endsWith('.fifo') || !has(self.batchSize) || self.batchSize <= 10",fieldPath=".batchSize",message="batchSize: the maximum batch size for a FIFO queue is 10"
// +kubebuilder:validation:XValidation:rule="!has(self.sqs) || !self.sqs.queueUrl.endsWith('.fifo') || !has(self.maximumBatchingWindowInSeconds) || self.maximumBatchingWindowInSeconds == 0",fieldPath=".maximumBatchingWindowInSeconds",message="maximumBatchingWindowInSeconds is not supported for FIFO queues"
// +kubebuilder:validation:XValidation:rule="!has(self.sqs) || !has(self.batchSize) || self.batchSize <= 10 || (has(self.maximumBatchingWindowInSeconds) && self.maximumBatchingWindowInSeconds >= 1)",fieldPath=".maximumBatchingWindowInSeconds",message="maximumBatchingWindowInSeconds: for a batch size over 10, you must also set maximumBatchingWindowInSeconds to at least 1 second"
// +kubebuilder:validation:XValidation:rule="!(has(self.selfManagedEventSource) || has(self.natsJetStream)) || has(self.startingPosition)",fieldPath=".startingPosition",message="startingPosition is required for stream sources (Kafka, NATS JetStream)"
// +kubebuilder:validation:XValidation:rule="!has(self.startingPosition) || has(self.selfManagedEventSource) || has(self.natsJetStream)",fieldPath=".startingPosition",message="startingPosition is only supported for stream sources (Kafka, NATS JetStream)"
// +kubebuilder:validation:XValidation:rule="!has(self.selfManagedEventSource) || !has(self.startingPosition) || self.startingPosition != 'AT_TIMESTAMP'",fieldPath=".startingPosition",message="startingPosition: AT_TIMESTAMP is not supported for Kafka sources"
// +kubebuilder:validation:XValidation:rule="(has(self.startingPosition) && self.startingPosition == 'AT_TIMESTAMP') == has(self.startingPositionTimestamp)",fieldPath=".startingPositionTimestamp",message="startingPositionTimestamp is required with, and only valid with, startingPosition AT_TIMESTAMP"
// +kubebuilder:validation:XValidation:rule="has(self.topics) == has(self.selfManagedEventSource)",fieldPath=".topics",message="topics is required for, and only valid with, a Kafka source (selfManagedEventSource)"
// +kubebuilder:validation:XValidation:rule="has(self.queues) == has(self.rabbitMQ)",fieldPath=".queues",message="queues is required for, and only valid with, a RabbitMQ source"
// +kubebuilder:validation:XValidation:rule="has(self.selfManagedKafkaEventSourceConfig) ? has(self.selfManagedEventSource) : true",fieldPath=".selfManagedKafkaEventSourceConfig",message="selfManagedKafkaEventSourceConfig is only valid with a Kafka source (selfManagedEventSource)"
// +kubebuilder:validation:XValidation:rule="has(self.selfManagedEventSource) || has(self.natsJetStream) || !(has(self.parallelizationFactor) || has(self.tumblingWindowInSeconds) || has(self.bisectBatchOnFunctionError) || has(self.maximumRecordAgeInSeconds) || has(self.maximumRetryAttempts) || has(self.destinationConfig))",message="parallelizationFactor, tumblingWindowInSeconds, bisectBatchOnFunctionError, maximumRecordAgeInSeconds, maximumRetryAttempts and destinationConfig are only supported for stream sources (Kafka, NATS JetStream)"
// +kubebuilder:validation:XValidation:rule="!has(self.scalingConfig) || has(self.sqs)",fieldPath=".scalingConfig",message="scalingConfig is only supported for SQS sources"
// +kubebuilder:validation:XValidation:rule="!has(self.sqs) || !has(self.sourceAccessConfigurations) || size(self.sourceAccessConfigurations) == 0",fieldPath=".sourceAccessConfigurations",message="sourceAccessConfigurations are not supported for SQS sources: use sqs.credentials"
// +kubebuilder:validation:XValidation:rule="has(self.rabbitMQ) || !has(self.sourceAccessConfigurations) || self.sourceAccessConfigurations.all(c, c.type != 'VIRTUAL_HOST')",fieldPath=".sourceAccessConfigurations",message="sourceAccessConfigurations: VIRTUAL_HOST is only supported for RabbitMQ sources"
// +kubebuilder:validation:XValidation:rule="has(self.selfManagedEventSource) || !has(self.sourceAccessConfigurations) || self.sourceAccessConfigurations.all(c, c.type != 'SASL_SCRAM_256_AUTH' && c.type != 'SASL_SCRAM_512_AUTH')",fieldPath=".sourceAccessConfigurations",message="sourceAccessConfigurations: SASL_SCRAM_256_AUTH and SASL_SCRAM_512_AUTH are only supported for Kafka sources"
// +kubebuilder:validation:XValidation:rule="[has(self.selfManagedEventSource), has(self.sqs), has(self.rabbitMQ), has(self.natsJetStream)] == [has(oldSelf.selfManagedEventSource), has(oldSelf.sqs), has(oldSelf.rabbitMQ), has(oldSelf.natsJetStream)]",message="the kind of event source can't be changed: create a new EventSourceMapping"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.selfManagedEventSource) || !has(self.selfManagedEventSource) || (self.selfManagedEventSource == oldSelf.selfManagedEventSource && self.topics == oldSelf.topics && self.startingPosition == oldSelf.startingPosition && has(self.selfManagedKafkaEventSourceConfig) == has(oldSelf.selfManagedKafkaEventSourceConfig) && (!has(self.selfManagedKafkaEventSourceConfig) || self.selfManagedKafkaEventSourceConfig == oldSelf.selfManagedKafkaEventSourceConfig))",message="selfManagedEventSource, topics, startingPosition and selfManagedKafkaEventSourceConfig can't be changed after a Kafka event source mapping is created"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.sqs) || !has(self.sqs) || self.sqs.queueUrl == oldSelf.sqs.queueUrl",fieldPath=".sqs.queueUrl",message="sqs.queueUrl can't be changed after the event source mapping is created"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.rabbitMQ) || !has(self.rabbitMQ) || (self.rabbitMQ.brokerUrl == oldSelf.rabbitMQ.brokerUrl && self.queues == oldSelf.queues)",message="rabbitMQ.brokerUrl and queues can't be changed after the event source mapping is created"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.natsJetStream) || !has(self.natsJetStream) || (self.natsJetStream.stream == oldSelf.natsJetStream.stream && self.startingPosition == oldSelf.startingPosition)",message="natsJetStream.stream and startingPosition can't be changed after the event source mapping is created"
// +kubebuilder:validation:XValidation:rule="(!has(oldSelf.sourceAccessConfigurations) || oldSelf.sourceAccessConfigurations.all(o, o.type != 'VIRTUAL_HOST' || (has(self.sourceAccessConfigurations) && self.sourceAccessConfigurations.exists(c, c.type == 'VIRTUAL_HOST' && c.uri == o.uri)))) && (!has(self.sourceAccessConfigurations) || self.sourceAccessConfigurations.all(c, c.type != 'VIRTUAL_HOST' || (has(oldSelf.sourceAccessConfigurations) && oldSelf.sourceAccessConfigurations.exists(o, o.type == 'VIRTUAL_HOST' && o.uri == c.uri))))",fieldPath=".sourceAccessConfigurations",message="sourceAccessConfigurations: VIRTUAL_HOST can't be changed after the event source mapping is created"
type EventSourceMappingSpec struct {
	// functionName: the Function to invoke, as a name, name:qualifier (version or alias), or
	// ARN (1–140 characters). Unqualified means $LATEST.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=140
	// +kubebuilder:validation:Pattern=`^(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?$`
	FunctionName string `json:"functionName"`

	// enabled: false pauses polling (default true).
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// serviceAccountName: the ServiceAccount of this namespace whose permissions the mapping
	// uses, in place of Lambda's execution role: before a poller starts, the pollers check
	// (SubjectAccessReview) that it may invoke the function (and an on-failure function
	// destination) and get every Secret the mapping names; if not, the mapping is Disabled,
	// Ready=False with reason AccessDenied, and nothing is polled. Empty means the
	// namespace's default ServiceAccount. Whoever may create mappings in a namespace may name
	// any of its ServiceAccounts here, so grant a ServiceAccount only what its mappings need.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// batchSize: the most records per invocation (1–10000; at most 10 for a FIFO queue).
	// Unset means Lambda's default for the source: 10 for SQS, 100 for the others.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	BatchSize *int32 `json:"batchSize,omitempty"`

	// maximumBatchingWindowInSeconds to gather records before invoking (0–300, default 0);
	// SQS with batchSize over 10 requires at least 1; not for FIFO queues.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=300
	MaximumBatchingWindowInSeconds *int32 `json:"maximumBatchingWindowInSeconds,omitempty"`

	// startingPosition: required for stream sources (Kafka, NATS JetStream), not supported for
	// queues. AT_TIMESTAMP (NATS JetStream only) needs startingPositionTimestamp.
	// +optional
	StartingPosition StartingPosition `json:"startingPosition,omitempty"`

	// startingPositionTimestamp: where AT_TIMESTAMP starts reading (RFC 3339, where Lambda
	// takes Unix seconds).
	// +optional
	StartingPositionTimestamp *metav1.Time `json:"startingPositionTimestamp,omitempty"`

	// parallelizationFactor: concurrent batches per partition (1–10, default 1). Streams only.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	ParallelizationFactor *int32 `json:"parallelizationFactor,omitempty"`

	// maximumRecordAgeInSeconds: discard older records (-1 = infinite, the default; up to
	// 604800). Streams only.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	// +kubebuilder:validation:Maximum=604800
	MaximumRecordAgeInSeconds *int32 `json:"maximumRecordAgeInSeconds,omitempty"`

	// maximumRetryAttempts after a function error (-1 = infinite, the default; up to 10000).
	// Streams only.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	// +kubebuilder:validation:Maximum=10000
	MaximumRetryAttempts *int32 `json:"maximumRetryAttempts,omitempty"`

	// bisectBatchOnFunctionError splits a failed batch in two and retries each half. Streams only.
	// +optional
	BisectBatchOnFunctionError *bool `json:"bisectBatchOnFunctionError,omitempty"`

	// destinationConfig: where records of discarded batches go. Streams only.
	// +optional
	DestinationConfig *EventSourceMappingDestinationConfig `json:"destinationConfig,omitempty"`

	// tumblingWindowInSeconds: Lambda's window for aggregating state across invocations
	// (0–900). Streams only. klambda does not implement tumbling windows yet: only 0 (no
	// window) is accepted, anything else is refused rather than ignored.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=900
	// +kubebuilder:validation:XValidation:rule="self == 0",message="tumblingWindowInSeconds is not supported by klambda: tumbling windows (state carried between invocations, isFinalInvokeForWindow) are not implemented; remove the field or set it to 0"
	TumblingWindowInSeconds *int32 `json:"tumblingWindowInSeconds,omitempty"`

	// functionResponseTypes: [ReportBatchItemFailures] lets the function return the records
	// that failed ({"batchItemFailures":[{"itemIdentifier":"…"}]}).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1
	FunctionResponseTypes []FunctionResponseType `json:"functionResponseTypes,omitempty"`

	// topics: exactly one Kafka topic (1–249 characters). Kafka only, required.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=249
	// +kubebuilder:validation:items:Pattern=`^[^.]([a-zA-Z0-9\-_.]+)$`
	Topics []string `json:"topics,omitempty"`

	// queues: exactly one RabbitMQ queue (1–1000 characters). RabbitMQ only, required.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=1000
	// +kubebuilder:validation:items:Pattern=`^[\s\S]*\S[\s\S]*$`
	Queues []string `json:"queues,omitempty"`

	// filterCriteria: only records matching a filter are processed; the others are dropped
	// (deleted from SQS, committed past in streams).
	// +optional
	FilterCriteria *FilterCriteria `json:"filterCriteria,omitempty"`

	// scalingConfig caps the mapping's concurrency. SQS only.
	// +optional
	ScalingConfig *ScalingConfig `json:"scalingConfig,omitempty"`

	// sourceAccessConfigurations: credentials (Secrets) and the RabbitMQ virtual host, one per
	// type (at most 22). Not for SQS, whose credentials are in sqs.credentials.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=22
	SourceAccessConfigurations []SourceAccessConfiguration `json:"sourceAccessConfigurations,omitempty"`

	// selfManagedEventSource: read from a Kafka cluster. Create-only.
	// +optional
	SelfManagedEventSource *SelfManagedEventSource `json:"selfManagedEventSource,omitempty"`

	// selfManagedKafkaEventSourceConfig: the Kafka consumer group. Create-only.
	// +optional
	SelfManagedKafkaEventSourceConfig *SelfManagedKafkaEventSourceConfig `json:"selfManagedKafkaEventSourceConfig,omitempty"`

	// sqs: read from an SQS-compatible queue.
	// +optional
	SQS *SQSQueue `json:"sqs,omitempty"`

	// rabbitMQ: read from a RabbitMQ queue (the one in queues).
	// +optional
	RabbitMQ *RabbitMQSource `json:"rabbitMQ,omitempty"`

	// natsJetStream: read from a NATS JetStream stream.
	// +optional
	NATSJetStream *NATSJetStreamSource `json:"natsJetStream,omitempty"`
}

// EventSourceMappingState is Lambda's EventSourceMapping State.
// +kubebuilder:validation:Enum=Creating;Enabling;Enabled;Disabling;Disabled;Updating;Deleting
type EventSourceMappingState string

const (
	EventSourceMappingCreating  EventSourceMappingState = "Creating"
	EventSourceMappingEnabling  EventSourceMappingState = "Enabling"
	EventSourceMappingEnabled   EventSourceMappingState = "Enabled"
	EventSourceMappingDisabling EventSourceMappingState = "Disabling"
	EventSourceMappingDisabled  EventSourceMappingState = "Disabled"
	EventSourceMappingUpdating  EventSourceMappingState = "Updating"
	EventSourceMappingDeleting  EventSourceMappingState = "Deleting"
)

// EventSourceMappingStatus is Lambda's EventSourceMappingConfiguration response.
type EventSourceMappingStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// uuid identifies the mapping (Lambda's UUID; the default Kafka consumer group and NATS
	// durable name). It is the object's metadata.uid.
	// +optional
	UUID string `json:"uuid,omitempty"`

	// eventSourceMappingArn: arn:aws:lambda:<region>:<account>:event-source-mapping:<uuid>.
	// +optional
	EventSourceMappingARN string `json:"eventSourceMappingArn,omitempty"`

	// functionArn of the function invoked (qualified when functionName is).
	// +optional
	FunctionARN string `json:"functionArn,omitempty"`

	// state: Creating, Enabling, Enabled, Disabling, Disabled, Updating or Deleting.
	// +optional
	State EventSourceMappingState `json:"state,omitempty"`

	// stateTransitionReason: why the state last changed, e.g. "USER_INITIATED" or
	// ESM_CONFIG_NOT_VALID, EVENT_SOURCE_AUTHN_ERROR, EVENT_SOURCE_AUTHZ_ERROR, FUNCTION_CONFIG_NOT_VALID.
	// +optional
	StateTransitionReason string `json:"stateTransitionReason,omitempty"`

	// lastProcessingResult, e.g. "No records processed", "OK", "PROBLEM: Function call failed".
	// +optional
	LastProcessingResult string `json:"lastProcessingResult,omitempty"`

	// lastModified is when the mapping last changed.
	// +optional
	LastModified *metav1.Time `json:"lastModified,omitempty"`

	// conditions: Ready (in its desired state: Enabled and polling, or Disabled with reason
	// Disabled), Reconciling (a transition in progress), Stalled (invalid configuration,
	// access denied), each with its observedGeneration (docs/status.md).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// EventSourceMapping reads records from Kafka, an SQS-compatible queue, RabbitMQ or NATS
// JetStream and invokes a function with them in batches.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=esm,categories=klambda
// +kubebuilder:metadata:labels="app.kubernetes.io/name=klambda"
// +kubebuilder:printcolumn:name="Function",type=string,JSONPath=`.spec.functionName`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Enabled",type=boolean,JSONPath=`.spec.enabled`,priority=1
// +kubebuilder:printcolumn:name="Batch",type=integer,JSONPath=`.spec.batchSize`
// +kubebuilder:printcolumn:name="Last-Result",type=string,JSONPath=`.status.lastProcessingResult`,priority=1
// +kubebuilder:printcolumn:name="UUID",type=string,JSONPath=`.status.uuid`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EventSourceMapping struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EventSourceMappingSpec `json:"spec"`
	// +optional
	Status EventSourceMappingStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// EventSourceMappingList is a list of EventSourceMappings.
type EventSourceMappingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EventSourceMapping `json:"items"`
}

func init() {
	SchemeBuilder.Register(&EventSourceMapping{}, &EventSourceMappingList{})
}
