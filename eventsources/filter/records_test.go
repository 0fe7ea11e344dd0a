package filter

import (
	"reflect"
	"testing"

	"github.com/klambda/klambda/eventsources/events"
)

func TestFromEventShapes(t *testing.T) {
	sqs := events.SQSMessage{MessageID: "m1", Body: `{"RequestCode":"BBBB"}`, EventSource: events.EventSourceSQS, AWSRegion: "us-east-2",
		Attributes: events.SQSAttributes{ApproximateReceiveCount: "1", SenderID: "AIDAIEQZJLO23YVJ4VO"}}
	kafka := events.KafkaRecord{Topic: "orders", Partition: 3, Offset: 9, Key: []byte("user-1"), Value: []byte(`{"total":12}`),
		Headers: events.KafkaHeaders{{Key: "h", Value: []byte("v")}}}
	rmq := events.RabbitMQMessage{Redelivered: true, Data: []byte("plain text"),
		BasicProperties: events.RabbitMQBasicProperties{ContentType: ptrTo("text/plain")}}
	nats := events.NATSRecord{Stream: "ORDERS", Subject: "orders.created", Sequence: 42, Data: []byte(`{"id":7}`)}

	cases := []struct {
		name    string
		pattern string
		rec     Record
		want    bool
	}{
		{"SQS body JSON", `{"body":{"RequestCode":["BBBB"]}}`, FromSQS(sqs), true},
		{"SQS metadata", `{"attributes":{"ApproximateReceiveCount":["1"]},"awsRegion":["us-east-2"]}`, FromSQS(sqs), true},
		{"SQS body is not metadata", `{"body":["x"]}`, FromSQS(sqs), false},
		{"Kafka value", `{"topic":["orders"],"partition":[3],"value":{"total":[{"numeric":[">",10]}]}}`, FromKafka(kafka), true},
		{"Kafka key decoded, not base64", `{"key":[{"prefix":"user-"}]}`, FromKafka(kafka), true},
		{"Kafka headers as byte arrays", `{"headers":{"h":[118]}}`, FromKafka(kafka), true},
		{"Kafka no key", `{"key":[{"exists":false}]}`, FromKafka(events.KafkaRecord{Topic: "t"}), true},
		{"RabbitMQ plain data with JSON pattern: metadata only", `{"redelivered":[true],"data":{"a":["b"]}}`, FromRabbitMQ(rmq), true},
		{"RabbitMQ properties", `{"basicProperties":{"contentType":["text/plain"],"messageId":[null]}}`, FromRabbitMQ(rmq), true},
		{"NATS", `{"subject":[{"prefix":"orders."}],"sequence":[42],"data":{"id":[7]}}`, FromNATS(nats), true},
		{"NATS data mismatch value", `{"data":{"id":[8]}}`, FromNATS(nats), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompilePatterns([]string{tc.pattern})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(tc.rec); got != tc.want {
				t.Errorf("Match = %v, want %v (metadata %s)", got, tc.want, tc.rec.Metadata)
			}
		})
	}
}

// FromKafka builds the metadata's decoded form directly; it is what Match makes of the
// metadata JSON the other sources' views carry.
func TestKafkaFieldsAreTheDecodedMetadata(t *testing.T) {
	for _, r := range []events.KafkaRecord{
		{Topic: "orders", Partition: 3, Offset: 9, Timestamp: 1545084650987, TimestampType: events.KafkaCreateTime, Key: []byte("user-1"), Value: []byte(`{"total":12}`),
			Headers: events.KafkaHeaders{{Key: "h", Value: []byte{'v', 0, 127, 128, 255}}, {Key: "empty", Value: []byte{}}, {Key: "h\"<é>", Value: []byte("x")}}},
		{Topic: "t", TimestampType: events.KafkaLogAppendTime},
		{Topic: "t", Partition: 2147483647, Offset: 1 << 62, Headers: events.KafkaHeaders{}},
	} {
		want, ok := decodeJSON(metadataOf(r, "key", "value"))
		if !ok {
			t.Fatalf("metadata of %+v does not decode", r)
		}
		if got := kafkaFields(r); !reflect.DeepEqual(got, want) {
			t.Errorf("fields %#v\nwant   %#v", got, want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
