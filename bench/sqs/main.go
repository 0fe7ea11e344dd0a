// Command sqs benchmarks the SQS poller: messages per second drained from a backlog by one
// mapping (batch size 10, maximumConcurrency -concurrency, Lambda's ramp from 5 pollers)
// invoking a trivial function behind the fake activator, against a plain aws-sdk-go-v2
// receive/delete loop of as many receivers, in the same run, from the same fauxqs server
// (test/brokers/fauxqs.sh install), each on a fresh queue filled with the same messages.
//
//	go run ./bench/sqs [-messages 100000] [-concurrency 10] [-size 256] [-endpoint URL]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/go-logr/logr"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/test/brokers/fauxqs"
)

var (
	messages    = flag.Int("messages", 100000, "messages in each backlog")
	concurrency = flag.Int("concurrency", 10, "the mapping's maximumConcurrency and the plain loop's receivers")
	size        = flag.Int("size", 256, "message body size in bytes")
	endpoint    = flag.String("endpoint", "", "an SQS-compatible endpoint; empty starts a private fauxqs")
	rounds      = flag.Int("rounds", 2, "alternating rounds; the best of each side counts")
)

func main() {
	flag.Parse()
	ep := *endpoint
	if ep == "" {
		if !fauxqs.Installed() {
			log.Fatal("fauxqs is not installed: test/brokers/fauxqs.sh install (or give -endpoint)")
		}
		base, err := os.MkdirTemp("", "klambda-bench-sqs-")
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = os.RemoveAll(base) }()
		var stop func()
		if ep, stop, err = fauxqs.Start(filepath.Join(base, "fauxqs")); err != nil {
			log.Fatal(err)
		}
		defer stop()
	}
	client, err := sqs.NewClient(sqs.Config{Endpoint: ep})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var plainBest, mappingBest float64
	for round := range *rounds {
		plainBest = max(plainBest, drain(ctx, client, ep, fmt.Sprintf("plain-%d-%d", round, time.Now().UnixNano()), plainLoop))
		mappingBest = max(mappingBest, drain(ctx, client, ep, fmt.Sprintf("mapping-%d-%d", round, time.Now().UnixNano()), mapping))
	}
	fmt.Printf("SQS (fauxqs) backlog of %d messages of %d bytes drained to a trivial function; %d receivers / maximumConcurrency %d; host: %d cores; best of %d alternating rounds\n\n",
		*messages, *size, *concurrency, *concurrency, runtime.NumCPU(), *rounds)
	fmt.Printf("%-22s %18s %18s %8s\n", "", "plain receive/delete", "klambda mapping", "ratio")
	fmt.Printf("%-22s %16.0f/s %16.0f/s %7.2fx\n", "messages drained", plainBest, mappingBest, mappingBest/plainBest)
}

// drainer drains queue url until n messages reached its handler (seen counts them).
type drainer func(ctx context.Context, client *awssqs.Client, endpoint, url string, seen *atomic.Int64) (stop func())

// drain fills a fresh queue and returns the messages per second d drained from it.
func drain(ctx context.Context, client *awssqs.Client, ep, name string, d drainer) float64 {
	out, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		log.Fatal(err)
	}
	url := aws.ToString(out.QueueUrl)
	defer func() { _, _ = client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) }()
	fill(ctx, client, url)
	var seen atomic.Int64
	start := time.Now()
	stop := d(ctx, client, ep, url, &seen)
	deadline := start.Add(10 * time.Minute)
	for seen.Load() < int64(*messages) {
		if time.Now().After(deadline) {
			log.Fatalf("%s: only %d of %d messages drained", name, seen.Load(), *messages)
		}
		time.Sleep(time.Millisecond)
	}
	rate := float64(*messages) / time.Since(start).Seconds()
	stop()
	return rate
}

// fill sends the backlog in batches of 10 from 16 senders.
func fill(ctx context.Context, client *awssqs.Client, url string) {
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first := next.Add(10) - 10
				if first >= int64(*messages) {
					return
				}
				var entries []types.SendMessageBatchRequestEntry
				for i := first; i < min(first+10, int64(*messages)); i++ {
					entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.FormatInt(i, 10)), MessageBody: aws.String(string(body))})
				}
				out, err := client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
				if err != nil {
					log.Fatal(err)
				}
				if len(out.Failed) > 0 {
					log.Fatalf("sending: %d failed", len(out.Failed))
				}
			}
		}()
	}
	wg.Wait()
}

// plainLoop is the baseline: receivers that receive up to 10 messages (the attributes the
// SQS source asks for), count them, and delete them in one batch.
func plainLoop(ctx context.Context, client *awssqs.Client, _, url string, seen *atomic.Int64) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30,
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
					MessageAttributeNames:       []string{"All"},
				})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				seen.Add(int64(len(out.Messages)))
				entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				_, _ = client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// mapping is the SQS source and a scaled poller (5 pollers, up to -concurrency, as Lambda
// scales) invoking a function that counts the messages of each event, through the pollers'
// invoke client and the fake activator.
func mapping(ctx context.Context, _ *awssqs.Client, ep, url string, seen *atomic.Int64) func() {
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		seen.Add(int64(countMessages(c.Payload)))
		return invoketest.Outcome{}
	})
	fake.Forget()
	src, err := sqs.Open(sqs.Config{QueueURL: url, Endpoint: ep, VisibilityTimeout: 30 * time.Second, WaitTime: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	p := poller.New(poller.Config{Namespace: "bench", Name: "esm", Function: "fn", BatchSize: 10, Policy: batch.Policy{Mode: batch.Queue},
		Scaling: &poller.Scaling{Start: min(5, *concurrency), Max: *concurrency}}, src, fake.Invoker(), logr.Discard())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	return func() { cancel(); <-done; fake.Close() }
}

// countMessages counts the "messageId" fields of an SQS event.
func countMessages(ev []byte) int {
	n := 0
	for i := 0; i+len(`"messageId"`) <= len(ev); i++ {
		if string(ev[i:i+len(`"messageId"`)]) == `"messageId"` {
			n++
		}
	}
	return n
}
