package sqs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/poller/pollertest"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/eventsources/sqs/sqstest"
)

// env is one queue, a fake activator, and the batches the function got. The queue is on
// sqstest's server (newEnv) or on a real SQS-compatible server (newRealQueue).
type env struct {
	t        *testing.T
	srv      *sqstest.Server // nil on a real server
	url      string
	endpoint string // the source's Endpoint: empty means the host of url
	client   *awssqs.Client
	fake     *invoketest.Server
	mu       sync.Mutex
	batches  [][]events.SQSMessage
}

func newEnv(t *testing.T, h func([]events.SQSMessage) invoketest.Outcome) *env {
	t.Helper()
	e := &env{t: t, srv: sqstest.New()}
	t.Cleanup(e.srv.Close)
	e.url = e.srv.CreateQueue("orders")
	var err error
	e.client, err = sqs.NewClient(sqs.Config{QueueURL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	e.startActivator(h)
	return e
}

// startActivator starts the fake activator, recording each batch and answering with h
// (success when nil).
func (e *env) startActivator(h func([]events.SQSMessage) invoketest.Outcome) {
	e.fake = invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		var ev events.SQSEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil {
			e.t.Errorf("not an SQS event: %v", err)
		}
		e.mu.Lock()
		e.batches = append(e.batches, ev.Records)
		e.mu.Unlock()
		if h == nil {
			return invoketest.Outcome{}
		}
		return h(ev.Records)
	})
	e.t.Cleanup(e.fake.Close)
}

func (e *env) send(bodies ...string) {
	e.t.Helper()
	for _, b := range bodies {
		if _, err := e.client.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: aws.String(e.url), MessageBody: aws.String(b),
			MessageAttributes: map[string]types.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("test")}}}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) run(cfg poller.Config) (stop func()) {
	e.t.Helper()
	src, err := sqs.Open(sqs.Config{QueueURL: e.url, Endpoint: e.endpoint, VisibilityTimeout: time.Second, WaitTime: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	return pollertest.Run(e.t, cfg, 10, src, e.fake.Invoker())
}

func (e *env) seen() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := map[string]int{}
	for _, b := range e.batches {
		for _, m := range b {
			n[m.Body]++
		}
	}
	return n
}

// empty: no message left, visible or in flight (deleted, not just received).
func (e *env) empty() bool {
	if e.srv != nil {
		return len(e.srv.Bodies(e.url)) == 0
	}
	out, err := e.client.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(e.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)] == "0" &&
		out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)] == "0"
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

func TestMessagesReachTheFunctionInLambdasShapeAndAreDeleted(t *testing.T) {
	e := newEnv(t, nil)
	e.send("a", "b", "c")
	e.run(poller.Config{Window: 300 * time.Millisecond})
	eventually(t, "the queue to empty", e.empty)
	if n := e.seen(); n["a"] != 1 || n["b"] != 1 || n["c"] != 1 {
		t.Errorf("function saw %v", n)
	}
	e.mu.Lock()
	m := e.batches[0][0]
	e.mu.Unlock()
	if m.EventSource != "aws:sqs" || m.EventSourceARN != "arn:aws:sqs:us-east-1:000000000000:orders" || m.AWSRegion != "us-east-1" ||
		m.Attributes.ApproximateReceiveCount != "1" || m.Attributes.SentTimestamp == "" || m.MD5OfBody == "" || m.ReceiptHandle == "" ||
		aws.ToString(m.MessageAttributes["kind"].StringValue) != "test" {
		t.Errorf("record %+v", m)
	}
}

func TestFilteredMessagesAreDeletedWithoutInvoking(t *testing.T) {
	e := newEnv(t, nil)
	e.send(`{"kind":"keep"}`, `{"kind":"drop"}`, "plain text")
	m, err := filter.CompilePatterns([]string{`{"body":{"kind":["keep"]}}`}, filter.ForSource(filter.SourceSQS))
	if err != nil {
		t.Fatal(err)
	}
	e.run(poller.Config{Filter: m, Window: 200 * time.Millisecond})
	eventually(t, "the queue to empty", e.empty)
	// SQS drops a plain-text body under a JSON pattern (spec §4), unlike Kafka.
	if n := e.seen(); len(n) != 1 || n[`{"kind":"keep"}`] != 1 {
		t.Errorf("function saw %v", n)
	}
}

func TestReportedFailureReappearsAloneAfterTheVisibilityTimeout(t *testing.T) {
	var mu sync.Mutex
	failed := false
	e := newEnv(t, func(recs []events.SQSMessage) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if r.Body == "bad" && !failed {
				failed = true
				return invoketest.Outcome{Body: []byte(fmt.Sprintf(`{"batchItemFailures":[{"itemIdentifier":%q}]}`, r.MessageID))}
			}
		}
		return invoketest.Outcome{}
	})
	e.send("ok1", "bad", "ok2")
	e.run(poller.Config{Window: 300 * time.Millisecond, Policy: batch.Policy{ReportBatchItemFailures: true}})
	eventually(t, "the queue to empty", e.empty)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.batches) != 2 || len(e.batches[0]) != 3 || len(e.batches[1]) != 1 || e.batches[1][0].Body != "bad" || e.batches[1][0].Attributes.ApproximateReceiveCount != "2" {
		t.Errorf("batches %+v, want the failed message alone, received a second time", e.batches)
	}
}

func TestFunctionErrorLeavesTheWholeBatchToReappear(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	e := newEnv(t, func([]events.SQSMessage) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return invoketest.Outcome{FunctionError: "Unhandled"}
		}
		return invoketest.Outcome{}
	})
	e.send("x", "y")
	e.run(poller.Config{Window: 300 * time.Millisecond})
	eventually(t, "the queue to empty", e.empty)
	if n := e.seen(); n["x"] != 2 || n["y"] != 2 {
		t.Errorf("function saw %v, want both messages twice", n)
	}
}

func TestDisablingStopsConsumptionAndEnablingResumesWithoutLoss(t *testing.T) {
	e := newEnv(t, nil)
	e.send("1")
	stop := e.run(poller.Config{})
	eventually(t, "the first message", func() bool { return e.seen()["1"] == 1 })
	// Deleted after the function answered: stopping earlier cuts the answer short and lets
	// the message reappear (at least once), which is not what this test is about.
	eventually(t, "the first message's deletion", e.empty)
	stop()
	e.send("2", "3")
	time.Sleep(300 * time.Millisecond)
	if n := e.seen(); n["2"] != 0 {
		t.Fatalf("consumed while disabled: %v", n)
	}
	e.run(poller.Config{Window: 200 * time.Millisecond})
	eventually(t, "the queue to empty", e.empty)
	if n := e.seen(); n["1"] != 1 || n["2"] != 1 || n["3"] != 1 {
		t.Errorf("function saw %v", n)
	}
}

func TestVisibilityFollowsLambdasRule(t *testing.T) {
	if got := sqs.VisibilityFor(3*time.Second, 0); got != 18*time.Second {
		t.Errorf("6 × 3 s = %v", got)
	}
	if got := sqs.VisibilityFor(10*time.Second, 5*time.Second); got != 65*time.Second {
		t.Errorf("6 × 10 s + 5 s = %v", got)
	}
}
