package kafka

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/events"
)

// appendEvent writes the SelfManagedKafka event of recs the way json.Marshal writes an
// events.KafkaEvent, without reflection: the poller builds one per invocation, and
// encoding/json was a third of its CPU in bench/eventsources.
func appendEvent(b []byte, bootstrap string, recs []*kgo.Record) []byte {
	b = append(b, `{"eventSource":"SelfManagedKafka","bootstrapServers":`...)
	b = appendString(b, bootstrap)
	b = append(b, `,"records":{`...)
	// One partition (a lane's batch without parallelizationFactor): no grouping needed.
	if single(recs) {
		if len(recs) > 0 {
			b = appendString(b, events.KafkaPartitionKey(recs[0].Topic, recs[0].Partition))
			b = append(b, ":["...)
			b = appendRecords(b, recs)
			b = append(b, ']')
		}
		return append(b, "}}"...)
	}
	// Group by partition, keeping each partition's records in order.
	var keys []string
	groups := map[string][]*kgo.Record{}
	for _, r := range recs {
		k := events.KafkaPartitionKey(r.Topic, r.Partition)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ":["...)
		b = appendRecords(b, groups[k])
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// single tells whether recs all come from one partition.
func single(recs []*kgo.Record) bool {
	for _, r := range recs[min(1, len(recs)):] {
		if r.Partition != recs[0].Partition || r.Topic != recs[0].Topic {
			return false
		}
	}
	return true
}

// appendRecords writes one partition's records, comma-separated. What repeats from record to
// record is copied from the first one written rather than formatted again: the
// `{"topic":...,"partition":...,"offset":` head, and the timestamp while it stays the same
// millisecond (records produced together share it).
func appendRecords(b []byte, recs []*kgo.Record) []byte {
	var head, stamp [2]int // where in b the head and the last timestamp's digits are
	lastMs := int64(-1)
	for j, r := range recs {
		if j > 0 {
			b = append(b, ',')
			b = append(b, b[head[0]:head[1]]...)
		} else {
			head[0] = len(b)
			b = append(b, `{"topic":`...)
			b = appendString(b, r.Topic)
			b = append(b, `,"partition":`...)
			b = strconv.AppendInt(b, int64(r.Partition), 10)
			b = append(b, `,"offset":`...)
			head[1] = len(b)
		}
		b = strconv.AppendInt(b, r.Offset, 10)
		b = append(b, `,"timestamp":`...)
		if ms := r.Timestamp.UnixMilli(); ms == lastMs {
			b = append(b, b[stamp[0]:stamp[1]]...)
		} else {
			stamp[0] = len(b)
			b = strconv.AppendInt(b, ms, 10)
			stamp[1], lastMs = len(b), ms
		}
		b = appendRecordTail(b, r)
	}
	return b
}

// appendRecordTail writes what follows a record's timestamp, to its closing brace.
func appendRecordTail(b []byte, r *kgo.Record) []byte {
	if r.Attrs.TimestampType() == 1 {
		b = append(b, `,"timestampType":"LOG_APPEND_TIME"`...)
	} else {
		b = append(b, `,"timestampType":"CREATE_TIME"`...)
	}
	if len(r.Key) > 0 {
		b = append(b, `,"key":"`...)
		b = appendBase64(b, r.Key)
		b = append(b, '"')
	}
	if r.Value == nil {
		b = append(b, `,"value":null`...)
	} else {
		b = append(b, `,"value":"`...)
		b = appendBase64(b, r.Value)
		b = append(b, '"')
	}
	b = append(b, `,"headers":[`...)
	for i, h := range r.Headers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendString(b, h.Key)
		b = append(b, ":["...)
		for j, c := range h.Value {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(int8(c)), 10) // Java's signed bytes, as events.KafkaHeaders
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// appendString writes s as a JSON string; plain ASCII (topic names, hosts) is copied, anything
// else goes through encoding/json for its escaping rules.
func appendString(b []byte, s string) []byte {
	if strings.IndexFunc(s, func(c rune) bool {
		return c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&'
	}) < 0 {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}
