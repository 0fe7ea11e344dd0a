package kafka_test

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/internal/netguard"
)

// batchValues is one event's record values per partition key, each partition's in the
// order of the event.
func batchValues(ev events.KafkaEvent) map[string][]string {
	out := map[string][]string{}
	for k, recs := range ev.Records {
		for _, r := range recs {
			out[k] = append(out[k], string(r.Value))
		}
	}
	return out
}

func (e *env) events() []events.KafkaEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]events.KafkaEvent(nil), e.batches...)
}

func pkey(p int32) string { return events.KafkaPartitionKey(topic, p) }

// Lambda's Kafka event groups records by topic-partition: the records of every partition
// that has some ready go in one invocation, not one invocation per partition.
func TestOneInvocationCarriesEveryReadyPartitionInOrder(t *testing.T) {
	const parts, per = 4, 5
	e := newEnv(t, parts, nil)
	for p := range int32(parts) {
		var vs []string
		for i := range per {
			vs = append(vs, fmt.Sprintf("p%d-%d", p, i))
		}
		e.produce(p, vs...)
	}
	e.run("shared1", poller.Config{BatchSize: 100, Window: 500 * time.Millisecond, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "every partition committed", func() bool {
		for p := range int32(parts) {
			if e.committed("shared1", p) != per {
				return false
			}
		}
		return true
	})
	evs := e.events()
	if len(evs) != 1 {
		t.Fatalf("%d invocations, want 1 holding all %d partitions: %v", len(evs), parts, evs)
	}
	got := batchValues(evs[0])
	for p := range int32(parts) {
		var want []string
		for i := range per {
			want = append(want, fmt.Sprintf("p%d-%d", p, i))
		}
		if strings.Join(got[pkey(p)], ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", pkey(p), got[pkey(p)], want)
		}
		for i, r := range evs[0].Records[pkey(p)] {
			if r.Offset != int64(i) || r.Partition != p || r.Topic != topic {
				t.Errorf("%s: record %d is %s-%d@%d", pkey(p), i, r.Topic, r.Partition, r.Offset)
			}
		}
	}
}

// Partitions share batches, but a partition is never in two invocations at once, its
// records reach the function in order, once each, and its offsets are committed to its end.
func TestSharedBatchesKeepOnePerPartitionInFlightAndOrder(t *testing.T) {
	const parts, per = 4, 12
	var (
		mu        sync.Mutex
		inFlight  = map[string]bool{}
		running   int
		most      int
		multi     int
		order     = map[string][]string{}
		problems  []string
		finishedN int
	)
	e := newEnv(t, parts, func(ev events.KafkaEvent) invoketest.Outcome {
		mu.Lock()
		running++
		most = max(most, running)
		if len(ev.Records) > 1 {
			multi++
		}
		for k, vs := range batchValues(ev) {
			if inFlight[k] {
				problems = append(problems, "two invocations of "+k+" at once")
			}
			inFlight[k] = true
			order[k] = append(order[k], vs...)
		}
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		for k := range ev.Records {
			inFlight[k] = false
		}
		running--
		finishedN++
		mu.Unlock()
		return invoketest.Outcome{}
	})
	for p := range int32(parts) {
		var vs []string
		for i := range per {
			vs = append(vs, fmt.Sprintf("p%d-%d", p, i))
		}
		e.produce(p, vs...)
	}
	// Batches of 5 from 12 records per partition: full batches of one partition, then
	// the partitions' remainders gathered together within the window.
	e.run("shared2", poller.Config{BatchSize: 5, Window: 150 * time.Millisecond, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "every partition committed to its end", func() bool {
		for p := range int32(parts) {
			if e.committed("shared2", p) != per {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for p := range int32(parts) {
		var want []string
		for i := range per {
			want = append(want, fmt.Sprintf("p%d-%d", p, i))
		}
		if got := order[pkey(p)]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s reached the function as %v, want %v", pkey(p), got, want)
		}
	}
	if multi == 0 {
		t.Errorf("no invocation held two partitions (%d invocations)", finishedN)
	}
	if most < 2 {
		t.Errorf("never two invocations at once (%d invocations): partitions without a batch in flight should not wait", finishedN)
	}
}

// A failing batch of several partitions is retried whole, as one batch, then discarded to
// the on-failure destination with every partition's range, and both partitions move on.
func TestAFailingMultiPartitionBatchIsRetriedWholeThenDiscarded(t *testing.T) {
	e := newEnv(t, 2, func(ev events.KafkaEvent) invoketest.Outcome {
		for _, recs := range ev.Records {
			for _, r := range recs {
				if string(r.Value) == "bad" {
					return invoketest.Outcome{FunctionError: "Unhandled", Body: []byte(`{"errorMessage":"bad"}`)}
				}
			}
		}
		return invoketest.Outcome{}
	})
	e.produce(0, "a0", "a1", "a2")
	e.produce(1, "b0", "bad", "b2")
	dest, err := destination.NewKafka(e.addrs, "failures", &netguard.Policy{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	pol := batch.DefaultStreamPolicy()
	pol.MaximumRetryAttempts = 1
	e.run("shared3", poller.Config{BatchSize: 100, Window: 500 * time.Millisecond, Policy: pol, OnFailure: dest, FunctionARN: "arn:aws:lambda:us-east-1:000000000000:function:fn"})
	eventually(t, "commit past the discarded batch", func() bool { return e.committed("shared3", 0) == 3 && e.committed("shared3", 1) == 3 })
	evs := e.events()
	if len(evs) != 2 {
		t.Fatalf("%d invocations, want the batch and its one retry: %v", len(evs), evs)
	}
	for i, ev := range evs {
		got := batchValues(ev)
		if strings.Join(got[pkey(0)], ",") != "a0,a1,a2" || strings.Join(got[pkey(1)], ",") != "b0,bad,b2" || len(got) != 2 {
			t.Errorf("invocation %d: %v, want both partitions' three records", i, got)
		}
	}
	rec := onFailureRecord(t, e.addrs)
	info := rec.KafkaBatchInfo
	if rec.RequestContext.Condition != "RetryAttemptsExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 || info == nil || info.BatchSize != 6 ||
		len(info.RecordsInfo) != 2 || info.RecordsInfo[pkey(0)].FirstRecordOffset != "0" || info.RecordsInfo[pkey(0)].LastRecordOffset != "2" ||
		info.RecordsInfo[pkey(1)].FirstRecordOffset != "0" || info.RecordsInfo[pkey(1)].LastRecordOffset != "2" {
		b, _ := json.Marshal(rec)
		t.Errorf("on-failure record %s", b)
	}
	// Both partitions go on, again in one invocation.
	e.produce(0, "a3")
	e.produce(1, "b3")
	eventually(t, "the next records committed", func() bool { return e.committed("shared3", 0) == 4 && e.committed("shared3", 1) == 4 })
	evs = e.events()
	if len(evs) != 3 {
		t.Fatalf("%d invocations, want 3", len(evs))
	}
	if got := batchValues(evs[2]); strings.Join(got[pkey(0)], ",") != "a3" || strings.Join(got[pkey(1)], ",") != "b3" {
		t.Errorf("after the discard: %v, want a3 and b3 in one invocation", got)
	}
}

// With parallelizationFactor the lanes of keys share batches as partitions do: records of
// several idle lanes go in one invocation, yet a lane never has two batches in flight and
// every key's records reach the function in order.
func TestParallelizationFactorLanesShareBatchesOneInFlightPerLane(t *testing.T) {
	const keys, lanes, perKey = 8, 4, 15
	lane := func(key []byte) uint32 { // as the poller's laneKey
		h := fnv.New32a()
		_, _ = h.Write(key)
		return h.Sum32() % lanes
	}
	var (
		mu       sync.Mutex
		inFlight = map[uint32]bool{}
		overlaps []string
	)
	e := newEnv(t, 1, func(ev events.KafkaEvent) invoketest.Outcome {
		mine := map[uint32]bool{}
		mu.Lock()
		for _, r := range ev.Records[pkey(0)] {
			l := lane(r.Key)
			if inFlight[l] && !mine[l] {
				overlaps = append(overlaps, fmt.Sprintf("lane %d (record %s)", l, r.Value))
			}
			inFlight[l], mine[l] = true, true
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		for l := range mine {
			inFlight[l] = false
		}
		mu.Unlock()
		return invoketest.Outcome{}
	})
	distinct := map[uint32]bool{}
	for k := range keys {
		distinct[lane(fmt.Appendf(nil, "k%d", k))] = true
		e.produceKeyed(0, fmt.Sprintf("k%d", k), fmt.Sprintf("k%d:0", k))
	}
	if len(distinct) < 2 {
		t.Fatalf("the keys fall in %d lane: pick others", len(distinct))
	}
	e.run("lanes1", poller.Config{BatchSize: 100, Lanes: lanes, Window: 300 * time.Millisecond, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "the first records committed", func() bool { return e.committed("lanes1", 0) == keys })
	if evs := e.events(); len(evs) != 1 || len(evs[0].Records[pkey(0)]) != keys {
		t.Fatalf("%d invocations, want one holding the %d keys' first records (%d lanes): %v", len(evs), keys, len(distinct), e.values())
	}
	for i := 1; i < perKey; i++ {
		for k := range keys {
			e.produceKeyed(0, fmt.Sprintf("k%d", k), fmt.Sprintf("k%d:%d", k, i))
		}
	}
	eventually(t, "all committed", func() bool { return e.committed("lanes1", 0) == keys*perKey })
	next := map[string]int{}
	for _, b := range e.values() {
		for _, v := range b {
			k, n, _ := strings.Cut(v, ":")
			if want := fmt.Sprint(next[k]); n != want {
				t.Errorf("key %s: record %s came when %s was next", k, n, want)
			}
			next[k]++
		}
	}
	for k := range keys {
		if n := next[fmt.Sprintf("k%d", k)]; n != perKey {
			t.Errorf("key k%d: %d records delivered, want %d", k, n, perKey)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("a lane had two batches in flight: %v", overlaps)
	}
}
