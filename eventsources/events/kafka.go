package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// eventSource values of Kafka batches.
const (
	EventSourceSelfManagedKafka = "SelfManagedKafka"
	EventSourceMSK              = "aws:kafka"
)

// Kafka timestamp types.
const (
	KafkaCreateTime    = "CREATE_TIME"
	KafkaLogAppendTime = "LOG_APPEND_TIME"
)

// KafkaEvent is the batch a function receives from Kafka. Records are grouped by
// "<topic>-<partition>" (see KafkaPartitionKey); within a group they are in offset order.
type KafkaEvent struct {
	EventSource      string                   `json:"eventSource"`
	EventSourceARN   string                   `json:"eventSourceArn,omitempty"`
	BootstrapServers string                   `json:"bootstrapServers,omitempty"`
	Records          map[string][]KafkaRecord `json:"records"`
}

// NewSelfManagedKafkaEvent starts an empty self-managed Kafka batch.
func NewSelfManagedKafkaEvent(bootstrapServers []string) *KafkaEvent {
	return &KafkaEvent{
		EventSource:      EventSourceSelfManagedKafka,
		BootstrapServers: strings.Join(bootstrapServers, ","),
		Records:          map[string][]KafkaRecord{},
	}
}

// Add appends r under its topic-partition key.
func (e *KafkaEvent) Add(r KafkaRecord) {
	if e.Records == nil {
		e.Records = map[string][]KafkaRecord{}
	}
	k := KafkaPartitionKey(r.Topic, r.Partition)
	e.Records[k] = append(e.Records[k], r)
}

// KafkaPartitionKey is the key of a partition's records: "<topic>-<partition>".
func KafkaPartitionKey(topic string, partition int32) string {
	return topic + "-" + strconv.FormatInt(int64(partition), 10)
}

// KafkaRecord is one Kafka record. Key and Value are raw bytes and marshal as base64; a nil
// key is left out and a nil value (a tombstone) is null.
type KafkaRecord struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"` // Unix milliseconds
	TimestampType string       `json:"timestampType"`
	Key           []byte       `json:"key,omitempty"`
	Value         []byte       `json:"value"`
	Headers       KafkaHeaders `json:"headers"`
}

// KafkaHeader is one record header.
type KafkaHeader struct {
	Key   string
	Value []byte
}

// KafkaHeaders marshal as Lambda writes them: a list of one-key objects whose value is the
// header's bytes as an array of numbers, [{"headerKey":[104,101]}]; none is []. The numbers
// are Java's signed bytes (-128..127), since Lambda's poller is Java and the runtime
// libraries (aws-lambda-go's JSONNumberBytes) decode them as int8.
type KafkaHeaders []KafkaHeader

// MarshalJSON writes [{"key":[signed byte,...]},...].
func (h KafkaHeaders) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, hd := range h {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(hd.Key)
		if err != nil {
			return nil, err
		}
		b.WriteByte('{')
		b.Write(k)
		b.WriteString(":")
		writeByteArray(&b, hd.Value)
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// UnmarshalJSON reads the form MarshalJSON writes, and unsigned bytes too.
func (h *KafkaHeaders) UnmarshalJSON(data []byte) error {
	var raw []map[string][]int
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("kafka headers: %w", err)
	}
	out := make(KafkaHeaders, 0, len(raw))
	for _, m := range raw {
		if len(m) != 1 {
			return fmt.Errorf("kafka headers: each header must be an object with one key, got %d", len(m))
		}
		for k, ints := range m {
			v, err := intsToBytes(ints)
			if err != nil {
				return fmt.Errorf("kafka header %q: %w", k, err)
			}
			out = append(out, KafkaHeader{Key: k, Value: v})
		}
	}
	*h = out
	return nil
}

func writeByteArray(b *bytes.Buffer, v []byte) {
	b.WriteByte('[')
	for i, c := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(int8(c))))
	}
	b.WriteByte(']')
}

func intsToBytes(ints []int) ([]byte, error) {
	out := make([]byte, len(ints))
	for i, n := range ints {
		if n < -128 || n > 255 {
			return nil, fmt.Errorf("byte value %d out of range", n)
		}
		out[i] = byte(n)
	}
	return out, nil
}
