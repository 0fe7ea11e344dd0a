// Package sqs is the SQS event source, for any SQS-compatible endpoint (aws-sdk-go-v2).
// Received messages stay hidden for the visibility timeout — at least 6 × the function's
// timeout plus the batching window, as Lambda requires of the queue — so other poller
// replicas never see them twice while they are processed; successes and filtered messages
// are deleted; failures are left to become visible again when the timeout ends, as in Lambda
// (the queue's redrive policy then moves poison messages to its DLQ).
//
// A message's batchItemFailures identifier is its messageId. A FIFO queue's messages are
// ordered by message group: the group is the lane key, so one group's messages are invoked
// in order, one batch at a time.
package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/poller"
)

// Config is an SQS source.
type Config struct {
	QueueURL string
	// Endpoint of the service; empty means the scheme and host of QueueURL.
	Endpoint string
	Region   string
	// Static credentials from the mapping's Secret; empty ones are placeholders (for
	// endpoints that don't check).
	AccessKeyID, SecretAccessKey, SessionToken string
	// VisibilityTimeout of received messages; see VisibilityFor.
	VisibilityTimeout time.Duration
	// WaitTime of a long poll (default 20 s, SQS's maximum).
	WaitTime time.Duration
}

// VisibilityFor is Lambda's rule: 6 × the function timeout + the batching window; and when
// window + timeout would not fit, window + timeout + 30 s.
func VisibilityFor(functionTimeout, window time.Duration) time.Duration {
	v := 6*functionTimeout + window
	if window+functionTimeout > v {
		v = window + functionTimeout + 30*time.Second
	}
	return v
}

// NewClient builds an SQS client for cfg (also used by SQS on-failure destinations).
func NewClient(cfg Config) (*awssqs.Client, error) {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		u, err := url.Parse(cfg.QueueURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("queue URL %q: not a URL", cfg.QueueURL)
		}
		endpoint = u.Scheme + "://" + u.Host
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	id, secret := cfg.AccessKeyID, cfg.SecretAccessKey
	if id == "" {
		id, secret = "klambda", "klambda"
	}
	return awssqs.New(awssqs.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, cfg.SessionToken),
	}), nil
}

// Source reads one queue.
type Source struct {
	cfg    Config
	client *awssqs.Client
	arn    string
	region string
	fifo   bool
}

var _ poller.Source = (*Source)(nil)

// Open builds the client.
func Open(cfg Config) (*Source, error) {
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = VisibilityFor(3*time.Second, 0)
	}
	if cfg.WaitTime <= 0 {
		cfg.WaitTime = 20 * time.Second
	}
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	return &Source{cfg: cfg, client: c, arn: QueueARN(cfg.QueueURL, region), region: region, fifo: strings.HasSuffix(cfg.QueueURL, ".fifo")}, nil
}

// QueueARN derives arn:aws:sqs:<region>:<account>:<name> from a queue URL
// (https://host/<account>/<name>).
func QueueARN(queueURL, region string) string {
	account, name := "000000000000", queueURL
	if u, err := url.Parse(queueURL); err == nil {
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) >= 2 {
			account, name = parts[len(parts)-2], parts[len(parts)-1]
		} else if len(parts) == 1 {
			name = parts[0]
		}
	}
	return "arn:aws:sqs:" + region + ":" + account + ":" + name
}

// Mode is Queue.
func (s *Source) Mode() batch.Mode { return batch.Queue }

// Fetch long-polls for up to 10 messages.
func (s *Source) Fetch(ctx context.Context) ([]poller.Message, error) {
	out, err := s.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(s.cfg.QueueURL),
		MaxNumberOfMessages:         10,
		WaitTimeSeconds:             int32(s.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32((s.cfg.VisibilityTimeout + time.Second - 1) / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("receiving from %s: %w", s.cfg.QueueURL, err)
	}
	msgs := make([]poller.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msgs = append(msgs, s.message(m))
	}
	return msgs, nil
}

func (s *Source) eventMessage(m types.Message) events.SQSMessage {
	a := m.Attributes
	em := events.SQSMessage{
		MessageID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		MD5OfBody: aws.ToString(m.MD5OfBody), EventSource: events.EventSourceSQS, EventSourceARN: s.arn, AWSRegion: s.region,
		Attributes: events.SQSAttributes{
			ApproximateReceiveCount: a["ApproximateReceiveCount"], SentTimestamp: a["SentTimestamp"], SenderID: a["SenderId"],
			ApproximateFirstReceiveTimestamp: a["ApproximateFirstReceiveTimestamp"], AWSTraceHeader: a["AWSTraceHeader"],
			SequenceNumber: a["SequenceNumber"], MessageGroupID: a["MessageGroupId"], MessageDeduplicationID: a["MessageDeduplicationId"],
		},
	}
	if len(m.MessageAttributes) > 0 {
		em.MessageAttributes = events.SQSMessageAttributes{}
		for k, v := range m.MessageAttributes {
			em.MessageAttributes[k] = events.SQSMessageAttribute{
				StringValue: v.StringValue, BinaryValue: v.BinaryValue, StringListValues: v.StringListValues,
				BinaryListValues: v.BinaryListValues, DataType: aws.ToString(v.DataType),
			}
		}
	}
	return em
}

func (s *Source) message(m types.Message) poller.Message {
	em := s.eventMessage(m)
	b, _ := json.Marshal(em)
	ts := time.Now()
	if ms, err := strconv.ParseInt(em.Attributes.SentTimestamp, 10, 64); err == nil {
		ts = time.UnixMilli(ms)
	}
	return poller.Message{
		Record: batch.Record{ID: em.MessageID, Size: len(b), Timestamp: ts, Ref: em},
		Key:    em.Attributes.MessageGroupID,
	}
}

// FilterRecord is the message as filters see it (poller.Source).
func (s *Source) FilterRecord(r batch.Record) filter.Record {
	return filter.FromSQS(r.Ref.(events.SQSMessage))
}

// EnvelopeBytes is {"Records":[]}.
func (s *Source) EnvelopeBytes() int { return len(`{"Records":[]}`) }

// Event builds the SQS event.
func (s *Source) Event(records []batch.Record) ([]byte, error) {
	e := events.SQSEvent{Records: make([]events.SQSMessage, len(records))}
	for i, r := range records {
		e.Records[i] = r.Ref.(events.SQSMessage)
	}
	return json.Marshal(e)
}

// Settle deletes finished messages; released ones are left to their visibility timeout.
func (s *Source) Settle(ctx context.Context, st poller.Settlement) error {
	var errs []error
	for i := 0; i < len(st.Acked); i += 10 {
		chunk := st.Acked[i:min(i+10, len(st.Acked))]
		entries := make([]types.DeleteMessageBatchRequestEntry, len(chunk))
		for j, r := range chunk {
			entries[j] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), ReceiptHandle: aws.String(r.Ref.(events.SQSMessage).ReceiptHandle)}
		}
		out, err := s.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(s.cfg.QueueURL), Entries: entries})
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting messages: %w", err))
			continue
		}
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("deleting message %s: %s", aws.ToString(f.Id), aws.ToString(f.Message)))
		}
	}
	return errors.Join(errs...)
}

// DescribeFailure fills SQSBatchInfo.
func (s *Source) DescribeFailure(rec *events.OnFailureRecord, records []batch.Record) {
	info := &events.SQSBatchInfo{BatchSize: len(records), EventSourceARN: s.arn}
	for i, r := range records {
		info.PayloadSize += r.Size
		info.MessageIDs = append(info.MessageIDs, r.ID)
		ts := events.FormatTimestamp(r.Timestamp)
		if i == 0 {
			info.FirstMessageTimestamp = ts
		}
		info.LastMessageTimestamp = ts
	}
	rec.SQSBatchInfo = info
}

// Close does nothing: received messages reappear after their visibility timeout.
func (s *Source) Close() error { return nil }
