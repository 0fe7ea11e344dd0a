package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
)

func ptr[T any](v T) *T { return &v }

// diffJSON compares two JSON documents field by field and lists every difference by path.
func diffJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("golden is not JSON: %v", err)
	}
	var diffs []string
	walkDiff("$", g, w, &diffs)
	for _, d := range diffs {
		t.Error(d)
	}
	if len(diffs) > 0 {
		t.Logf("got: %s", got)
	}
}

func walkDiff(path string, got, want any, diffs *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: got %v, want an object", path, got))
			return
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				*diffs = append(*diffs, fmt.Sprintf("%s.%s: missing (want %v)", path, k, wv))
			case !wok:
				*diffs = append(*diffs, fmt.Sprintf("%s.%s: unexpected field (%v)", path, k, gv))
			default:
				walkDiff(path+"."+k, gv, wv, diffs)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			*diffs = append(*diffs, fmt.Sprintf("%s: got %v, want %v", path, got, want))
			return
		}
		for i := range w {
			walkDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i], diffs)
		}
	default:
		if !reflect.DeepEqual(got, want) {
			*diffs = append(*diffs, fmt.Sprintf("%s: got %#v, want %#v", path, got, want))
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The spec's §3.4 example, its "…" filled in.
const goldenSQS = `{"Records":[{"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a","body":"Test message.",
  "attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1545082649183","SenderId":"AIDAIEQZJLO23YVJ4VO","ApproximateFirstReceiveTimestamp":"1545082649185"},
  "messageAttributes":{},"md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:my-queue","awsRegion":"us-east-2"}]}`

func sqsMessage() SQSMessage {
	return SQSMessage{
		MessageID:     "059f36b4-87a3-44ab-83d2-661975830a7d",
		ReceiptHandle: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
		Body:          "Test message.",
		Attributes: SQSAttributes{
			ApproximateReceiveCount:          "1",
			SentTimestamp:                    "1545082649183",
			SenderID:                         "AIDAIEQZJLO23YVJ4VO",
			ApproximateFirstReceiveTimestamp: "1545082649185",
		},
		MD5OfBody:      "e4e68fb7bd0e697a0ae8f1bb342846b3",
		EventSource:    EventSourceSQS,
		EventSourceARN: "arn:aws:sqs:us-east-2:123456789012:my-queue",
		AWSRegion:      "us-east-2",
	}
}

func TestSQSGolden(t *testing.T) {
	diffJSON(t, mustMarshal(t, SQSEvent{Records: []SQSMessage{sqsMessage()}}), goldenSQS)
}

func TestSQSFIFOAndAttributes(t *testing.T) {
	m := sqsMessage()
	m.Attributes.SequenceNumber = "18849496460467696128"
	m.Attributes.MessageGroupID = "1"
	m.Attributes.MessageDeduplicationID = "1"
	m.MessageAttributes = SQSMessageAttributes{
		"myAttribute": {StringValue: ptr("myValue"), DataType: "String"},
		"bin":         {BinaryValue: []byte("hi"), DataType: "Binary"},
	}
	want := `{"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a","body":"Test message.",
	  "attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1545082649183","SenderId":"AIDAIEQZJLO23YVJ4VO","ApproximateFirstReceiveTimestamp":"1545082649185",
	    "SequenceNumber":"18849496460467696128","MessageGroupId":"1","MessageDeduplicationId":"1"},
	  "messageAttributes":{"myAttribute":{"stringValue":"myValue","stringListValues":[],"binaryListValues":[],"dataType":"String"},
	    "bin":{"binaryValue":"aGk=","stringListValues":[],"binaryListValues":[],"dataType":"Binary"}},
	  "md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:my-queue","awsRegion":"us-east-2"}`
	diffJSON(t, mustMarshal(t, m), want)
}

// The spec's §3.5 corrected shape, for self-managed Kafka.
const goldenKafka = `{"eventSource":"SelfManagedKafka","bootstrapServers":"h1:9092,h2:9092",
 "records":{"mytopic-0":[{"topic":"mytopic","partition":0,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME",
   "key":"a2V5","value":"eyJrZXkiOiJ2YWx1ZSJ9","headers":[{"headerKey":[104,101,97,100,101,114,86,97,108,117,101]}]}]}}`

func kafkaEvent() *KafkaEvent {
	e := NewSelfManagedKafkaEvent([]string{"h1:9092", "h2:9092"})
	e.Add(KafkaRecord{
		Topic: "mytopic", Partition: 0, Offset: 15, Timestamp: 1545084650987, TimestampType: KafkaCreateTime,
		Key: []byte("key"), Value: []byte(`{"key":"value"}`),
		Headers: KafkaHeaders{{Key: "headerKey", Value: []byte("headerValue")}},
	})
	return e
}

func TestKafkaGolden(t *testing.T) {
	diffJSON(t, mustMarshal(t, kafkaEvent()), goldenKafka)
}

func TestKafkaShapeDetails(t *testing.T) {
	e := NewSelfManagedKafkaEvent([]string{"h1:9092"})
	e.Add(KafkaRecord{Topic: "t", Partition: 12, Offset: 1, TimestampType: KafkaLogAppendTime, Value: nil})
	e.Add(KafkaRecord{Topic: "t", Partition: 12, Offset: 2, Value: []byte{}, Headers: KafkaHeaders{{Key: "bin", Value: []byte{0, 127, 128, 255}}}})
	want := `{"eventSource":"SelfManagedKafka","bootstrapServers":"h1:9092","records":{"t-12":[
	  {"topic":"t","partition":12,"offset":1,"timestamp":0,"timestampType":"LOG_APPEND_TIME","value":null,"headers":[]},
	  {"topic":"t","partition":12,"offset":2,"timestamp":0,"timestampType":"","value":"","headers":[{"bin":[0,127,-128,-1]}]}]}}`
	diffJSON(t, mustMarshal(t, e), want)

	var back KafkaEvent
	if err := json.Unmarshal(mustMarshal(t, e), &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Records["t-12"][1].Headers[0].Value; !reflect.DeepEqual(got, []byte{0, 127, 128, 255}) {
		t.Errorf("header round trip: %v", got)
	}
	var h KafkaHeaders
	if err := json.Unmarshal([]byte(`[{"a":[200]}]`), &h); err != nil || h[0].Value[0] != 200 {
		t.Errorf("unsigned header bytes: %v %v", h, err)
	}
	if err := json.Unmarshal([]byte(`[{"a":[1],"b":[2]}]`), &h); err == nil {
		t.Error("two keys in one header accepted")
	}
	if err := json.Unmarshal([]byte(`[{"a":[256]}]`), &h); err == nil {
		t.Error("byte 256 accepted")
	}
}

// The spec's §3.6 RabbitMQ example, as an object and with its "…" filled in.
const goldenRabbitMQ = `{"eventSource":"aws:rmq","eventSourceArn":"arn:aws:mq:us-west-2:111122223333:broker:pizzaBroker:b-9bcfa592-423a-4942-879d-eb284b418fc8",
 "rmqMessagesByQueue":{"pizzaQueue::/":[{"basicProperties":{"contentType":"text/plain","contentEncoding":null,
  "headers":{"header1":{"bytes":[118,97,108,117,101,49]},"numberInHeader":10},"deliveryMode":1,"priority":34,"correlationId":null,"replyTo":null,"expiration":"60000",
  "messageId":null,"timestamp":"Jan 1, 1970, 12:33:41 AM","type":null,"userId":"AIDACKCEVSQ6C2EXAMPLE","appId":null,"clusterId":null,"bodySize":80},
  "redelivered":false,"data":"eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ=="}]}}`

func rabbitMQEvent() RabbitMQEvent {
	return RabbitMQEvent{
		EventSource:    EventSourceRabbitMQ,
		EventSourceARN: "arn:aws:mq:us-west-2:111122223333:broker:pizzaBroker:b-9bcfa592-423a-4942-879d-eb284b418fc8",
		MessagesByQueue: map[string][]RabbitMQMessage{
			RabbitMQQueueKey("pizzaQueue", "/"): {{
				BasicProperties: RabbitMQBasicProperties{
					ContentType:  ptr("text/plain"),
					Headers:      map[string]any{"header1": RabbitMQBytes("value1"), "numberInHeader": 10},
					DeliveryMode: ptr[uint8](1),
					Priority:     ptr[uint8](34),
					Expiration:   ptr("60000"),
					Timestamp:    RabbitMQTimestamp(time.Unix(2021, 0)),
					UserID:       ptr("AIDACKCEVSQ6C2EXAMPLE"),
					BodySize:     80,
				},
				Data: []byte(`{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}`),
			}},
		},
	}
}

func TestRabbitMQGolden(t *testing.T) {
	diffJSON(t, mustMarshal(t, rabbitMQEvent()), goldenRabbitMQ)
}

func TestRabbitMQHelpers(t *testing.T) {
	if k := RabbitMQQueueKey("q", ""); k != "q::/" {
		t.Errorf("default vhost key %q", k)
	}
	if k := RabbitMQQueueKey("q", "prod"); k != "q::prod" {
		t.Errorf("vhost key %q", k)
	}
	ts, err := ParseRabbitMQTimestamp("Jan 1, 1970, 12:33:41 AM")
	if err != nil || ts.Unix() != 2021 {
		t.Errorf("ParseRabbitMQTimestamp = %v, %v", ts, err)
	}
	if s := *RabbitMQTimestamp(time.Date(2024, 7, 9, 15, 4, 5, 0, time.UTC)); s != "Jul 9, 2024, 3:04:05 PM" {
		t.Errorf("afternoon timestamp %q", s)
	}
	var b RabbitMQBytes
	if err := json.Unmarshal([]byte(`{"bytes":[104,105]}`), &b); err != nil || string(b) != "hi" {
		t.Errorf("RabbitMQBytes round trip %q %v", b, err)
	}
}

// klambda's NATS shape, as the package comment documents it.
const goldenNATS = `{"eventSource":"klambda:nats","eventSourceArn":"nats://nats.nats.svc:4222/ORDERS",
 "servers":"nats://nats.nats.svc:4222","records":{"ORDERS":[{"stream":"ORDERS",
 "subject":"orders.created","sequence":42,"timestamp":1545084650987,"numDelivered":1,
 "headers":{"Nats-Msg-Id":["a1"]},"data":"eyJpZCI6N30="},
 {"stream":"ORDERS","subject":"orders.paid","sequence":43,"timestamp":1545084650990,"numDelivered":2,"headers":{},"data":""}]}}`

func TestNATSGolden(t *testing.T) {
	e := NewNATSEvent([]string{"nats://nats.nats.svc:4222"}, "nats://nats.nats.svc:4222/ORDERS")
	e.Add(NATSRecord{Stream: "ORDERS", Subject: "orders.created", Sequence: 42, Timestamp: 1545084650987, NumDelivered: 1,
		Headers: NATSHeaders{"Nats-Msg-Id": {"a1"}}, Data: []byte(`{"id":7}`)})
	e.Add(NATSRecord{Stream: "ORDERS", Subject: "orders.paid", Sequence: 43, Timestamp: 1545084650990, NumDelivered: 2, Data: []byte{}})
	diffJSON(t, mustMarshal(t, e), goldenNATS)
}

// The spec's §3.3 failure record, "…" filled in.
const goldenKinesisFailure = `{"requestContext":{"requestId":"c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5","functionArn":"arn:aws:lambda:us-east-2:123456789012:function:myfunction","condition":"RetryAttemptsExhausted","approximateInvokeCount":1},
 "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2019-11-14T00:38:06.021Z",
 "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"49601189658422359378836298521827638475320189012309704722","endSequenceNumber":"49601189658422359378836298522902373528957594348623495186",
   "approximateArrivalOfFirstRecord":"2019-11-14T00:38:04.835Z","approximateArrivalOfLastRecord":"2019-11-14T00:38:05.580Z","batchSize":500,"streamArn":"arn:aws:kinesis:us-east-2:123456789012:stream/mystream"}}`

func TestKinesisFailureGolden(t *testing.T) {
	rec := OnFailureRecord{
		RequestContext: OnFailureRequestContext{
			RequestID: "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5", FunctionARN: "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
			Condition: ConditionRetryAttemptsExhausted, ApproximateInvokeCount: 1,
		},
		ResponseContext: &OnFailureResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"},
		Version:         OnFailureRecordVersion,
		Timestamp:       FormatTimestamp(time.Date(2019, 11, 14, 0, 38, 6, 21e6, time.UTC)),
		KinesisBatchInfo: &StreamBatchInfo{
			ShardID: "shardId-000000000001", StartSequenceNumber: "49601189658422359378836298521827638475320189012309704722",
			EndSequenceNumber:               "49601189658422359378836298522902373528957594348623495186",
			ApproximateArrivalOfFirstRecord: "2019-11-14T00:38:04.835Z", ApproximateArrivalOfLastRecord: "2019-11-14T00:38:05.580Z",
			BatchSize: 500, StreamARN: "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
		},
	}
	diffJSON(t, mustMarshal(t, rec), goldenKinesisFailure)
}

func TestKafkaFailureRecord(t *testing.T) {
	rec := OnFailureRecord{
		RequestContext:  OnFailureRequestContext{RequestID: "r", FunctionARN: "arn:aws:lambda:us-east-1:123456789012:function:f", Condition: ConditionMaximumPayloadSizeExceeded},
		ResponseContext: nil,
		Version:         OnFailureRecordVersion,
		Timestamp:       "2019-11-14T00:38:06.021Z",
		KafkaBatchInfo: &KafkaBatchInfo{BatchSize: 1, BootstrapServers: "h1:9092", PayloadSize: 7340032,
			RecordsInfo: map[string]KafkaPartitionRange{"Topic-0": {FirstRecordOffset: "15", LastRecordOffset: "15",
				FirstRecordTimestamp: "2019-11-14T00:38:04.835Z", LastRecordTimestamp: "2019-11-14T00:38:04.835Z"}}},
	}
	want := `{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:f","condition":"MaximumPayloadSizeExceeded","approximateInvokeCount":0},
	 "responseContext":null,"version":"1.0","timestamp":"2019-11-14T00:38:06.021Z",
	 "KafkaBatchInfo":{"batchSize":1,"bootstrapServers":"h1:9092","payloadSize":7340032,"recordsInfo":{"Topic-0":{"firstRecordOffset":"15","lastRecordOffset":"15",
	   "firstRecordTimestamp":"2019-11-14T00:38:04.835Z","lastRecordTimestamp":"2019-11-14T00:38:04.835Z"}}}}`
	diffJSON(t, mustMarshal(t, rec), want)
}

func TestOtherBatchInfos(t *testing.T) {
	base := func() OnFailureRecord {
		return OnFailureRecord{RequestContext: OnFailureRequestContext{RequestID: "r", FunctionARN: "f", Condition: ConditionRecordAgeExceeded, ApproximateInvokeCount: 3},
			ResponseContext: &OnFailureResponseContext{StatusCode: 200, ExecutedVersion: "1"}, Version: "1.0", Timestamp: "t"}
	}
	head := `"requestContext":{"requestId":"r","functionArn":"f","condition":"RecordAgeExceeded","approximateInvokeCount":3},"responseContext":{"statusCode":200,"executedVersion":"1"},"version":"1.0","timestamp":"t",`

	r := base()
	r.SQSBatchInfo = &SQSBatchInfo{BatchSize: 2, EventSourceARN: "arn:q", PayloadSize: 10, MessageIDs: []string{"a", "b"}, FirstMessageTimestamp: "t1", LastMessageTimestamp: "t2"}
	diffJSON(t, mustMarshal(t, r), `{`+head+`"SQSBatchInfo":{"batchSize":2,"eventSourceArn":"arn:q","payloadSize":10,"messageIds":["a","b"],"firstMessageTimestamp":"t1","lastMessageTimestamp":"t2"}}`)

	r = base()
	r.RabbitMQBatchInfo = &RabbitMQBatchInfo{BatchSize: 2, EventSourceARN: "amqp://mq", PayloadSize: 10,
		MessagesInfo: map[string]RabbitMQQueueInfo{"q::/": {MessageCount: 2, MessageIDs: []string{"m1"}}}}
	diffJSON(t, mustMarshal(t, r), `{`+head+`"RabbitMQBatchInfo":{"batchSize":2,"eventSourceArn":"amqp://mq","payloadSize":10,"messagesInfo":{"q::/":{"messageCount":2,"messageIds":["m1"]}}}}`)

	r = base()
	r.NATSBatchInfo = &NATSBatchInfo{BatchSize: 2, Servers: "nats://a:4222", PayloadSize: 10,
		RecordsInfo: map[string]NATSStreamRange{"ORDERS": {FirstRecordSequence: "42", LastRecordSequence: "43", FirstRecordTimestamp: "t1", LastRecordTimestamp: "t2"}}}
	diffJSON(t, mustMarshal(t, r), `{`+head+`"NATSBatchInfo":{"batchSize":2,"servers":"nats://a:4222","payloadSize":10,"recordsInfo":{"ORDERS":{"firstRecordSequence":"42","lastRecordSequence":"43","firstRecordTimestamp":"t1","lastRecordTimestamp":"t2"}}}}`)
}

func TestParseBatchItemFailures(t *testing.T) {
	batch := map[string]bool{"id-1": true, "id-2": true, "15": true}
	known := func(id string) bool { return batch[id] }
	cases := []struct {
		name    string
		payload string
		want    []string
		fail    bool
	}{
		{"empty payload", ``, nil, false},
		{"whitespace payload", " \n", nil, false},
		{"null response", `null`, nil, false},
		{"empty response", `{}`, nil, false},
		{"null list", `{"batchItemFailures":null}`, nil, false},
		{"empty list", `{"batchItemFailures":[]}`, nil, false},
		{"other fields only", `{"state":{}}`, nil, false},
		{"string response", `"ok"`, nil, false},
		{"one failure", `{"batchItemFailures":[{"itemIdentifier":"id-2"}]}`, []string{"id-2"}, false},
		{"several, deduplicated, in order", `{"batchItemFailures":[{"itemIdentifier":"id-2"},{"itemIdentifier":"id-1"},{"itemIdentifier":"id-2"}]}`, []string{"id-2", "id-1"}, false},
		{"Kafka offset as string", `{"batchItemFailures":[{"itemIdentifier":"15"}]}`, []string{"15"}, false},
		{"extra fields in an entry", `{"batchItemFailures":[{"itemIdentifier":"id-1","reason":"x"}]}`, []string{"id-1"}, false},
		{"invalid JSON", `{"batchItemFailures":[`, nil, true},
		{"empty identifier", `{"batchItemFailures":[{"itemIdentifier":""}]}`, nil, true},
		{"null identifier", `{"batchItemFailures":[{"itemIdentifier":null}]}`, nil, true},
		{"wrongly named identifier", `{"batchItemFailures":[{"itemId":"id-1"}]}`, nil, true},
		{"number identifier", `{"batchItemFailures":[{"itemIdentifier":15}]}`, nil, true},
		{"unknown identifier", `{"batchItemFailures":[{"itemIdentifier":"id-1"},{"itemIdentifier":"nope"}]}`, nil, true},
		{"entry not an object", `{"batchItemFailures":["id-1"]}`, nil, true},
		{"null entry", `{"batchItemFailures":[null]}`, nil, true},
		{"list not a list", `{"batchItemFailures":"id-1"}`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBatchItemFailures([]byte(tc.payload), known)
			if tc.fail {
				if !errors.Is(err, ErrBatchFailed) {
					t.Fatalf("err = %v, want ErrBatchFailed (ids %v)", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
		})
	}
	if ids, err := ParseBatchItemFailures([]byte(`{"batchItemFailures":[{"itemIdentifier":"anything"}]}`), nil); err != nil || ids[0] != "anything" {
		t.Errorf("nil known: %v %v", ids, err)
	}
}

// TestDecodesWithAWSLambdaGo checks the shapes against a Lambda client this project did not
// write: aws-lambda-go's events types, which functions use to decode their input.
func TestDecodesWithAWSLambdaGo(t *testing.T) {
	var sqs lambdaevents.SQSEvent
	if err := json.Unmarshal([]byte(goldenSQS), &sqs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustMarshal(t, SQSEvent{Records: []SQSMessage{sqsMessage()}}), &sqs); err != nil {
		t.Fatal(err)
	}
	if m := sqs.Records[0]; m.MessageId != "059f36b4-87a3-44ab-83d2-661975830a7d" || m.Attributes["SenderId"] != "AIDAIEQZJLO23YVJ4VO" || m.EventSourceARN == "" || m.Md5OfBody == "" {
		t.Errorf("SQS decoded as %+v", m)
	}

	k := kafkaEvent()
	k.Add(KafkaRecord{Topic: "mytopic", Partition: 0, Offset: 16, Value: []byte("x"), Headers: KafkaHeaders{{Key: "b", Value: []byte{200}}}})
	var kafka lambdaevents.KafkaEvent
	if err := json.Unmarshal(mustMarshal(t, k), &kafka); err != nil {
		t.Fatal(err)
	}
	recs := kafka.Records["mytopic-0"]
	if len(recs) != 2 || recs[0].Offset != 15 || recs[0].Key != "a2V5" || string(recs[0].Headers[0]["headerKey"]) != "headerValue" || recs[1].Headers[0]["b"][0] != 200 || kafka.BootstrapServers != "h1:9092,h2:9092" {
		t.Errorf("Kafka decoded as %+v", kafka)
	}

	var rmq lambdaevents.RabbitMQEvent
	if err := json.Unmarshal(mustMarshal(t, rabbitMQEvent()), &rmq); err != nil {
		t.Fatal(err)
	}
	msgs := rmq.MessagesByQueue["pizzaQueue::/"]
	if len(msgs) != 1 || msgs[0].BasicProperties.Priority != 34 || msgs[0].BasicProperties.UserID != "AIDACKCEVSQ6C2EXAMPLE" || msgs[0].Data == "" {
		t.Errorf("RabbitMQ decoded as %+v", rmq)
	}

	var resp lambdaevents.SQSEventResponse
	resp.BatchItemFailures = []lambdaevents.SQSBatchItemFailure{{ItemIdentifier: "id-1"}}
	ids, err := ParseBatchItemFailures(mustMarshal(t, resp), nil)
	if err != nil || !reflect.DeepEqual(ids, []string{"id-1"}) {
		t.Errorf("aws-lambda-go response parsed as %v, %v", ids, err)
	}
}

// FuzzParseBatchItemFailures: any payload yields either failed ids from the batch or a
// whole-batch failure, never a panic.
func FuzzParseBatchItemFailures(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"batchItemFailures":[{"itemIdentifier":"a"}]}`, `{"batchItemFailures":[{"itemIdentifier":null}]}`, `[`, `"ok"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		ids, err := ParseBatchItemFailures([]byte(payload), func(id string) bool { return id == "a" || id == "b" })
		if err != nil {
			if !errors.Is(err, ErrBatchFailed) || ids != nil {
				t.Fatalf("ids %v with error %v", ids, err)
			}
			return
		}
		for _, id := range ids {
			if id != "a" && id != "b" {
				t.Fatalf("unknown id %q accepted", id)
			}
		}
	})
}
