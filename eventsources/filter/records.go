package filter

import (
	"encoding/json"
	"strconv"

	"github.com/klambda/klambda/eventsources/events"
)

// The From* functions give the filter's view of a record in its event shape: the data fields
// as bytes, every other field (as the function will see it) as metadata. Patterns therefore
// name fields exactly as they appear in the function's event, as Lambda's do.

// FromSQS views an SQS message: "body" is data.
func FromSQS(m events.SQSMessage) Record {
	return Record{Source: SourceSQS, Metadata: metadataOf(m, "body"), Data: map[string][]byte{"body": []byte(m.Body)}}
}

// FromKafka views a Kafka record: "key" and "value" are data (decoded bytes, not base64); a
// nil key or value is absent.
func FromKafka(r events.KafkaRecord) Record {
	data := map[string][]byte{}
	if r.Key != nil {
		data["key"] = r.Key
	}
	if r.Value != nil {
		data["value"] = r.Value
	}
	return Record{Source: SourceKafka, Fields: kafkaFields(r), Data: data}
}

// kafkaFields is the decoded metadata of r, as metadataOf(r, "key", "value") decoded by
// Match would be (TestKafkaFieldsAreTheDecodedMetadata), built without JSON.
func kafkaFields(r events.KafkaRecord) map[string]any {
	headers := make([]any, len(r.Headers))
	for i, h := range r.Headers {
		bytes := make([]any, len(h.Value))
		for j, c := range h.Value {
			bytes[j] = json.Number(strconv.Itoa(int(int8(c)))) // Java's signed bytes, as events.KafkaHeaders
		}
		headers[i] = map[string]any{h.Key: bytes}
	}
	return map[string]any{
		"topic":         r.Topic,
		"partition":     json.Number(strconv.FormatInt(int64(r.Partition), 10)),
		"offset":        json.Number(strconv.FormatInt(r.Offset, 10)),
		"timestamp":     json.Number(strconv.FormatInt(r.Timestamp, 10)),
		"timestampType": r.TimestampType,
		"headers":       headers,
	}
}

// FromRabbitMQ views a RabbitMQ message: "data" is data.
func FromRabbitMQ(m events.RabbitMQMessage) Record {
	return Record{Source: SourceMQ, Metadata: metadataOf(m, "data"), Data: map[string][]byte{"data": m.Data}}
}

// FromNATS views a NATS JetStream record: "data" is data.
func FromNATS(r events.NATSRecord) Record {
	return Record{Source: SourceNATS, Metadata: metadataOf(r, "data"), Data: map[string][]byte{"data": r.Data}}
}

// metadataOf marshals v and drops its data fields. The event types always marshal, so an
// error leaves the metadata empty rather than failing the record.
func metadataOf(v any, dataFields ...string) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil
	}
	for _, f := range dataFields {
		delete(fields, f)
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return nil
	}
	return out
}
