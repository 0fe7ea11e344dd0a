// Package destination sends a mapping's on-failure records (events.OnFailureRecord, JSON) to
// the API's Destination: a NATS subject, a Kafka topic, an SQS-compatible queue or a Function
// (invoked asynchronously through the activator), in place of Lambda's SQS and SNS targets.
package destination

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/invoke"
)

// Sender delivers one on-failure record. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, record []byte) error
	Close()
}

// Kafka produces records to a topic.
type Kafka struct {
	Client *kgo.Client
	Topic  string
}

// NewKafka connects a producer.
func NewKafka(opts []kgo.Opt, topic string) (*Kafka, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka destination: %w", err)
	}
	return &Kafka{Client: cl, Topic: topic}, nil
}

// Send produces synchronously.
func (k *Kafka) Send(ctx context.Context, record []byte) error {
	return k.Client.ProduceSync(ctx, &kgo.Record{Topic: k.Topic, Value: record}).FirstErr()
}

// Close closes the producer.
func (k *Kafka) Close() { k.Client.Close() }

// NATS publishes to a subject; when the subject belongs to a JetStream stream, the publish
// waits for the stream's acknowledgement.
type NATS struct {
	Conn    *nats.Conn
	Subject string
}

// NewNATS connects.
func NewNATS(servers []string, subject string, opts ...nats.Option) (*NATS, error) {
	nc, err := nats.Connect(strings.Join(servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("nats destination: %w", err)
	}
	return &NATS{Conn: nc, Subject: subject}, nil
}

// Send publishes, through JetStream when a stream captures the subject.
func (n *NATS) Send(ctx context.Context, record []byte) error {
	js, err := n.Conn.JetStream()
	if err == nil {
		if _, err := js.Publish(n.Subject, record, nats.Context(ctx)); err == nil {
			return nil
		} else if !errors.Is(err, nats.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
	}
	if err := n.Conn.Publish(n.Subject, record); err != nil {
		return err
	}
	return n.Conn.FlushWithContext(ctx)
}

// Close closes the connection.
func (n *NATS) Close() { n.Conn.Close() }

// SQS sends to a queue.
type SQS struct {
	Client   *sqs.Client
	QueueURL string
}

// Send sends one message.
func (s *SQS) Send(ctx context.Context, record []byte) error {
	_, err := s.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL), MessageBody: aws.String(string(record))})
	return err
}

// Close does nothing.
func (s *SQS) Close() {}

// Function invokes a function asynchronously (InvocationType Event) with the record.
type Function struct {
	Invoker   invoke.Invoker
	Namespace string
	Name      string // name or name:qualifier
}

// Send invokes.
func (f *Function) Send(ctx context.Context, record []byte) error {
	resp, err := f.Invoker.Invoke(ctx, invoke.Request{Namespace: f.Namespace, FunctionName: f.Name, Payload: record, Async: true})
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("invoking %s: status %d", f.Name, resp.StatusCode)
	}
	return nil
}

// Close does nothing.
func (f *Function) Close() {}
