package poller

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// memSource is an in-memory stream: one partition "p", records fetched once, checkpoints
// recorded.
type memSource struct {
	mu      sync.Mutex
	pending []Message
	cps     []int64
	failed  []events.OnFailureRecord
}

func (m *memSource) Mode() batch.Mode { return batch.Stream }
func (m *memSource) Fetch(ctx context.Context) ([]Message, error) {
	m.mu.Lock()
	out := m.pending
	m.pending = nil
	m.mu.Unlock()
	if len(out) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return out, nil
}
func (m *memSource) EnvelopeBytes() int { return 20 }
func (m *memSource) Event(recs []batch.Record) ([]byte, error) {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return json.Marshal(ids)
}
func (m *memSource) Settle(_ context.Context, s Settlement) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cp, ok := s.Checkpoints["p"]; ok {
		m.cps = append(m.cps, cp)
	}
	return nil
}
func (m *memSource) DescribeFailure(rec *events.OnFailureRecord, _ []batch.Record) {
	m.mu.Lock()
	m.failed = append(m.failed, *rec)
	m.mu.Unlock()
}
func (m *memSource) Close() error { return nil }
func (m *memSource) FilterRecord(r batch.Record) filter.Record {
	return filter.FromSQS(events.SQSMessage{MessageID: r.ID})
}
func (m *memSource) checkpoint() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cps) == 0 {
		return -1
	}
	return m.cps[len(m.cps)-1]
}

func msg(off int64, size int) Message {
	return Message{Record: batch.Record{ID: strconv.FormatInt(off, 10), Partition: "p", Offset: off, Size: size, Timestamp: time.Now()}}
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A throttle is not a function error: with maximumRetryAttempts 0 a throttled batch is still
// retried (after a backoff) and delivered, never discarded; and it is counted by outcome.
func TestThrottlesDoNotUseUpRetriesAndAreCounted(t *testing.T) {
	var mu sync.Mutex
	n := 0
	fake := invoketest.New(func(invoketest.Call) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			return invoketest.Outcome{Status: 429}
		}
		return invoketest.Outcome{}
	})
	defer fake.Close()
	src := &memSource{pending: []Message{msg(0, 10), msg(1, 10)}}
	throttled0 := testutil.ToFloat64(batches.WithLabelValues("ns", "throttled", "fn", "Throttled"))
	success0 := testutil.ToFloat64(batches.WithLabelValues("ns", "throttled", "fn", "Success"))
	pol := batch.DefaultStreamPolicy()
	pol.MaximumRetryAttempts = 0
	pol.Backoff = batch.Backoff{Initial: 10 * time.Millisecond}
	p := New(Config{Namespace: "ns", Name: "throttled", Function: "fn", BatchSize: 10, Policy: pol}, src, fake.Invoker(), testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait(t, "checkpoint 1", func() bool { return src.checkpoint() == 1 })
	if len(src.failed) != 0 {
		t.Errorf("a throttled batch was discarded: %+v", src.failed)
	}
	if got := testutil.ToFloat64(batches.WithLabelValues("ns", "throttled", "fn", "Throttled")) - throttled0; got != 1 {
		t.Errorf("throttled batches = %v", got)
	}
	if got := testutil.ToFloat64(batches.WithLabelValues("ns", "throttled", "fn", "Success")) - success0; got != 1 {
		t.Errorf("successful batches = %v", got)
	}
	if p.LastProcessingResult() != ResultOK {
		t.Errorf("last processing result %q", p.LastProcessingResult())
	}
}

// A record that alone exceeds 6 MB never reaches the function: it goes to the on-failure
// destination as MaximumPayloadSizeExceeded (responseContext null), and the checkpoint moves
// past it, the records around it delivered in order.
func TestARecordOverThePayloadLimitIsDiscardedAndPassed(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	src := &memSource{pending: []Message{msg(0, 10), msg(1, contract.MaxSyncPayload), msg(2, 10)}}
	dest := &memDest{}
	failed0 := testutil.ToFloat64(failures.WithLabelValues("ns", "large", "fn", events.ConditionMaximumPayloadSizeExceeded))
	p := New(Config{Namespace: "ns", Name: "large", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy(), OnFailure: dest}, src, fake.Invoker(), testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait(t, "checkpoint 2", func() bool { return src.checkpoint() == 2 })
	calls := fake.Calls()
	if len(calls) != 2 || string(calls[0].Payload) != `["0"]` || string(calls[1].Payload) != `["2"]` {
		t.Errorf("invocations %v", calls)
	}
	dest.mu.Lock()
	defer dest.mu.Unlock()
	if len(dest.sent) != 1 {
		t.Fatalf("%d on-failure records", len(dest.sent))
	}
	var rec events.OnFailureRecord
	_ = json.Unmarshal(dest.sent[0], &rec)
	if rec.RequestContext.Condition != events.ConditionMaximumPayloadSizeExceeded || rec.ResponseContext != nil || rec.RequestContext.ApproximateInvokeCount != 0 {
		t.Errorf("on-failure record %s", dest.sent[0])
	}
	if got := testutil.ToFloat64(failures.WithLabelValues("ns", "large", "fn", events.ConditionMaximumPayloadSizeExceeded)) - failed0; got != 1 {
		t.Errorf("failures metric = %v", got)
	}
}

type memDest struct {
	mu   sync.Mutex
	sent [][]byte
}

func (d *memDest) Send(_ context.Context, b []byte) error {
	d.mu.Lock()
	d.sent = append(d.sent, b)
	d.mu.Unlock()
	return nil
}
