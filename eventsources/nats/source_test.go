package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/nats"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/poller/pollertest"
	"github.com/klambda/klambda/internal/netguard"
)

type env struct {
	t       *testing.T
	url     string
	js      jetstream.JetStream
	nc      *gonats.Conn
	fake    *invoketest.Server
	mu      sync.Mutex
	batches [][]events.NATSRecord
}

// newEnv runs nats-server with JetStream in this process, with a stream ORDERS on orders.>
// and a stream FAILURES on failures.
func newEnv(t *testing.T, h func([]events.NATSRecord) invoketest.Outcome) *env {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	e := &env{t: t, url: ns.ClientURL()}
	e.nc, err = gonats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	e.js, _ = jetstream.New(e.nc)
	ctx := context.Background()
	for name, subj := range map[string]string{"ORDERS": "orders.>", "FAILURES": "failures"} {
		if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
	}
	e.fake = invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		var ev events.NATSEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil || ev.EventSource != "klambda:nats" {
			t.Errorf("not a NATS event (%v): %s", err, c.Payload)
		}
		e.mu.Lock()
		e.batches = append(e.batches, ev.Records["ORDERS"])
		e.mu.Unlock()
		if h == nil {
			return invoketest.Outcome{}
		}
		return h(ev.Records["ORDERS"])
	})
	t.Cleanup(e.fake.Close)
	return e
}

func (e *env) publish(values ...string) {
	e.t.Helper()
	for _, v := range values {
		if _, err := e.js.Publish(context.Background(), "orders.new", []byte(v)); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) run(cfg poller.Config) (stop func()) {
	e.t.Helper()
	src, err := nats.Open(context.Background(), nats.Config{Servers: []string{e.url}, Stream: "ORDERS", Durable: "esm-uuid", FetchSize: 100, MaxWait: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return pollertest.Run(e.t, cfg, 100, src, e.fake.Invoker())
}

func (e *env) acked() uint64 {
	c, err := e.js.Consumer(context.Background(), "ORDERS", "esm-uuid")
	if err != nil {
		return 0
	}
	info, err := c.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.AckFloor.Stream
}

func (e *env) seen() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := map[string]int{}
	for _, b := range e.batches {
		for _, r := range b {
			n[string(r.Data)]++
		}
	}
	return n
}

func (e *env) shapes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, b := range e.batches {
		var vs []string
		for _, r := range b {
			vs = append(vs, string(r.Data))
		}
		out = append(out, strings.Join(vs, ","))
	}
	return out
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

func TestRecordsReachTheFunctionAndAreAcknowledged(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("a", "b", "c")
	e.run(poller.Config{Window: 200 * time.Millisecond, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "ack floor 3", func() bool { return e.acked() == 3 })
	if got := e.shapes(); len(got) != 1 || got[0] != "a,b,c" {
		t.Errorf("batches %v", got)
	}
	e.mu.Lock()
	r := e.batches[0][1]
	e.mu.Unlock()
	if r.Stream != "ORDERS" || r.Subject != "orders.new" || r.Sequence != 2 || r.NumDelivered != 1 || r.Timestamp == 0 {
		t.Errorf("record %+v", r)
	}
}

func TestFilteredRecordsAreAcknowledgedButNeverInvoked(t *testing.T) {
	e := newEnv(t, nil)
	e.publish(`{"n":1}`, `{"n":2}`, `{"n":3}`)
	m, err := filter.CompilePatterns([]string{`{"data":{"n":[{"numeric":[">=",2]}]}}`})
	if err != nil {
		t.Fatal(err)
	}
	e.run(poller.Config{Filter: m, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "ack floor 3", func() bool { return e.acked() == 3 })
	if n := e.seen(); n[`{"n":1}`] != 0 || n[`{"n":2}`] != 1 || n[`{"n":3}`] != 1 {
		t.Errorf("function saw %v", n)
	}
}

func TestFailedItemIsRetriedAloneAndExhaustedRecordsGoToTheNATSDestination(t *testing.T) {
	e := newEnv(t, func(recs []events.NATSRecord) invoketest.Outcome {
		for _, r := range recs {
			if string(r.Data) == "bad" {
				return invoketest.Outcome{Body: []byte(fmt.Sprintf(`{"batchItemFailures":[{"itemIdentifier":"%d"}]}`, r.Sequence))}
			}
		}
		return invoketest.Outcome{}
	})
	e.publish("ok1", "ok2", "bad")
	sub, err := e.nc.SubscribeSync("failures")
	if err != nil {
		t.Fatal(err)
	}
	dest, err := destination.NewNATS([]string{e.url}, "failures", &netguard.Policy{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	pol := batch.DefaultStreamPolicy()
	pol.ReportBatchItemFailures = true
	pol.MaximumRetryAttempts = 2
	e.run(poller.Config{Window: 200 * time.Millisecond, Policy: pol, OnFailure: dest})
	eventually(t, "ack floor 3", func() bool { return e.acked() == 3 })
	if got := strings.Join(e.shapes(), "|"); got != "ok1,ok2,bad|bad|bad" {
		t.Errorf("batches %s, want the failed record retried alone twice", got)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rec events.OnFailureRecord
	if err := json.Unmarshal(msg.Data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.NATSBatchInfo == nil || rec.NATSBatchInfo.RecordsInfo["ORDERS"].FirstRecordSequence != "3" || rec.RequestContext.Condition != "RetryAttemptsExhausted" {
		t.Errorf("on-failure record %s", msg.Data)
	}
}

func TestDisablingStopsConsumptionAndEnablingResumesWithoutLoss(t *testing.T) {
	var mu sync.Mutex
	slow := true
	e := newEnv(t, func([]events.NATSRecord) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		if slow {
			return invoketest.Outcome{Status: 429} // throttled: held, never acknowledged
		}
		return invoketest.Outcome{}
	})
	e.publish("1", "2")
	stop := e.run(poller.Config{Policy: batch.DefaultStreamPolicy()})
	eventually(t, "an attempt", func() bool { return len(e.shapes()) > 0 })
	stop() // disabled while the batch was throttled: naked back to the stream
	if e.acked() != 0 {
		t.Fatal("acknowledged a batch that never succeeded")
	}
	e.publish("3")
	mu.Lock()
	slow = false
	mu.Unlock()
	e.run(poller.Config{Policy: batch.DefaultStreamPolicy()})
	eventually(t, "ack floor 3", func() bool { return e.acked() == 3 })
	n := e.seen()
	for _, v := range []string{"1", "2", "3"} {
		if n[v] == 0 {
			t.Errorf("record %s lost", v)
		}
	}
}

func TestStartingPositionLatestAndAtTimestamp(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("old1", "old2")
	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	time.Sleep(50 * time.Millisecond)
	e.publish("new1")
	open := func(durable string, start nats.StartingPosition, at time.Time) func() {
		src, err := nats.Open(context.Background(), nats.Config{Servers: []string{e.url}, Stream: "ORDERS", Durable: durable, Start: start, StartTime: at, MaxWait: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		p := poller.New(poller.Config{Namespace: "ns", Name: durable, Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, src, e.fake.Invoker(), testr.New(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	stop := open("at-ts", nats.AtTimestamp, mid)
	eventually(t, "new1 from AT_TIMESTAMP", func() bool { return e.seen()["new1"] == 1 })
	stop()
	stop = open("latest", nats.Latest, time.Time{})
	time.Sleep(300 * time.Millisecond) // the consumer exists before new2
	e.publish("new2")
	eventually(t, "new2 from LATEST", func() bool { return e.seen()["new2"] == 1 })
	stop()
	if n := e.seen(); n["old1"] != 0 || n["old2"] != 0 || n["new1"] != 1 {
		t.Errorf("function saw %v: AT_TIMESTAMP and LATEST must skip older messages", n)
	}
}

// With parallelizationFactor > 1, a stream's subjects are spread over lanes invoked at once,
// and each subject's messages still reach the function in stream order, each once.
func TestParallelizationFactorKeepsOrderPerSubject(t *testing.T) {
	const subjects, perSubject = 6, 12
	var (
		mu                 sync.Mutex
		inFlight, maxFlies int
	)
	e := newEnv(t, func([]events.NATSRecord) invoketest.Outcome {
		mu.Lock()
		inFlight++
		maxFlies = max(maxFlies, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return invoketest.Outcome{}
	})
	for i := range perSubject {
		for s := range subjects {
			if _, err := e.js.Publish(context.Background(), fmt.Sprintf("orders.s%d", s), fmt.Appendf(nil, "s%d:%d", s, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.run(poller.Config{BatchSize: 3, Lanes: 4, Policy: batch.DefaultStreamPolicy()})
	eventually(t, "everything acknowledged", func() bool { return e.acked() == subjects*perSubject })
	next := map[string]int{}
	e.mu.Lock()
	for _, b := range e.batches {
		for _, r := range b {
			s, n, _ := strings.Cut(string(r.Data), ":")
			if r.Subject != "orders."+s {
				t.Errorf("record %s on subject %s", r.Data, r.Subject)
			}
			if want := fmt.Sprint(next[s]); n != want {
				t.Errorf("subject %s: message %s came when %s was next", s, n, want)
			}
			next[s]++
		}
	}
	e.mu.Unlock()
	for s := range subjects {
		if n := next[fmt.Sprintf("s%d", s)]; n != perSubject {
			t.Errorf("subject s%d: %d messages delivered, want %d", s, n, perSubject)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxFlies < 2 {
		t.Errorf("at most %d invocation at once: the lanes did not run in parallel", maxFlies)
	}
}
