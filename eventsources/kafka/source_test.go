package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/poller/pollertest"
	"github.com/klambda/klambda/internal/netguard"
)

const topic = "orders"

type env struct {
	t       *testing.T
	cluster *kfake.Cluster
	addrs   []string
	prod    *kgo.Client
	fake    *invoketest.Server
	mu      sync.Mutex
	batches []events.KafkaEvent
}

func newEnv(t *testing.T, partitions int32, h func(e events.KafkaEvent) invoketest.Outcome) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic, "failures"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &env{t: t, cluster: c, addrs: c.ListenAddrs()}
	e.prod, err = kgo.NewClient(kgo.SeedBrokers(e.addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	e.fake = invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		var ev events.KafkaEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil {
			t.Errorf("event is not a Kafka event: %v", err)
		}
		e.mu.Lock()
		e.batches = append(e.batches, ev)
		e.mu.Unlock()
		if h == nil {
			return invoketest.Outcome{}
		}
		return h(ev)
	})
	t.Cleanup(e.fake.Close)
	return e
}

func (e *env) produce(partition int32, values ...string) {
	e.t.Helper()
	for _, v := range values {
		if err := e.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: partition, Key: []byte("k-" + v), Value: []byte(v),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}).FirstErr(); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) produceKeyed(partition int32, key, value string) {
	e.t.Helper()
	if err := e.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

// run starts a poller; the returned stop waits for it to close.
func (e *env) run(group string, cfg poller.Config) (stop func()) {
	e.t.Helper()
	src, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: group, FromStart: true, CommitInterval: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return pollertest.Run(e.t, cfg, 100, src, e.fake.Invoker())
}

// values lists, per batch, the record values the function saw.
func (e *env) values() [][]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out [][]string
	for _, b := range e.batches {
		var vs []string
		for _, recs := range b.Records {
			for _, r := range recs {
				vs = append(vs, string(r.Value))
			}
		}
		out = append(out, vs)
	}
	return out
}

func (e *env) seen() map[string]int {
	n := map[string]int{}
	for _, b := range e.values() {
		for _, v := range b {
			n[v]++
		}
	}
	return n
}

func (e *env) committed(group string, partition int32) int64 {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), e.prod)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Partition == partition {
				return p.Offset
			}
		}
	}
	return -1
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRecordsReachTheFunctionInLambdasShapeAndOffsetsAreCommitted(t *testing.T) {
	e := newEnv(t, 2, nil)
	e.produce(0, "a", "b", "c")
	e.produce(1, "d")
	e.run("g1", poller.Config{BatchSize: 10, Window: 300 * time.Millisecond, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "committed offsets", func() bool { return e.committed("g1", 0) == 3 && e.committed("g1", 1) == 1 })
	n := e.seen()
	for _, v := range []string{"a", "b", "c", "d"} {
		if n[v] != 1 {
			t.Errorf("record %s seen %d times", v, n[v])
		}
	}
	e.mu.Lock()
	var b events.KafkaEvent
	for _, ev := range e.batches {
		if _, ok := ev.Records[events.KafkaPartitionKey(topic, 0)]; ok {
			b = ev
		}
	}
	e.mu.Unlock()
	if b.EventSource != "SelfManagedKafka" || b.BootstrapServers != strings.Join(e.addrs, ",") {
		t.Errorf("envelope %+v", b)
	}
	r := b.Records[events.KafkaPartitionKey(topic, 0)]
	if len(r) == 0 || r[0].Topic != topic || r[0].Offset != 0 || string(r[0].Key) != "k-a" || r[0].Headers[0].Key != "h" || r[0].TimestampType != "CREATE_TIME" {
		t.Errorf("records %+v", b.Records)
	}
}

func TestFilteredRecordsNeverReachTheFunctionButAreCommitted(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.produce(0, `{"kind":"keep","n":1}`, `{"kind":"drop"}`, "plain", `{"kind":"keep","n":2}`)
	m, err := filter.CompilePatterns([]string{`{"value":{"kind":["keep"]}}`})
	if err != nil {
		t.Fatal(err)
	}
	e.run("g2", poller.Config{Filter: m, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "commit past the filtered records", func() bool { return e.committed("g2", 0) == 4 })
	// "plain" is not JSON: for Kafka, Lambda falls back to metadata-only filtering (spec §4),
	// and this pattern has no metadata part, so it passes.
	n := e.seen()
	if n[`{"kind":"keep","n":1}`] != 1 || n[`{"kind":"keep","n":2}`] != 1 || n["plain"] != 1 || len(n) != 3 {
		t.Errorf("function saw %v", n)
	}
}

func TestReportBatchItemFailuresRetriesFromTheFailedRecord(t *testing.T) {
	var mu sync.Mutex
	failed := false
	e := newEnv(t, 1, func(ev events.KafkaEvent) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records[topic+"-0"] {
			if string(r.Value) == "bad" && !failed {
				failed = true
				return invoketest.Outcome{Body: []byte(fmt.Sprintf(`{"batchItemFailures":[{"itemIdentifier":"%s-0@%d"}]}`, topic, r.Offset))}
			}
		}
		return invoketest.Outcome{}
	})
	e.produce(0, "ok1", "ok2", "bad")
	pol := batch.DefaultStreamPolicy()
	pol.ReportBatchItemFailures = true
	e.run("g3", poller.Config{Window: 300 * time.Millisecond, Policy: pol})
	eventually(t, "commit", func() bool { return e.committed("g3", 0) == 3 })
	got := e.values()
	if len(got) != 2 || strings.Join(got[0], ",") != "ok1,ok2,bad" || strings.Join(got[1], ",") != "bad" {
		t.Errorf("batches %v, want [ok1 ok2 bad] then [bad] alone", got)
	}
}

// onFailureRecord is the one on-failure record the tests' destination wrote to the
// "failures" topic.
func onFailureRecord(t *testing.T, addrs []string) events.OnFailureRecord {
	t.Helper()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("failures"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cons.PollFetches(ctx)
	if fs.NumRecords() != 1 {
		t.Fatalf("%d on-failure records, want 1 (%v)", fs.NumRecords(), fs.Errors())
	}
	var rec events.OnFailureRecord
	if err := json.Unmarshal(fs.Records()[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestBisectSplitsAFailingBatchAndExhaustedRecordsGoToTheDestination(t *testing.T) {
	e := newEnv(t, 1, func(ev events.KafkaEvent) invoketest.Outcome {
		for _, r := range ev.Records[topic+"-0"] {
			if string(r.Value) == "poison" {
				return invoketest.Outcome{FunctionError: "Unhandled", Body: []byte(`{"errorMessage":"poison"}`)}
			}
		}
		return invoketest.Outcome{}
	})
	e.produce(0, "r0", "r1", "poison", "r3")
	dest, err := destination.NewKafka(e.addrs, "failures", &netguard.Policy{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	pol := batch.DefaultStreamPolicy()
	pol.BisectBatchOnFunctionError = true
	pol.MaximumRetryAttempts = 1
	e.run("g4", poller.Config{Window: 300 * time.Millisecond, Policy: pol, OnFailure: dest, FunctionARN: "arn:aws:lambda:us-east-1:000000000000:function:fn"})
	eventually(t, "commit past the poison record", func() bool { return e.committed("g4", 0) == 4 })
	got := e.values()
	// [r0 r1 poison r3] fails → [r0 r1] ok, [poison r3] fails → [poison] fails, retried once, discarded; [r3] ok.
	want := "r0,r1,poison,r3|r0,r1|poison,r3|poison|poison|r3"
	var parts []string
	for _, b := range got {
		parts = append(parts, strings.Join(b, ","))
	}
	if strings.Join(parts, "|") != want {
		t.Errorf("batches %v, want %s", parts, want)
	}
	// The on-failure record points at the poison record.
	rec := onFailureRecord(t, e.addrs)
	info := rec.KafkaBatchInfo
	if rec.RequestContext.Condition != "RetryAttemptsExhausted" || info == nil || info.BatchSize != 1 ||
		info.RecordsInfo[topic+"-0"].FirstRecordOffset != "2" || rec.ResponseContext == nil || rec.ResponseContext.FunctionError != "Unhandled" ||
		rec.RequestContext.ApproximateInvokeCount != 4 {
		b, _ := json.Marshal(rec)
		t.Errorf("on-failure record %s", b)
	}
}

func TestDisablingStopsConsumptionAndEnablingResumesWithoutLoss(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.produce(0, "1", "2")
	stop := e.run("g5", poller.Config{Policy: batch.DefaultStreamPolicy()})
	eventually(t, "first records", func() bool { return e.committed("g5", 0) == 2 })
	stop() // disabled
	e.produce(0, "3", "4")
	time.Sleep(300 * time.Millisecond)
	if n := e.seen(); n["3"] != 0 {
		t.Fatalf("consumed while disabled: %v", n)
	}
	e.run("g5", poller.Config{Policy: batch.DefaultStreamPolicy()}) // enabled again
	eventually(t, "records produced while disabled", func() bool { return e.committed("g5", 0) == 4 })
	n := e.seen()
	for _, v := range []string{"1", "2", "3", "4"} {
		if n[v] != 1 {
			t.Errorf("record %s seen %d times", v, n[v])
		}
	}
}

func TestParallelizationFactorKeepsOrderPerKeyAndCommitsContiguously(t *testing.T) {
	const keys, perKey = 6, 10
	var (
		mu         sync.Mutex
		slowed     bool
		slowOffset int64 = -1
		commitSeen int64 = -1
		e          *env
	)
	// The first batch holding k0's first record is held for a while: the other lanes go on
	// and commit, but never past that record.
	e = newEnv(t, 1, func(ev events.KafkaEvent) invoketest.Outcome {
		mu.Lock()
		hold := false
		for _, r := range ev.Records[topic+"-0"] {
			if string(r.Value) == "k0:0" && !slowed {
				slowed, hold, slowOffset = true, true, r.Offset
			}
		}
		mu.Unlock()
		if hold {
			time.Sleep(600 * time.Millisecond)
			c := e.committed("g6", 0)
			mu.Lock()
			commitSeen = c
			mu.Unlock()
		}
		return invoketest.Outcome{}
	})
	for i := range perKey {
		for k := range keys {
			e.produceKeyed(0, fmt.Sprintf("k%d", k), fmt.Sprintf("k%d:%d", k, i))
		}
	}
	e.run("g6", poller.Config{BatchSize: 5, Lanes: 4, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "all committed", func() bool { return e.committed("g6", 0) == keys*perKey })
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
	if slowOffset < 0 {
		t.Fatal("the held batch never came")
	}
	// Offset slowOffset is unfinished while held: the commit (next offset to read; -1 none)
	// is at most it.
	if commitSeen > slowOffset {
		t.Errorf("committed %d while offset %d was still being invoked", commitSeen, slowOffset)
	}
}

func TestRecordsOlderThanTheMaximumAgeAreDiscardedToTheDestination(t *testing.T) {
	e := newEnv(t, 1, nil)
	old := time.Now().Add(-time.Hour)
	for _, v := range []string{"stale1", "stale2"} {
		if err := e.prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v), Timestamp: old}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	e.produce(0, "fresh")
	dest, err := destination.NewKafka(e.addrs, "failures", &netguard.Policy{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	pol := batch.DefaultStreamPolicy()
	pol.MaximumRecordAgeInSeconds = 60
	e.run("g7", poller.Config{Window: 300 * time.Millisecond, Policy: pol, OnFailure: dest})
	eventually(t, "commit past all three", func() bool { return e.committed("g7", 0) == 3 })
	if n := e.seen(); n["stale1"] != 0 || n["stale2"] != 0 || n["fresh"] != 1 {
		t.Errorf("function saw %v", n)
	}
	rec := onFailureRecord(t, e.addrs)
	if rec.RequestContext.Condition != "RecordAgeExceeded" || rec.ResponseContext != nil || rec.KafkaBatchInfo.BatchSize != 2 ||
		rec.KafkaBatchInfo.RecordsInfo[topic+"-0"].LastRecordOffset != "1" {
		b, _ := json.Marshal(rec)
		t.Errorf("on-failure record %s", b)
	}
}

// Two pollers of one mapping (one consumer group, as two poller replicas run it) share a
// topic's partitions; the first is stopped mid-stream and the second takes its partitions.
// Every record reaches the function at least once, and per partition the function never
// has two invocations at once nor sees a record before every earlier one (a replay after the
// hand-over starts again from the committed offset, never past an unseen record).
// kfake, in process.
func TestTwoPollersSharePartitionsAndHandOverWithoutSkipping(t *testing.T) {
	const parts, perPart = 4, 600
	type seen struct {
		replica string
		offsets []int64
	}
	var (
		mu       sync.Mutex
		inFlight = map[string]int{}
		byPart   = map[string][]int64{}
		replicas = map[string]map[string]bool{} // replica → partitions it invoked
		problems []string
	)
	e := newEnv(t, parts, nil)
	e.fake.SetHandler(func(c invoketest.Call) invoketest.Outcome {
		var ev events.KafkaEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil {
			t.Error(err)
			return invoketest.Outcome{}
		}
		mu.Lock()
		for p, recs := range ev.Records {
			inFlight[p]++
			if inFlight[p] > 1 {
				problems = append(problems, fmt.Sprintf("two invocations of %s at once", p))
			}
			if replicas[c.Token] == nil {
				replicas[c.Token] = map[string]bool{}
			}
			replicas[c.Token][p] = true
			for _, r := range recs {
				prev := byPart[p]
				if n := len(prev); n > 0 && r.Offset > prev[n-1]+1 {
					problems = append(problems, fmt.Sprintf("%s: offset %d after %d", p, r.Offset, prev[n-1]))
				} else if n == 0 && r.Offset != 0 {
					problems = append(problems, fmt.Sprintf("%s: first offset %d", p, r.Offset))
				}
				byPart[p] = append(byPart[p], r.Offset)
			}
		}
		mu.Unlock()
		time.Sleep(40 * time.Millisecond) // a function that takes a while: batches are in flight at the hand-overs
		mu.Lock()
		for p := range ev.Records {
			inFlight[p]--
		}
		mu.Unlock()
		return invoketest.Outcome{}
	})
	produceAll := func(from, to int) {
		for p := range int32(parts) {
			var recs []*kgo.Record
			for i := from; i < to; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprint(i))})
			}
			if err := e.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := func(name string) (stop func()) {
		src, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: "shared", FromStart: true, CommitInterval: 100 * time.Millisecond,
			Extra: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(10 * time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		return pollertest.Run(t, poller.Config{BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, 10, src,
			invokeclient.NewHTTPInvoker(e.fake.URL, invokeclient.StaticToken(name), nil))
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range byPart {
			n += len(o)
		}
		return n
	}
	produceAll(0, 2*perPart/3) // a backlog: both are busy when the partitions move
	stopA := start("A")
	eventually(t, "A invoking", func() bool { return count() > 0 })
	stopB := start("B")
	defer stopB()
	eventually(t, "B given partitions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(replicas["B"]) > 0
	})
	mu.Lock()
	shared := len(replicas["A"]) > 0 && len(replicas["B"]) > 0 && len(replicas["B"]) < parts
	mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	stopA() // mid-stream: A's partitions move to B
	produceAll(2*perPart/3, perPart)
	eventually(t, "every partition committed to its end", func() bool {
		for p := range int32(parts) {
			if e.committed("shared", p) != perPart {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if !shared {
		t.Errorf("partitions were not shared while both ran: %v", replicas)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for p := range int32(parts) {
		k := events.KafkaPartitionKey(topic, p)
		got := map[int64]bool{}
		for _, o := range byPart[k] {
			got[o] = true
		}
		if len(got) != perPart {
			t.Errorf("%s: %d distinct records reached the function, want %d", k, len(got), perPart)
		}
	}
	n := 0
	for _, o := range byPart {
		n += len(o)
	}
	t.Logf("partitions invoked by replica: %v; %d records reached the function for %d produced", replicas, n, parts*perPart)
}

func TestAFetchReturnsAtMostMaxPollRecordsTheRestInOrderLater(t *testing.T) {
	e := newEnv(t, 2, nil)
	var want []string
	for i := range 25 {
		v := fmt.Sprintf("r%02d", i)
		e.produce(int32(i%2), v)
		want = append(want, v)
	}
	src, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: "gpoll", FromStart: true, MaxPollRecords: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string][]int64{} // offsets per partition, in the order fetched
	n := 0
	for n < len(want) {
		msgs, err := src.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		if len(msgs) > 10 {
			t.Fatalf("a fetch returned %d records, over MaxPollRecords 10", len(msgs))
		}
		for _, m := range msgs {
			got[m.Record.Partition] = append(got[m.Record.Partition], m.Record.Offset)
		}
		n += len(msgs)
	}
	for p, offs := range got {
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("partition %s: offsets %v, want 0, 1, 2, ... each once", p, offs)
			}
		}
	}
	if len(got[events.KafkaPartitionKey(topic, 0)]) != 13 || len(got[events.KafkaPartitionKey(topic, 1)]) != 12 {
		t.Errorf("records per partition %v, want 13 and 12", got)
	}
	if _, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: "gpoll2", MaxPollRecords: -1}); err == nil || !strings.Contains(err.Error(), "MaxPollRecords") {
		t.Errorf("MaxPollRecords -1: %v, want an error naming it", err)
	}
	if _, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: "gpoll3", BatchSize: -1}); err == nil || !strings.Contains(err.Error(), "BatchSize") {
		t.Errorf("BatchSize -1: %v, want an error naming it", err)
	}
}
