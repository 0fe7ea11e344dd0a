package sqs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/test/brokers/fauxqs"
)

// The tests below run the SQS source against a real SQS-compatible server, fauxqs (AWS JSON
// 1.0, as aws-sdk-go-v2 speaks it): KLAMBDA_TEST_SQS_ENDPOINT, or a private fauxqs started by
// test/brokers/fauxqs.sh when it is installed.
var sqsEndpoint string

func TestMain(m *testing.M) {
	sqsEndpoint = os.Getenv("KLAMBDA_TEST_SQS_ENDPOINT")
	stop := func() {}
	if sqsEndpoint == "" && fauxqs.Installed() {
		base, err := os.MkdirTemp("", "klambda-fauxqs-sqs-")
		if err == nil {
			var stopServer func()
			if sqsEndpoint, stopServer, err = fauxqs.Start(filepath.Join(base, "fauxqs")); err == nil {
				stop = func() { stopServer(); _ = os.RemoveAll(base) }
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// newRealQueue is an env on a fresh queue of the real server.
func newRealQueue(t *testing.T, h func([]events.SQSMessage) invoketest.Outcome) *env {
	t.Helper()
	if sqsEndpoint == "" {
		t.Skip("no SQS-compatible server: run test/brokers/fauxqs.sh install (or set KLAMBDA_TEST_SQS_ENDPOINT)")
	}
	// The endpoint is given: fauxqs's queue URLs name a host (sqs.<region>.localhost) that
	// need not resolve here.
	q := &env{t: t, endpoint: sqsEndpoint}
	var err error
	q.client, err = sqs.NewClient(sqs.Config{Endpoint: sqsEndpoint})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(t.Name(), "/", "-") + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	out, err := q.client.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String(name)})
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

func TestRealServerMessagesReachTheFunctionInLambdasShapeAndAreDeleted(t *testing.T) {
	q := newRealQueue(t, nil)
	q.send("a", "b", "c")
	q.run(poller.Config{Window: 300 * time.Millisecond})
	eventually(t, "the function to see every message", func() bool { return len(q.seen()) == 3 })
	eventually(t, "the queue to empty", q.empty)
	if n := q.seen(); n["a"] != 1 || n["b"] != 1 || n["c"] != 1 {
		t.Errorf("function saw %v", n)
	}
	q.mu.Lock()
	m := q.batches[0][0]
	q.mu.Unlock()
	name := q.url[strings.LastIndex(q.url, "/")+1:]
	if m.EventSource != "aws:sqs" || !strings.HasSuffix(m.EventSourceARN, ":"+name) || !strings.HasPrefix(m.EventSourceARN, "arn:aws:sqs:us-east-1:") ||
		m.AWSRegion != "us-east-1" || m.Attributes.ApproximateReceiveCount != "1" || m.Attributes.SentTimestamp == "" ||
		m.MD5OfBody == "" || m.ReceiptHandle == "" || m.MessageID == "" || aws.ToString(m.MessageAttributes["kind"].StringValue) != "test" {
		t.Errorf("record %+v", m)
	}
}

func TestRealServerFilteredMessagesAreDeletedWithoutInvoking(t *testing.T) {
	q := newRealQueue(t, nil)
	q.send(`{"kind":"keep"}`, `{"kind":"drop"}`, "plain text")
	m, err := filter.CompilePatterns([]string{`{"body":{"kind":["keep"]}}`}, filter.ForSource(filter.SourceSQS))
	if err != nil {
		t.Fatal(err)
	}
	q.run(poller.Config{Filter: m, Window: 200 * time.Millisecond})
	eventually(t, "the kept message", func() bool { return q.seen()[`{"kind":"keep"}`] == 1 })
	eventually(t, "the queue to empty", q.empty)
	if n := q.seen(); len(n) != 1 {
		t.Errorf("function saw %v", n)
	}
}

func TestRealServerReportedFailureReappearsAloneAfterTheVisibilityTimeout(t *testing.T) {
	var mu sync.Mutex
	failed := false
	q := newRealQueue(t, func(recs []events.SQSMessage) invoketest.Outcome {
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
	q.send("ok1", "bad", "ok2")
	q.run(poller.Config{Window: 300 * time.Millisecond, Policy: batch.Policy{ReportBatchItemFailures: true}})
	eventually(t, "the failed message's second delivery", func() bool { return q.seen()["bad"] == 2 })
	eventually(t, "the queue to empty", q.empty)
	q.mu.Lock()
	defer q.mu.Unlock()
	last := q.batches[len(q.batches)-1]
	if len(last) != 1 || last[0].Body != "bad" || last[0].Attributes.ApproximateReceiveCount != "2" {
		t.Errorf("batches %+v, want the failed message alone, received a second time", q.batches)
	}
}

func TestRealServerDisablingStopsConsumptionAndEnablingResumesWithoutLoss(t *testing.T) {
	q := newRealQueue(t, nil)
	q.send("1")
	stop := q.run(poller.Config{})
	eventually(t, "the first message", func() bool { return q.seen()["1"] == 1 })
	// Deleted after the function answered: stopping earlier would let it reappear (at least
	// once), which is not what this test is about.
	eventually(t, "the first message's deletion", q.empty)
	stop()
	q.send("2", "3")
	time.Sleep(500 * time.Millisecond)
	if n := q.seen(); n["2"] != 0 || n["3"] != 0 {
		t.Fatalf("consumed while disabled: %v", n)
	}
	q.run(poller.Config{Window: 200 * time.Millisecond})
	eventually(t, "the messages sent while disabled", func() bool { n := q.seen(); return n["2"] == 1 && n["3"] == 1 })
	eventually(t, "the queue to empty", q.empty)
	if n := q.seen(); n["1"] != 1 || n["2"] != 1 || n["3"] != 1 {
		t.Errorf("function saw %v", n)
	}
}
