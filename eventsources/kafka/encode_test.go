package kafka

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/events"
)

// The hand-written encoder must produce exactly what json.Marshal of events.KafkaEvent does.
func TestAppendEventMatchesTheEventsPackage(t *testing.T) {
	ts := time.UnixMilli(1545084650987)
	recs := []*kgo.Record{
		{Topic: "orders", Partition: 0, Offset: 15, Timestamp: ts, Key: []byte("key"), Value: []byte(`{"a":1}`),
			Headers: []kgo.RecordHeader{{Key: "h\"<é>", Value: []byte{0, 127, 128, 255}}, {Key: "empty"}}},
		{Topic: "orders", Partition: 1, Offset: 3, Timestamp: ts, Value: nil},
		{Topic: "orders", Partition: 0, Offset: 16, Timestamp: ts, Key: []byte{}, Value: []byte{}, Attrs: kgo.RecordAttrs{}},
		// The timestamp changes, comes back, and stays (appendRecords copies a repeated one).
		{Topic: "orders", Partition: 0, Offset: 17, Timestamp: ts.Add(time.Millisecond), Value: []byte("x")},
		{Topic: "orders", Partition: 0, Offset: 1000, Timestamp: ts, Value: []byte("y")},
		{Topic: "orders", Partition: 0, Offset: 1001, Timestamp: ts, Value: []byte("z")},
	}
	// Several partitions, one partition (the single-partition fast path), none; and
	// appended after what a reused buffer held.
	for _, rs := range [][]*kgo.Record{recs, {recs[0], recs[2], recs[3], recs[4], recs[5]}, {recs[1]}, nil} {
		got := appendEvent(nil, "h1:9092,h2:9092", rs)
		e := events.NewSelfManagedKafkaEvent([]string{"h1:9092", "h2:9092"})
		for _, r := range rs {
			e.Add(eventRecord(r))
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, got)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		reused := appendEvent([]byte("garbage"), "h1:9092,h2:9092", rs)
		if string(reused[len("garbage"):]) != string(got) {
			t.Errorf("appended after a buffer's content: %s", reused)
		}
	}
}
