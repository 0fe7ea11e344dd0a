package sqs_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/go-logr/logr/testr"

	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/sqs"
)

// sendMany sends n messages in batches of 10; group, when set, makes them FIFO messages of
// groups group-0..group-(groups-1) (body "<group>/<i>", i counting per group).
func (e *env) sendMany(n, groups int) {
	e.t.Helper()
	perGroup := map[int]int{}
	for i := 0; i < n; i += 10 {
		in := &awssqs.SendMessageBatchInput{QueueUrl: aws.String(e.url)}
		for j := i; j < min(n, i+10); j++ {
			entry := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(strconv.Itoa(j))}
			if groups > 0 {
				g := j % groups
				entry.MessageBody = aws.String(fmt.Sprintf("g%d/%d", g, perGroup[g]))
				perGroup[g]++
				entry.MessageGroupId = aws.String(fmt.Sprintf("g%d", g))
				entry.MessageDeduplicationId = aws.String(strconv.Itoa(j))
			}
			in.Entries = append(in.Entries, entry)
		}
		out, err := e.client.SendMessageBatch(context.Background(), in)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			e.t.Fatalf("send: %+v", out.Failed[0])
		}
	}
}

// runScaled runs a poller scaled as Lambda's SQS pollers, returning it.
func (e *env) runScaled(sc poller.Scaling) *poller.Poller {
	e.t.Helper()
	src, err := sqs.Open(sqs.Config{QueueURL: e.url, Endpoint: e.endpoint, VisibilityTimeout: 30 * time.Second, WaitTime: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	p := poller.New(poller.Config{Namespace: "ns", Name: "esm", Function: "fn", BatchSize: 10, Scaling: &sc},
		src, e.fake.Invoker(), testr.New(e.t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return p
}

// Under a backlog the pollers ramp from 5 to the cap, never above it, and back to 5 once
// the queue is empty (fauxqs, a real SQS-compatible server).
func TestRealServerPollersRampUpUnderABacklogAndBackDownWhenEmpty(t *testing.T) {
	var inFlight, most atomic.Int32
	q := newRealQueue(t, func([]events.SQSMessage) invoketest.Outcome {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		inFlight.Add(-1)
		return invoketest.Outcome{}
	})
	const total, maxConc = 2000, 20
	q.sendMany(total, 0)
	p := q.runScaled(poller.Scaling{Start: 5, Max: maxConc, Interval: 200 * time.Millisecond, Step: 5})
	if c := p.Concurrency(); c != 5 {
		t.Errorf("started with %d pollers, want 5", c)
	}
	reached := false
	eventually(t, "the ramp to the cap", func() bool {
		reached = reached || p.Concurrency() == maxConc
		return reached
	})
	deadline := time.Now().Add(60 * time.Second)
	for len(q.seen()) < total {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages reached the function", len(q.seen()), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, "the pollers back to 5 on an empty queue", func() bool { return p.Concurrency() == 5 })
	if m := most.Load(); m <= 5 || m > maxConc {
		t.Errorf("at most %d invocations at once, want more than 5 and at most %d", m, maxConc)
	}
	t.Logf("at most %d invocations at once", most.Load())
}

// Throttled invocations hold the ramp: a backlog of full receives adds no poller while the
// function throttles, and the ramp goes on once it stops.
func TestRealServerThrottlesHoldTheRamp(t *testing.T) {
	var throttling atomic.Bool
	throttling.Store(true)
	q := newRealQueue(t, func([]events.SQSMessage) invoketest.Outcome {
		if throttling.Load() {
			return invoketest.Outcome{Status: 429}
		}
		time.Sleep(50 * time.Millisecond)
		return invoketest.Outcome{}
	})
	q.sendMany(1000, 0)
	p := q.runScaled(poller.Scaling{Start: 5, Max: 30, Interval: 200 * time.Millisecond, Step: 5})
	time.Sleep(2 * time.Second)
	if c := p.Concurrency(); c != 5 {
		t.Errorf("%d pollers while every invocation throttles, want 5", c)
	}
	throttling.Store(false)
	eventually(t, "the ramp once throttling stops", func() bool { return p.Concurrency() > 5 })
}

// A FIFO queue under concurrent pollers: each message group reaches the function in order,
// one batch of a group at a time (SQS keeps a group's later messages back while earlier
// ones are in flight).
func TestRealServerFIFOGroupsKeepOrderUnderConcurrentPollers(t *testing.T) {
	const groups, total = 8, 800
	var (
		mu       sync.Mutex
		byGroup  = map[string][]int{}
		inFlight = map[string]int{}
		problems []string
	)
	var q *env
	handler := func(recs []events.SQSMessage) invoketest.Outcome {
		mu.Lock()
		here := map[string]bool{}
		for _, r := range recs {
			g, n, _ := strings.Cut(r.Body, "/")
			i, _ := strconv.Atoi(n)
			if !here[g] {
				here[g] = true
				inFlight[g]++
				if inFlight[g] > 1 {
					problems = append(problems, "two batches of "+g+" at once")
				}
			}
			if s := byGroup[g]; len(s) > 0 && i != s[len(s)-1]+1 {
				problems = append(problems, fmt.Sprintf("%s: %d after %d", g, i, s[len(s)-1]))
			}
			byGroup[g] = append(byGroup[g], i)
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		for g := range here {
			inFlight[g]--
		}
		mu.Unlock()
		return invoketest.Outcome{}
	}
	q = newRealFIFOQueue(t, handler)
	q.sendMany(total, groups)
	p := q.runScaled(poller.Scaling{Start: 5, Max: 10, Interval: 200 * time.Millisecond, Step: 5})
	eventually(t, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range byGroup {
			n += len(s)
		}
		return n >= total
	})
	mu.Lock()
	defer mu.Unlock()
	for _, pr := range problems {
		t.Error(pr)
	}
	for g, s := range byGroup {
		if len(s) != total/groups {
			t.Errorf("%s: %d messages, want %d", g, len(s), total/groups)
		}
	}
	t.Logf("pollers at the end: %d", p.Concurrency())
}

// newRealFIFOQueue is newRealQueue for a FIFO queue.
func newRealFIFOQueue(t *testing.T, h func([]events.SQSMessage) invoketest.Outcome) *env {
	t.Helper()
	if sqsEndpoint == "" {
		t.Skip("no SQS-compatible server: run test/brokers/fauxqs.sh install (or set KLAMBDA_TEST_SQS_ENDPOINT)")
	}
	q := &env{t: t, endpoint: sqsEndpoint}
	var err error
	q.client, err = sqs.NewClient(sqs.Config{Endpoint: sqsEndpoint})
	if err != nil {
		t.Fatal(err)
	}
	name := "fifo-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".fifo"
	out, err := q.client.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"FifoQueue": "true"}})
	if err != nil {
		t.Fatalf("creating queue %s: %v", name, err)
	}
	q.url = aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		_, _ = q.client.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(q.url)})
	})
	q.startActivator(h)
	return q
}

// A scaled mapping's pollers delete their batches at once, not one delete at a time across
// all of them (which bounded the drain rate by one DeleteMessageBatch round trip).
func TestScaledPollersDeleteConcurrently(t *testing.T) {
	e := newEnv(t, nil)
	var deleting, most atomic.Int32
	inner := e.srv.Config.Handler
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".DeleteMessageBatch") {
			n := deleting.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(30 * time.Millisecond)
			defer deleting.Add(-1)
		}
		inner.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	e.endpoint = proxy.URL
	var bodies []string
	for i := range 200 {
		bodies = append(bodies, strconv.Itoa(i))
	}
	e.send(bodies...)
	e.runScaled(poller.Scaling{Start: 10, Max: 10, Interval: 200 * time.Millisecond, Step: 5})
	eventually(t, "every message deleted", func() bool {
		visible, inFlight := e.srv.Counts(e.url)
		return visible == 0 && inFlight == 0
	})
	if m := most.Load(); m < 2 {
		t.Errorf("at most %d DeleteMessageBatch at once from 10 pollers", m)
	}
	t.Logf("at most %d DeleteMessageBatch at once", most.Load())
}
