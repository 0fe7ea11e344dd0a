package events

import (
	"encoding/json"
)

// EventSourceSQS is the eventSource of SQS records.
const EventSourceSQS = "aws:sqs"

// SQSEvent is the batch a function receives from an SQS queue.
type SQSEvent struct {
	Records []SQSMessage `json:"Records"`
}

// SQSMessage is one record of an SQSEvent.
type SQSMessage struct {
	MessageID         string               `json:"messageId"`
	ReceiptHandle     string               `json:"receiptHandle"`
	Body              string               `json:"body"`
	Attributes        SQSAttributes        `json:"attributes"`
	MessageAttributes SQSMessageAttributes `json:"messageAttributes"`
	MD5OfBody         string               `json:"md5OfBody"`
	EventSource       string               `json:"eventSource"`
	EventSourceARN    string               `json:"eventSourceARN"`
	AWSRegion         string               `json:"awsRegion"`
}

// SQSAttributes are the system attributes Lambda passes. Timestamps are Unix milliseconds as
// strings, as SQS returns them. The FIFO fields are set for FIFO queues only.
type SQSAttributes struct {
	ApproximateReceiveCount          string `json:"ApproximateReceiveCount"`
	SentTimestamp                    string `json:"SentTimestamp"`
	SenderID                         string `json:"SenderId"`
	ApproximateFirstReceiveTimestamp string `json:"ApproximateFirstReceiveTimestamp"`
	AWSTraceHeader                   string `json:"AWSTraceHeader,omitempty"`
	SequenceNumber                   string `json:"SequenceNumber,omitempty"`
	MessageGroupID                   string `json:"MessageGroupId,omitempty"`
	MessageDeduplicationID           string `json:"MessageDeduplicationId,omitempty"`
}

// SQSMessageAttributes are a message's user attributes; empty marshals as {} as in Lambda.
type SQSMessageAttributes map[string]SQSMessageAttribute

// MarshalJSON writes {} for no attributes, never null.
func (a SQSMessageAttributes) MarshalJSON() ([]byte, error) {
	if a == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]SQSMessageAttribute(a))
}

// SQSMessageAttribute is one user attribute in Lambda's form: the list fields are always
// present (empty), binary values are base64.
type SQSMessageAttribute struct {
	StringValue      *string  `json:"stringValue,omitempty"`
	BinaryValue      []byte   `json:"binaryValue,omitempty"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues [][]byte `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

// MarshalJSON writes the list fields as [] when empty.
func (a SQSMessageAttribute) MarshalJSON() ([]byte, error) {
	type plain SQSMessageAttribute
	p := plain(a)
	if p.StringListValues == nil {
		p.StringListValues = []string{}
	}
	if p.BinaryListValues == nil {
		p.BinaryListValues = [][]byte{}
	}
	return json.Marshal(p)
}
