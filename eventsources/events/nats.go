package events

import (
	"encoding/json"
	"strings"
)

// EventSourceNATS is the eventSource of NATS JetStream batches, klambda's own source.
const EventSourceNATS = "klambda:nats"

// NATSEvent is the batch a function receives from a NATS JetStream stream; the package
// comment explains the shape. Records are grouped by stream name, in stream-sequence order.
type NATSEvent struct {
	EventSource    string                  `json:"eventSource"`
	EventSourceARN string                  `json:"eventSourceArn,omitempty"`
	Servers        string                  `json:"servers"`
	Records        map[string][]NATSRecord `json:"records"`
}

// NewNATSEvent starts an empty batch. eventSourceARN identifies the stream for the function
// (klambda uses "<first server>/<stream>").
func NewNATSEvent(servers []string, eventSourceARN string) *NATSEvent {
	return &NATSEvent{
		EventSource:    EventSourceNATS,
		EventSourceARN: eventSourceARN,
		Servers:        strings.Join(servers, ","),
		Records:        map[string][]NATSRecord{},
	}
}

// Add appends r under its stream.
func (e *NATSEvent) Add(r NATSRecord) {
	if e.Records == nil {
		e.Records = map[string][]NATSRecord{}
	}
	e.Records[r.Stream] = append(e.Records[r.Stream], r)
}

// NATSRecord is one JetStream message.
type NATSRecord struct {
	Stream       string      `json:"stream"`
	Subject      string      `json:"subject"`
	Sequence     uint64      `json:"sequence"`     // stream sequence: the record's position
	Timestamp    int64       `json:"timestamp"`    // Unix milliseconds, when the stream stored it
	NumDelivered uint64      `json:"numDelivered"` // 1 on first delivery
	Headers      NATSHeaders `json:"headers"`
	Data         []byte      `json:"data"` // base64
}

// NATSHeaders are NATS message headers, multi-valued; none marshals as {}.
type NATSHeaders map[string][]string

// MarshalJSON writes {} for no headers, never null.
func (h NATSHeaders) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string][]string(h))
}
