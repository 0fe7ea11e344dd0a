package events

import (
	"time"
)

// Conditions of an on-failure record: why the records were discarded.
const (
	ConditionRetryAttemptsExhausted     = "RetryAttemptsExhausted"
	ConditionRecordAgeExceeded          = "RecordAgeExceeded"
	ConditionMaximumPayloadSizeExceeded = "MaximumPayloadSizeExceeded"
)

// OnFailureRecordVersion is the version of the record format.
const OnFailureRecordVersion = "1.0"

// OnFailureRecord is what an event source mapping sends to its on-failure destination when
// it discards records. It carries pointers to the records (positions, times, counts), not the
// records themselves, so the destination's size limit never bites and the data stays in the
// source. Exactly one of the *BatchInfo fields is set.
type OnFailureRecord struct {
	RequestContext OnFailureRequestContext `json:"requestContext"`
	// ResponseContext is nil (null) when the function was never given the records, e.g. a
	// record too large to send (MaximumPayloadSizeExceeded).
	ResponseContext *OnFailureResponseContext `json:"responseContext"`
	Version         string                    `json:"version"`
	Timestamp       string                    `json:"timestamp"`

	KinesisBatchInfo   *StreamBatchInfo   `json:"KinesisBatchInfo,omitempty"`
	DDBStreamBatchInfo *StreamBatchInfo   `json:"DDBStreamBatchInfo,omitempty"`
	KafkaBatchInfo     *KafkaBatchInfo    `json:"KafkaBatchInfo,omitempty"`
	SQSBatchInfo       *SQSBatchInfo      `json:"SQSBatchInfo,omitempty"`
	RabbitMQBatchInfo  *RabbitMQBatchInfo `json:"RabbitMQBatchInfo,omitempty"`
	NATSBatchInfo      *NATSBatchInfo     `json:"NATSBatchInfo,omitempty"`
}

// OnFailureRequestContext says which invocation failed and why the records were discarded.
type OnFailureRequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// OnFailureResponseContext is the last invocation's outcome.
type OnFailureResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// FormatTimestamp writes a time as the record's timestamps are written:
// "2019-11-14T00:38:06.021Z" (UTC, milliseconds).
func FormatTimestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// StreamBatchInfo is Lambda's KinesisBatchInfo / DDBStreamBatchInfo.
type StreamBatchInfo struct {
	ShardID                         string `json:"shardId"`
	StartSequenceNumber             string `json:"startSequenceNumber"`
	EndSequenceNumber               string `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  string `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int    `json:"batchSize"`
	StreamARN                       string `json:"streamArn"`
}

// KafkaBatchInfo is Lambda's KafkaBatchInfo: per "<topic>-<partition>", the range of offsets
// discarded.
type KafkaBatchInfo struct {
	BatchSize        int                            `json:"batchSize"`
	EventSourceARN   string                         `json:"eventSourceArn,omitempty"`
	BootstrapServers string                         `json:"bootstrapServers,omitempty"`
	PayloadSize      int                            `json:"payloadSize"` // bytes
	RecordsInfo      map[string]KafkaPartitionRange `json:"recordsInfo"`
}

// KafkaPartitionRange is the discarded range of one partition. Offsets are strings, as in
// Lambda's record.
type KafkaPartitionRange struct {
	FirstRecordOffset    string `json:"firstRecordOffset"`
	LastRecordOffset     string `json:"lastRecordOffset"`
	FirstRecordTimestamp string `json:"firstRecordTimestamp"`
	LastRecordTimestamp  string `json:"lastRecordTimestamp"`
}

// SQSBatchInfo is klambda's equivalent for SQS: queue messages have no positions, so the
// pointers are their message IDs (the messages themselves stay in the queue, or its DLQ).
type SQSBatchInfo struct {
	BatchSize      int      `json:"batchSize"`
	EventSourceARN string   `json:"eventSourceArn"`
	PayloadSize    int      `json:"payloadSize"`
	MessageIDs     []string `json:"messageIds"`
	// Sent times of the oldest and newest message (SentTimestamp).
	FirstMessageTimestamp string `json:"firstMessageTimestamp"`
	LastMessageTimestamp  string `json:"lastMessageTimestamp"`
}

// RabbitMQBatchInfo is klambda's equivalent for RabbitMQ, per "<queue>::<vhost>".
type RabbitMQBatchInfo struct {
	BatchSize      int                          `json:"batchSize"`
	EventSourceARN string                       `json:"eventSourceArn"`
	PayloadSize    int                          `json:"payloadSize"`
	MessagesInfo   map[string]RabbitMQQueueInfo `json:"messagesInfo"`
}

// RabbitMQQueueInfo points at the discarded messages of one queue: their messageId
// properties (messages without one are only counted).
type RabbitMQQueueInfo struct {
	MessageCount          int      `json:"messageCount"`
	MessageIDs            []string `json:"messageIds"`
	FirstMessageTimestamp string   `json:"firstMessageTimestamp,omitempty"`
	LastMessageTimestamp  string   `json:"lastMessageTimestamp,omitempty"`
}

// NATSBatchInfo is klambda's equivalent for NATS JetStream, per stream: the range of stream
// sequences discarded.
type NATSBatchInfo struct {
	BatchSize      int                        `json:"batchSize"`
	EventSourceARN string                     `json:"eventSourceArn,omitempty"`
	Servers        string                     `json:"servers"`
	PayloadSize    int                        `json:"payloadSize"`
	RecordsInfo    map[string]NATSStreamRange `json:"recordsInfo"`
}

// NATSStreamRange is the discarded range of one stream. Sequences are strings, like Kafka
// offsets in KafkaPartitionRange.
type NATSStreamRange struct {
	FirstRecordSequence  string `json:"firstRecordSequence"`
	LastRecordSequence   string `json:"lastRecordSequence"`
	FirstRecordTimestamp string `json:"firstRecordTimestamp"`
	LastRecordTimestamp  string `json:"lastRecordTimestamp"`
}
